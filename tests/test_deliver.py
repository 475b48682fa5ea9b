"""Delivery end to end: approval gate, proof sends, Maildir and real SMTP (STARTTLS) delivery, publish."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import email
import email.policy
import mailbox
import shutil
from pathlib import Path

import pytest

from newsletter.store import sqlite as db, subscribers
from newsletter.approval import approve
from newsletter.jobs.delivery import publish, send_full, send_proof, status
from newsletter.errors import ApprovalError
from newsletter.jobs.issues import build, compose
from newsletter.settings import Settings, load_settings
from newsletter.tokens import keyed_email_digest, read_token

from cli_inprocess import run_newsletter
from conftest import sample_project
from smtp_servers import starttls_server

DATE = dt.date(2026, 11, 25)
SECRET = "test-secret-not-for-production-use"
#: The greeting uses the sample list's first_name column, never the display name ("Doe, Jane").
FIRST_NAMES = {row["email"]: row["first_name"]
               for row in csv.DictReader((Path(__file__).parent.parent / "content" / "subscribers.csv").open())}


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample project with issue 2026-11-25 composed and built, the 8 sample subscribers imported."""
    root = sample_project(tmp_path_factory.mktemp("built") / "site")
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": "test-secret-not-for-production-use"})
    issue = compose(settings, date=DATE)
    build(settings, issue.folder)
    conn = db.connect(settings.path(settings.database))
    subscribers.import_csv(conn, settings.root / "content" / "subscribers.csv")
    conn.close()
    return root


@pytest.fixture
def built(settings: Settings, built_site: Path) -> Path:
    """Issue 2026-11-25 built, subscribers imported: a copy of built_site (nothing in it names its folder)."""
    for part in ("issues", "var"):
        shutil.copytree(built_site / part, settings.root / part, dirs_exist_ok=True)
    return settings.root / "issues" / DATE.isoformat()


def outbox(settings: Settings) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(settings.root / "outbox", create=False)
    return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.keys()]  # type: ignore[misc]


def test_unapproved_issue_is_refused(settings: Settings, built: Path) -> None:
    with pytest.raises(ApprovalError, match="not approved.*newsletter approve"):
        send_full(settings, built)
    assert not (settings.root / "outbox").exists()


def test_changed_after_approval_is_refused(settings: Settings, built: Path) -> None:
    approve(built)
    html = built / "build" / "email.html"
    html.write_text(html.read_text().replace("Read more", "Read now"))
    with pytest.raises(ApprovalError, match="changed since it was approved"):
        send_full(settings, built)


def test_proof_copy_is_not_in_the_ledger(settings: Settings, built: Path) -> None:
    assert send_proof(settings, built, ["Editor@Example.org"]) == ["Editor@example.org"]
    (msg,) = outbox(settings)
    assert msg["Subject"].startswith("[TEST] ")
    assert status(settings, built).sent == 0


def test_send_to_maildir_personalised(settings: Settings, built: Path) -> None:
    approve(built)
    report = send_full(settings, built)
    assert report.sent == 8 and report.failed == 0
    messages = outbox(settings)
    assert len(messages) == 8
    tokens = set()
    for msg in messages:
        to = msg["To"].addresses[0]
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        assert "__NL_" not in html and "__NL_" not in text
        token = msg["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
        sub_id, key = read_token(SECRET, "unsubscribe", token)
        assert key == keyed_email_digest(SECRET, to.addr_spec)
        assert f"/unsubscribe/{token}" in html and f"/unsubscribe/{token}" in text
        first = FIRST_NAMES[to.addr_spec]
        assert f"Hello {first}," in text and f"Hello {to.display_name}," not in text
        tokens.add(token)
    assert len(tokens) == 8
    again = send_full(settings, built)
    assert again.sent == 0 and again.skipped == 8
    assert len(outbox(settings)) == 8


def test_unsubscribed_are_never_sent(settings: Settings, built: Path) -> None:
    conn = db.connect(settings.path(settings.database))
    subscribers.remove(conn, "zoe.muller@example.org") if subscribers.find(conn, "zoe.muller@example.org") else None
    first = subscribers.list_subscribers(conn)[0]
    subscribers.unsubscribe(conn, first.id)
    conn.close()
    approve(built)
    send_full(settings, built)
    recipients = {m["To"].addresses[0].addr_spec for m in outbox(settings)}
    assert first.email not in recipients and len(recipients) == 7


def test_send_over_starttls_with_verified_certificate(settings: Settings, built: Path, tmp_path: Path) -> None:
    approve(built)
    with starttls_server(tmp_path) as server:
        smtp = dataclasses.replace(settings, transport=server.url(query=f"cafile={server.ca_path}"))
        report = send_full(smtp, built, connections=2)
        assert report.sent == 8
        got = server.handler.messages
    assert len(got) == 8
    ids = {m.message_id for m in got}
    assert len(ids) == 8
    conn = db.connect(settings.path(settings.database))
    assert {r["message_id"] for r in conn.execute("SELECT message_id FROM ledger")} == ids
    conn.close()


def test_self_signed_server_is_refused_by_default(settings: Settings, built: Path, tmp_path: Path) -> None:
    approve(built)
    with starttls_server(tmp_path) as server:
        smtp = dataclasses.replace(settings, transport=server.url())
        report = send_full(smtp, built)
        assert server.handler.messages == []
    assert report.sent == 0 and report.stopped_early and "certificate" in report.stopped_early
    assert status(settings, built).sent == 0


def test_publish_end_to_end(settings: Settings) -> None:
    result = publish(settings, date=DATE)
    assert result.composed and result.approved and result.seeded == 8
    assert result.report.sent == 8
    again = publish(settings, date=DATE)
    assert not again.composed and again.report.sent == 0 and again.report.skipped == 8
    assert len(outbox(settings)) == 8


def test_publish_cli_on_a_fresh_copy(project: Path) -> None:
    r = run_newsletter(["publish", "--date", "2026-11-25"], cwd=project)
    assert r.returncode == 0, r.stderr
    assert len(list((project / "outbox" / "new").iterdir())) == 8
    r = run_newsletter(["status", "2026-11-25", "--json"], cwd=project)
    assert '"sent": 8' in r.stdout and '"remaining": 0' in r.stdout


def test_csv_import_cli_reports_bad_rows(project: Path) -> None:
    csv = project / "people.csv"
    csv.write_text("email,name\nok@example.org,Ok\nnot-an-address,Bad\nOK@example.org,Dupe\n", encoding="utf-8")
    r = run_newsletter(["subscribers", "import", str(csv)], cwd=project)
    assert r.returncode == 1
    assert f"{csv}:3" in r.stderr and "not-an-address" in r.stderr
    assert "1 added" in r.stdout


def test_two_sends_of_one_issue_at_once_share_the_work(settings: Settings, built: Path) -> None:
    """Runs of one issue may overlap (each sends only the rows it holds under its lease): nobody gets two."""
    import threading
    from collections import Counter

    approve(built)
    reports = []
    runs = [threading.Thread(target=lambda: reports.append(send_full(settings, built))) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    assert len(reports) == 2 and sum(r.sent for r in reports) == 8
    assert Counter(m["To"] for m in outbox(settings)) == Counter({m["To"]: 1 for m in outbox(settings)})
    assert len(outbox(settings)) == 8 and status(settings, built).remaining == 0


def test_proof_copies_get_fresh_message_ids(settings: Settings, built: Path) -> None:
    send_proof(settings, built, ["a@example.org"])
    send_proof(settings, built, ["a@example.org"])
    ids = {m["Message-ID"] for m in outbox(settings)}
    assert len(ids) == 2


def test_sample_subscribers_are_never_seeded_for_a_real_server(settings: Settings) -> None:
    from newsletter.jobs.delivery import seed_subscribers

    smtp = dataclasses.replace(settings, transport="smtp://127.0.0.1:2525", seed_subscribers=Path("content/subscribers.csv"))
    assert seed_subscribers(smtp) is None
    local = dataclasses.replace(smtp, transport="maildir:outbox")
    assert seed_subscribers(local).added == 8  # type: ignore[union-attr]


def test_damaged_build_metadata_is_one_clear_error(settings: Settings, built: Path) -> None:
    from newsletter.errors import IssueError

    (built / "build" / "build.json").write_text("[]", encoding="utf-8")
    with pytest.raises(IssueError, match="build output is damaged"):
        send_proof(settings, built, ["a@example.org"])


def test_a_send_reads_the_build_once_and_the_approval_hash_is_the_emails_own(
        settings: Settings, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from newsletter import approval as approval_module
    from newsletter.render import read_build

    recorded = approve(built)
    on_disk, meta = read_build(built / "build")
    assert recorded.sha256 == on_disk.sha256 == meta["sha256"]
    reads: list[Path] = []

    def counting(build_dir: Path) -> object:
        reads.append(build_dir)
        return read_build(build_dir)

    monkeypatch.setattr(approval_module, "read_build", counting)
    monkeypatch.setattr("newsletter.jobs.delivery.read_build", counting)
    report = send_full(settings, built)
    assert report.sent == 8 and reads == [built / "build"]
    assert json.loads((built / "approval.json").read_text())["sha256"] == recorded.sha256

"""Bounce intake from a Maildir, suppression and scoring, VERP, `subscribers show` (issue #16)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.store import sqlite as db, subscribers
from newsletter.bounces.intake import PROCESSED_FOLDER, REVIEW_FOLDER
from newsletter.bounces.service import fetch_bounces, history
from newsletter.store.events import Event, events_for
from newsletter.bounces.suppression import Policy, record, soft_score
from newsletter.bounces.verp import ForgedVerp, Verp
from newsletter.errors import ComplainedError
from newsletter.settings import Settings

from bounce_helpers import bounce_box, bounce_from_corpus, folder_keys, inbox_keys, recipient, sent_issue

SECRET = "test-secret-not-for-production-use"
BOUNCE = "bounces@bounces.ms-research.example.org"


@pytest.fixture
def sent(settings: Settings) -> Settings:
    return sent_issue(settings)


def status_of(settings: Settings, sid: int) -> str:
    conn = db.connect(settings.path(settings.database))
    try:
        who = subscribers.get(conn, sid)
        assert who is not None
        return who.status
    finally:
        conn.close()


def fetch(settings: Settings, root: Path) -> list[str]:
    lines: list[str] = []
    fetch_bounces(dataclasses.replace(settings, bounce_mailbox=f"maildir:{root}"),
                  report=lambda item: lines.append(item.line))
    return lines


def test_verp_round_trip_and_forgeries() -> None:
    verp = Verp(SECRET, BOUNCE)
    address = verp.address("2026-11-25", 42)
    assert address.startswith("bounces+2026-11-25.42.") and address.endswith("@bounces.ms-research.example.org")
    assert len(address.partition("@")[0]) <= 64
    assert verp.read(address).subscriber_id == 42  # type: ignore[union-attr]
    assert verp.read(address.upper()).issue_id == "2026-11-25"  # type: ignore[union-attr]
    assert verp.read("someone@example.org") is None
    with pytest.raises(ForgedVerp, match="signature does not match"):
        verp.read(address.replace(".42.", ".43."))
    with pytest.raises(ForgedVerp, match="signature does not match"):
        Verp("another-secret", BOUNCE).read(address)
    with pytest.raises(ForgedVerp, match="not a VERP address"):
        verp.read("bounces+whatever@bounces.ms-research.example.org")


def test_each_message_carries_its_own_signed_envelope_sender(settings: Settings, tmp_path: Path) -> None:
    from smtp_servers import starttls_server

    with starttls_server(tmp_path) as server:
        smtp = dataclasses.replace(settings, transport=server.url(query=f"cafile={server.ca_path}"))
        sent_issue(smtp)
        got = server.handler.messages
    verp = Verp(SECRET, BOUNCE)
    conn = db.connect(settings.path(settings.database))
    for message in got:
        target = verp.read(message.mail_from)
        assert target is not None and target.issue_id == "2026-11-25"
        who = subscribers.get(conn, target.subscriber_id)
        assert who is not None and message.rcpt_tos == (who.email,)
    conn.close()
    assert len({m.mail_from for m in got}) == 8


def test_hard_bounce_by_verp_suppresses_and_is_moved(sent: Settings) -> None:
    conn = db.connect(sent.path(sent.database))
    sid, address, _ = recipient(conn, 0)
    conn.close()
    verp = Verp(SECRET, BOUNCE).address("2026-11-25", sid)
    root = bounce_box(sent, {"b1": bounce_from_corpus("postfix-user-unknown.eml", address=address, verp=verp)})
    lines = fetch(sent, root)
    assert len(lines) == 1 and "hard 5.1.1" in lines[0] and "[verp]: suppressed" in lines[0]
    assert status_of(sent, sid) == "bounced"
    assert folder_keys(root, PROCESSED_FOLDER) == ["b1"] and inbox_keys(root) == []
    found = history(sent, address)
    assert [(e.kind, e.source, e.issue_id, e.code) for e in found.events] == [("hard", "mailbox", "2026-11-25", "5.1.1")]
    assert "User unknown" in found.events[0].diagnostic


def test_bad_input_gives_one_line_each_and_intake_goes_on(sent: Settings) -> None:
    conn = db.connect(sent.path(sent.database))
    sid0, address0, _ = recipient(conn, 0)
    sid1, address1, _ = recipient(conn, 1)
    conn.close()
    verp = Verp(SECRET, BOUNCE)
    forged = verp.address("2026-11-25", sid0).replace(f".{sid0}.", f".{sid1}.")
    messages = {
        "a-forged": bounce_from_corpus("postfix-user-unknown.eml", address=address1, verp=forged),
        "b-malformed": bounce_from_corpus("malformed-dsn-no-recipient.eml"),
        "c-stranger": bounce_from_corpus("exim-unrouteable.eml", verp="someone@else.example", drop_message_id=True),
        "d-huge": b"Subject: big\r\n\r\n" + b"x" * (20 * 1024 * 1024),
        "e-good": bounce_from_corpus("postfix-user-unknown.eml", address=address0,
                                     verp=verp.address("2026-11-25", sid0)),
        "f-vacation": bounce_from_corpus("autoreply-vacation.eml"),
    }
    root = bounce_box(sent, messages)
    lines = fetch(sent, root)
    assert len(lines) == 6
    by_key = {line.partition(":")[0]: line for line in lines}
    assert "signature does not match" in by_key["a-forged"]
    assert "not understood" in by_key["b-malformed"] and "Final-Recipient" in by_key["b-malformed"]
    assert "hal@gone.example.com is not on the list" in by_key["c-stranger"]
    assert "larger than a bounce can be" in by_key["d-huge"]
    assert "suppressed" in by_key["e-good"]
    assert "auto-reply" in by_key["f-vacation"] and "not counted" in by_key["f-vacation"]
    assert status_of(sent, sid1) == "subscribed"  # the forged bounce named them: nothing changed
    assert status_of(sent, sid0) == "bounced"
    assert folder_keys(root, REVIEW_FOLDER) == ["a-forged", "b-malformed", "c-stranger", "d-huge"]
    assert folder_keys(root, PROCESSED_FOLDER) == ["e-good", "f-vacation"]
    # nothing deleted: every message is still on disk, byte for byte
    for key, data in messages.items():
        (path,) = list(root.glob(f".*/cur/{key}:2,S"))
        assert path.read_bytes() == data


def test_message_id_and_address_matching_without_verp(settings: Settings) -> None:
    sent = sent_issue(settings, verp=None)
    conn = db.connect(sent.path(sent.database))
    sid0, address0, message_id0 = recipient(conn, 0)
    sid1, address1, _ = recipient(conn, 1)
    conn.close()
    root = bounce_box(sent, {
        "by-id": bounce_from_corpus("postfix-user-unknown.eml", message_id=message_id0, verp="x@y.example"),
        "by-address": bounce_from_corpus("exim-unrouteable.eml", address=address1, drop_message_id=True),
        "forged-id": bounce_from_corpus("postfix-user-unknown.eml",
                                        message_id=message_id0.replace(message_id0.split(".")[2][:4], "0000")),
    })
    lines = fetch(sent, root)
    joined = "\n".join(lines)
    assert f"{address0} [message-id]: suppressed" in joined
    assert f"{address1} [address]: suppressed" in joined
    assert "looks like ours but its signature does not match" in joined
    assert status_of(sent, sid0) == status_of(sent, sid1) == "bounced"


def test_same_bounce_twice_is_counted_once(sent: Settings) -> None:
    conn = db.connect(sent.path(sent.database))
    sid, address, _ = recipient(conn, 2)
    conn.close()
    data = bounce_from_corpus("postfix-mailbox-full.eml", address=address,
                              verp=Verp(SECRET, BOUNCE).address("2026-11-25", sid))
    root = bounce_box(sent, {"one": data, "two": data})
    lines = fetch(sent, root)
    assert "soft 5.2.2" in lines[0] and "scored (score 0.50)" in lines[0]
    assert "already recorded" in lines[1]
    conn = db.connect(sent.path(sent.database))
    assert len(events_for(conn, sid)) == 1
    conn.close()


def test_soft_bounces_score_once_a_day_decay_and_suppress(sent: Settings) -> None:
    conn = db.connect(sent.path(sent.database))
    sid, _, _ = recipient(conn, 3)
    policy = Policy(soft_score=0.5, decay_days=30, threshold=1.0)
    day = dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC)

    def soft(at: dt.datetime, ref: str) -> str:
        return record(conn, Event(sid, "soft", "mailbox", issue_id="2026-11-25", code="4.2.2", ref=ref, at=at),
                      policy=policy, now=at).action

    assert soft(day, "a") == "scored"
    assert soft(day + dt.timedelta(hours=5), "b") == "scored"  # same day: still 0.5
    assert soft_score(conn, sid, policy, day + dt.timedelta(hours=6)) == 0.5
    # 30 days later the first day has faded away completely
    assert soft_score(conn, sid, policy, day + dt.timedelta(days=30)) == 0.0
    assert soft(day + dt.timedelta(days=1), "c") == "scored"  # 0.5 * 29/30 + 0.5 = 0.983
    assert subscribers.get(conn, sid).status == "subscribed"  # type: ignore[union-attr]
    assert soft(day + dt.timedelta(days=2), "d") == "suppressed"  # third day in a row passes 1.0
    assert subscribers.get(conn, sid).status == "bounced"  # type: ignore[union-attr]
    conn.close()


def test_complaint_unsubscribes_and_is_never_resubscribed(sent: Settings) -> None:
    conn = db.connect(sent.path(sent.database))
    sid, address, message_id = recipient(conn, 4)
    conn.close()
    # Microsoft-style report: recipient redacted, matched by the original's Message-ID alone
    root = bounce_box(sent, {"fbl": bounce_from_corpus("arf-microsoft-redacted.eml", message_id=message_id,
                                                       verp="x@y.example")})
    lines = fetch(sent, root)
    assert "complaint" in lines[0] and f"{address} [message-id]: unsubscribed" in lines[0]
    conn = db.connect(sent.path(sent.database))
    with pytest.raises(ComplainedError, match="reported our email as spam"):
        subscribers.add(conn, address, resubscribe=True)
    csv = sent.root / "again.csv"
    csv.write_text(f"email,name\n{address},Again\n")
    report = subscribers.import_csv(conn, csv)
    assert report.skipped == 1 and subscribers.get(conn, sid).status == "unsubscribed"  # type: ignore[union-attr]
    conn.close()


def test_cli_fetch_and_show(sent: Settings, project: Path) -> None:
    conn = db.connect(sent.path(sent.database))
    sid, address, _ = recipient(conn, 5)
    conn.close()
    root = bounce_box(sent, {"b": bounce_from_corpus("postfix-user-unknown.eml", address=address,
                                                     verp=Verp(SECRET, BOUNCE).address("2026-11-25", sid))})
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text() + f'\nverp_address = "{BOUNCE}"\nbounce_mailbox = "maildir:bounces"\n')
    run = subprocess.run([sys.executable, "-m", "newsletter", "bounces", "fetch"], cwd=project,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "1 message(s): 1 hard" in run.stdout and "suppressed" in run.stdout
    shown = subprocess.run([sys.executable, "-m", "newsletter", "subscribers", "show", address], cwd=project,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "bounced" in shown.stdout and "mailbox" in shown.stdout and "5.1.1" in shown.stdout
    missing = subprocess.run([sys.executable, "-m", "newsletter", "subscribers", "show", "nobody@example.org"],
                             cwd=project, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "nobody@example.org is not on the list" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_smtp_time_bounce_is_an_event_too(settings: Settings, tmp_path: Path) -> None:
    from smtp_servers import Fault, FaultHandler, starttls_server

    target = "amara.okafor@example.org"
    handler = FaultHandler([Fault(pattern=target, reply="550 5.1.1 <amara.okafor@example.org>: no such user")])
    with starttls_server(tmp_path, handler) as server:
        sent_issue(dataclasses.replace(settings, transport=server.url(query=f"cafile={server.ca_path}")),
                   expect_sent=7)
    found = history(settings, target)
    assert found.subscriber.status == "bounced"
    assert [(e.kind, e.source, e.code) for e in found.events] == [("hard", "smtp", "550")]


def test_the_scheduler_fetches_bounces_when_a_mailbox_is_set(sent: Settings, project: Path, tmp_path: Path) -> None:
    """`newsletter scheduler` (a real process) reads the bounce mailbox at start and then every N minutes."""
    from test_schedule import daemon, wait_until

    conn = db.connect(sent.path(sent.database))
    sid, address, _ = recipient(conn, 6)
    conn.close()
    root = bounce_box(sent, {"b": bounce_from_corpus("postfix-user-unknown.eml", address=address,
                                                     verp=Verp(SECRET, BOUNCE).address("2026-11-25", sid))})
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text() + f'\nverp_address = "{BOUNCE}"\nbounce_mailbox = "maildir:bounces"\n'
                    "bounce_fetch_minutes = 5\n")
    with daemon(sent, tmp_path / "scheduler.log") as running:
        wait_until(lambda: folder_keys(root, PROCESSED_FOLDER) == ["b"], 20, "the bounce to be processed")
        assert running.proc.poll() is None
    assert status_of(sent, sid) == "bounced"
    log = (tmp_path / "scheduler.log").read_text()
    assert "bounces:fetch: reading maildir:bounces every 5 minute(s)" in log
    assert "bounces:fetch: b: hard 5.1.1" in log


def test_a_version_2_database_gains_the_events_table(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db.connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE delivery_events")
    raw.execute("PRAGMA user_version = 2")  # as the release before bounce handling left it
    raw.commit()
    raw.close()
    conn = db.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION == 5
    assert conn.execute("SELECT COUNT(*) FROM delivery_events").fetchone()[0] == 0
    conn.close()

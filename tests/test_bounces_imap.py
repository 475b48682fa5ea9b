"""`newsletter bounces fetch` against a real IMAP server (dovecot on 127.0.0.1, TLS verified)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.store import sqlite as db, subscribers
from newsletter.bounces.intake import PROCESSED_FOLDER, REVIEW_FOLDER
from newsletter.bounces.mailbox import BounceMailboxError
from newsletter.bounces.service import fetch_bounces
from newsletter.bounces.verp import Verp
from newsletter.settings import Settings

from cli_inprocess import run_newsletter
from bounce_helpers import bounce_from_corpus, recipient, sent_issue
from dovecot_server import PASSWORD, Dovecot, dovecot_server

SECRET = "test-secret-not-for-production-use"
BOUNCE = "bounces@bounces.ms-research.example.org"


@pytest.fixture(scope="module")
def imap() -> Iterator[Dovecot]:
    with dovecot_server() as server:
        yield server


def folder_sizes(imap: Dovecot) -> dict[str, list[int]]:
    client = imap.client()
    try:
        out = {}
        for folder in ("INBOX", PROCESSED_FOLDER, REVIEW_FOLDER):
            if not client.folder_exists(folder):
                out[folder] = []
                continue
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            sizes = client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
            out[folder] = sorted(int(sizes[u][b"RFC822.SIZE"]) for u in uids)
        return out
    finally:
        client.logout()


def empty_all(imap: Dovecot) -> None:
    client = imap.client()
    for folder in ("INBOX", PROCESSED_FOLDER, REVIEW_FOLDER):
        if client.folder_exists(folder):
            client.select_folder(folder)
            uids = client.search(["ALL"])
            if uids:
                client.delete_messages(uids)
                client.expunge()
    client.logout()


def test_fetch_over_imaps_records_and_moves_never_deletes(settings: Settings, imap: Dovecot) -> None:
    empty_all(imap)
    sent = dataclasses.replace(sent_issue(settings), bounce_mailbox=imap.url(), bounce_password=PASSWORD)
    conn = db.connect(sent.path(sent.database))
    sid0, address0, _ = recipient(conn, 0)
    sid1, address1, message_id1 = recipient(conn, 1)
    sid2, _, _ = recipient(conn, 2)
    conn.close()
    verp = Verp(SECRET, BOUNCE)
    good = bounce_from_corpus("postfix-user-unknown.eml", address=address0, verp=verp.address("2026-11-25", sid0))
    complaint = bounce_from_corpus("arf-yahoo-abuse.eml", address=address1, verp=verp.address("2026-11-25", sid1))
    forged = bounce_from_corpus("postfix-user-unknown.eml", verp=verp.address("2026-11-25", sid0).replace(
        f".{sid0}.", f".{sid2}."))
    vacation = bounce_from_corpus("autoreply-vacation.eml")
    huge = b"Subject: a very large message\r\n\r\n" + (b"y" * 998 + b"\r\n") * 21000  # ~21 MB
    client = imap.client()
    for data in (good, complaint, forged, vacation, huge):
        client.append("INBOX", data)
    client.logout()
    before = folder_sizes(imap)["INBOX"]
    lines: list[str] = []
    report = fetch_bounces(sent, report=lambda item: lines.append(item.line))
    assert [item.kind for item in report.items] == ["hard", "complaint", "refused", "auto-reply", "refused"]
    assert "suppressed" in lines[0] and "unsubscribed" in lines[1]
    assert "signature does not match" in lines[2] and "larger than a bounce can be" in lines[4]
    after = folder_sizes(imap)
    assert after["INBOX"] == []
    assert sorted(after[PROCESSED_FOLDER] + after[REVIEW_FOLDER]) == before  # every message kept, whole
    assert len(after[PROCESSED_FOLDER]) == 3 and len(after[REVIEW_FOLDER]) == 2
    assert max(after[REVIEW_FOLDER]) > 20_000_000
    conn = db.connect(sent.path(sent.database))
    assert subscribers.get(conn, sid0).status == "bounced"  # type: ignore[union-attr]
    assert subscribers.get(conn, sid1).status == "unsubscribed"  # type: ignore[union-attr]
    assert subscribers.get(conn, sid2).status == "subscribed"  # type: ignore[union-attr]
    conn.close()
    assert fetch_bounces(sent).items == ()  # the inbox is empty now: nothing read twice


def test_refused_login_is_one_line_and_touches_nothing(project: Path, settings: Settings, imap: Dovecot) -> None:
    empty_all(imap)
    client = imap.client()
    client.append("INBOX", bounce_from_corpus("autoreply-vacation.eml"))
    client.logout()
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text() + f'\nbounce_mailbox = "{imap.url()}"\n')
    env = {**os.environ, "NEWSLETTER_BOUNCE_PASSWORD": "not-the-password"}
    run = run_newsletter(["bounces", "fetch"], cwd=project, env=env)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "refused the login" in run.stderr
    assert "not-the-password" not in run.stderr + run.stdout
    assert len(folder_sizes(imap)["INBOX"]) == 1


def test_untrusted_certificate_is_refused(settings: Settings, imap: Dovecot) -> None:
    url = imap.url().partition("?")[0]  # without ?cafile=: the test CA is not trusted
    with pytest.raises(BounceMailboxError, match="cannot connect.*CERTIFICATE_VERIFY_FAILED"):
        fetch_bounces(dataclasses.replace(settings, bounce_mailbox=url, bounce_password=PASSWORD))


def test_password_in_url_is_refused(settings: Settings) -> None:
    url = "imaps://bouncer:secret@127.0.0.1:1/INBOX"
    with pytest.raises(BounceMailboxError, match="NEWSLETTER_BOUNCE_PASSWORD") as caught:
        fetch_bounces(dataclasses.replace(settings, bounce_mailbox=url, bounce_password="x"))
    assert "secret" not in str(caught.value)

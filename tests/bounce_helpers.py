"""Helpers for the bounce tests: a sent issue, and bounces for its real recipients made from the corpus."""

from __future__ import annotations

import dataclasses
import datetime as dt
import mailbox
import sqlite3
from pathlib import Path

from newsletter.store import sqlite as db, subscribers
from newsletter.approval import approve
from newsletter.jobs.delivery import send_full
from newsletter.jobs.issues import build, compose
from newsletter.settings import Settings

CORPUS = Path(__file__).parent / "data" / "bounces"
DATE = dt.date(2026, 11, 25)
# What the corpus messages name, replaced by a real recipient's values.
_CORPUS_VALUES = {
    "postfix-user-unknown.eml": ("ann.lee@example.net", 11),
    "postfix-mailbox-full.eml": ("bo.chen@example.net", 12),
    "arf-yahoo-abuse.eml": ("jay@yahoo.example", 91),
    "arf-microsoft-redacted.eml": ("[redacted]", 93),
    "autoreply-vacation.eml": ("", 100),
    "malformed-dsn-no-recipient.eml": ("", 0),
    "exim-unrouteable.eml": ("hal@gone.example.com", 21),
}
_CORPUS_VERP = "bounces+2026-11-25.{sid}.ab12cd34ef56ab12@bounces.ms-research.example.org"
_CORPUS_MSGID = "2026-11-25.{sid}.0f1e2d3c4b5a69788796@ms-research.example.org"


def sent_issue(settings: Settings, *, verp: str | None = "bounces@bounces.ms-research.example.org",
               expect_sent: int = 8) -> Settings:
    """Compose, build, approve and send the sample issue to the sample list (Maildir); settings with VERP."""
    settings = dataclasses.replace(settings, verp_address=verp)
    issue = compose(settings, date=DATE)
    build(settings, issue.folder)
    conn = db.connect(settings.path(settings.database))
    subscribers.import_csv(conn, settings.root / "content" / "subscribers.csv")
    conn.close()
    approve(issue.folder)
    report = send_full(settings, issue.folder)
    assert report.sent == expect_sent
    return settings


def recipient(conn: sqlite3.Connection, n: int) -> tuple[int, str, str]:
    """(id, address, Message-ID) of the n-th subscriber the issue went to."""
    row = conn.execute("SELECT s.id, s.email, l.message_id FROM ledger l JOIN subscribers s ON s.id = l.subscriber_id"
                       " WHERE l.issue_id = ? ORDER BY s.id LIMIT 1 OFFSET ?", (DATE.isoformat(), n)).fetchone()
    return int(row[0]), str(row[1]), str(row[2])


def bounce_from_corpus(name: str, *, address: str = "", verp: str | None = None, message_id: str | None = None,
                       drop_message_id: bool = False) -> bytes:
    """A corpus message re-addressed to one of our real sends (VERP, Message-ID and recipient replaced)."""
    data = (CORPUS / name).read_bytes().decode("utf-8")
    old_address, sid = _CORPUS_VALUES[name]
    if verp is not None:
        data = data.replace(_CORPUS_VERP.format(sid=sid), verp)
    if drop_message_id:
        data = "\r\n".join(line for line in data.split("\r\n")
                           if _CORPUS_MSGID.format(sid=sid) not in line)
    elif message_id is not None:
        data = data.replace(_CORPUS_MSGID.format(sid=sid), message_id)
    if address and old_address:
        data = data.replace(old_address, address)
    return data.encode("utf-8")


def bounce_box(settings: Settings, messages: dict[str, bytes]) -> Path:
    """A Maildir `bounces/` under the project with these messages in new/ (keys become file names)."""
    root = settings.root / "bounces"
    box = mailbox.Maildir(root, create=True)
    box.close()
    for key, data in messages.items():
        (root / "new" / key).write_bytes(data)
    return root


def folder_keys(root: Path, folder: str) -> list[str]:
    where = root / f".{folder}" / "cur"
    return sorted(p.name.partition(":")[0] for p in where.iterdir()) if where.exists() else []


def inbox_keys(root: Path) -> list[str]:
    return sorted(p.name.partition(":")[0] for sub in ("new", "cur") for p in (root / sub).iterdir())

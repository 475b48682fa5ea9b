"""The delivery-events table: one row per bounce or complaint (time, kind, source, code, words), and its queries.

Kept apart from the ledger's SQL so it can move behind the Store protocol as one piece.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .dbapi import Connection
from .ledger import qmarks

__all__ = ["SCHEMA_V3", "EVENT_KINDS", "Event", "StoredEvent", "IssueRates", "insert_event", "events_for",
           "soft_days", "has_complained", "issue_rates", "issue_event_counts", "count_rows_upto", "latest_issue_for"]

EVENT_KINDS = ("hard", "soft", "complaint")

SCHEMA_V3 = (
    """
    CREATE TABLE IF NOT EXISTS delivery_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        subscriber_id INTEGER NOT NULL REFERENCES subscribers (id),
        issue_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint')),
        source TEXT NOT NULL,   -- smtp | mailbox | ses | postmark | mailgun | sendgrid
        code TEXT NOT NULL DEFAULT '',
        diagnostic TEXT NOT NULL DEFAULT '',
        ref TEXT                -- the source's own id for the report: a repeat is recognised, not counted twice
    )
    """,
    "CREATE UNIQUE INDEX IF NOT EXISTS delivery_events_ref ON delivery_events (source, ref) WHERE ref IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS delivery_events_subscriber ON delivery_events (subscriber_id, at)",
    "CREATE INDEX IF NOT EXISTS delivery_events_issue ON delivery_events (issue_id, kind)",
)


@dataclass(frozen=True)
class Event:
    """A bounce or complaint about one subscriber, before it is stored."""

    subscriber_id: int
    kind: str  # hard | soft | complaint
    source: str
    issue_id: str | None = None
    code: str = ""
    diagnostic: str = ""
    ref: str | None = None
    at: dt.datetime | None = None  # None: now


@dataclass(frozen=True)
class StoredEvent:
    at: str
    kind: str
    source: str
    issue_id: str | None
    code: str
    diagnostic: str


@dataclass(frozen=True)
class IssueRates:
    """Per issue: delivered (accepted by the server), distinct subscribers who bounced or complained."""

    issue_id: str
    delivered: int
    attempted: int  # delivered + failed at the SMTP conversation
    hard: int
    soft: int
    complained: int

    @property
    def hard_rate(self) -> float:
        return self.hard / self.attempted if self.attempted else 0.0

    @property
    def soft_rate(self) -> float:
        return self.soft / self.attempted if self.attempted else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.delivered if self.delivered else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"delivered": self.delivered, "bounced_hard": self.hard, "bounced_soft": self.soft,
                "complained": self.complained, "hard_bounce_rate": round(self.hard_rate, 6),
                "soft_bounce_rate": round(self.soft_rate, 6), "complaint_rate": round(self.complaint_rate, 6)}


def _iso(moment: dt.datetime | None) -> str:
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def insert_event(conn: Connection, event: Event) -> bool:
    """Store the event (not committed); False when the same (source, ref) was stored before."""
    if event.kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {event.kind!r}")
    cursor = conn.execute(
        "INSERT INTO delivery_events (at, subscriber_id, issue_id, kind, source, code, diagnostic, ref)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (_iso(event.at), event.subscriber_id, event.issue_id, event.kind, event.source, event.code[:40],
         event.diagnostic[:1000], event.ref),
    )
    return cursor.rowcount == 1


def events_for(conn: Connection, subscriber_id: int) -> list[StoredEvent]:
    rows = conn.execute(
        "SELECT at, kind, source, issue_id, code, diagnostic FROM delivery_events WHERE subscriber_id = ?"
        " ORDER BY at, id", (subscriber_id,)).fetchall()
    return [StoredEvent(*row) for row in rows]


def soft_days(conn: Connection, subscriber_id: int, since: dt.datetime) -> list[dt.date]:
    """The distinct UTC days with a soft bounce since `since` (a day counts once, however many bounces)."""
    rows = conn.execute(
        "SELECT DISTINCT substr(at, 1, 10) FROM delivery_events WHERE subscriber_id = ? AND kind = 'soft'"
        " AND at >= ? ORDER BY 1", (subscriber_id, _iso(since))).fetchall()
    return [dt.date.fromisoformat(row[0]) for row in rows]


def has_complained(conn: Connection, subscriber_id: int) -> bool:
    return conn.execute("SELECT 1 FROM delivery_events WHERE subscriber_id = ? AND kind = 'complaint' LIMIT 1",
                        (subscriber_id,)).fetchone() is not None


def latest_issue_for(conn: Connection, subscriber_id: int) -> str | None:
    """The issue most recently sent to this subscriber (for a bounce that names only the address)."""
    row = conn.execute("SELECT issue_id FROM ledger WHERE subscriber_id = ? AND status IN ('sent', 'failed')"
                       " ORDER BY COALESCE(sent_at, updated_at) DESC LIMIT 1", (subscriber_id,)).fetchone()
    return row[0] if row else None


def issue_rates(conn: Connection, issue_id: str) -> IssueRates:
    delivered, attempted = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN status IN ('sent', 'failed') THEN 1 ELSE 0 END), 0)"
        " FROM ledger WHERE issue_id = ?", (issue_id,)).fetchone()
    by_kind = dict(conn.execute(
        "SELECT kind, COUNT(DISTINCT subscriber_id) FROM delivery_events WHERE issue_id = ? GROUP BY kind",
        (issue_id,)).fetchall())
    return IssueRates(issue_id, int(delivered), int(attempted), by_kind.get("hard", 0), by_kind.get("soft", 0),
                      by_kind.get("complaint", 0))


def issue_event_counts(conn: Connection, issue_id: str) -> dict[str, int]:
    """Distinct subscribers per event kind for the issue (hard / soft / complaint): an indexed read of the few
    events, never of the ledger."""
    return {str(row[0]): int(row[1]) for row in conn.execute(
        "SELECT kind, COUNT(DISTINCT subscriber_id) FROM delivery_events WHERE issue_id = ? GROUP BY kind",
        (issue_id,)).fetchall()}


def count_rows_upto(conn: Connection, issue_id: str, statuses: tuple[str, ...], limit: int) -> int:
    """How many ledger rows of the issue have one of `statuses`, counting no further than `limit` (the answer is
    exact below `limit`, and `limit` when there are at least that many): reads at most `limit` index entries."""
    row = conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM ledger WHERE issue_id = ?"
                       f" AND status IN ({qmarks(len(statuses))}) LIMIT ?) AS upto",
                       (issue_id, *statuses, limit)).fetchone()
    return int(row[0])

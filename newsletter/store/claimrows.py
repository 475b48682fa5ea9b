"""The statements behind the leased claims (newsletter.store.claims) that do the most per round trip.

On SQLite every statement is a function call; on PostgreSQL each is a round trip to the server (and a
BEGIN before the first statement of a transaction is one more). The send loop's per-message work is
therefore done here in as few statements as possible:

* `apply_marks`: every outcome recorded since the last write (sent / deferred / failed) in ONE statement,
  and with it, when asked, the subscribed check of the next subscriber. When no transaction is open the
  statement is its own transaction (autocommit): marks + COMMIT + check in one round trip, against four
  (BEGIN, SELECT, UPDATE, COMMIT) before.
* `subscribed`: the check alone, also without a BEGIN.
* `claim_fresh` (PostgreSQL): new rows by windows of subscribers after the cursor, inserted with ON CONFLICT DO NOTHING,
  so finding subscribers without a row never depends on the planner's guess of how many rows the issue
  has (a NOT EXISTS anti-join was planned as a hash join over every ledger row of the issue, per claim).

The statement text never changes with the number of marks (arrays, not IN lists), so psycopg prepares it
once per connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from newsletter.store.dbapi import dialect
from newsletter.store.ledger import qmarks

__all__ = ["Mark", "apply_marks", "subscribed", "claim_fresh", "MAX_WINDOW", "plan_each_time"]

#: One recorded outcome: (subscriber id, status, code, reason, message id, when).
Mark = tuple[int, str, "int | None", "str | None", "str | None", str]

_MARKS = (
    "WITH v AS (SELECT * FROM unnest(?::bigint[], ?::text[], ?::integer[], ?::text[], ?::text[], ?::text[])"
    " AS v (sid, status, code, reason, message_id, at)),"
    " m AS (UPDATE ledger l SET status = v.status, attempts = l.attempts + 1, code = v.code, reason = v.reason,"
    " message_id = COALESCE(v.message_id, l.message_id), updated_at = v.at, claimed_until = NULL,"
    " sent_at = CASE WHEN v.status = 'sent' THEN v.at ELSE l.sent_at END"
    " FROM v WHERE l.issue_id = ? AND l.subscriber_id = v.sid AND l.status = 'claimed' AND l.claimed_by = ?"
    " RETURNING l.subscriber_id)"
    " SELECT NULL, COUNT(*) FROM m UNION ALL SELECT status, id FROM subscribers WHERE id = ?"
)
_SUBSCRIBED = "SELECT status FROM subscribers WHERE id = ?"

# A window of subscribed subscribers after the cursor (rows another claimer is claiming right now are skipped),
# and a 'claimed' row for each that has none yet: the ones that had a row are left out by ON CONFLICT.
_FRESH = (
    "WITH c AS (SELECT id FROM subscribers WHERE status = 'subscribed' AND id > ? ORDER BY id LIMIT ?"
    " FOR NO KEY UPDATE SKIP LOCKED),"
    " i AS (INSERT INTO ledger (issue_id, subscriber_id, status, claimed_at, updated_at, claimed_by, claimed_until)"
    " SELECT ?, id, 'claimed', ?, ?, ?, ? FROM c ON CONFLICT DO NOTHING RETURNING subscriber_id)"
    " SELECT subscriber_id, NULL FROM i UNION ALL SELECT MAX(id), COUNT(*) FROM c"
)
#: Largest window, in claim sizes: windows grow while they find only rows that are taken (a resumed send).
MAX_WINDOW = 64
# Windows of one claim size that may find nothing before they grow: the claims other senders made since this
# one's last claim lie just ahead of its cursor (three of them with four senders).
_PATIENCE = 4


def plan_each_time(conn: Any, on: bool) -> None:
    """PostgreSQL: plan every statement of this session for its parameters and the tables' sizes now (or again as
    configured). A prepared statement's generic plan is made once: made while the ledger of a first send was
    a few rows long, it read the whole ledger for every mark (a sequential scan), a million rows later too."""
    if dialect(conn) == "postgresql":
        conn.execute_alone("SET plan_cache_mode = force_custom_plan" if on else "RESET plan_cache_mode")


def apply_marks(conn: Any, issue_id: str, worker: str, marks: Sequence[Mark],
                check: int | None = None) -> tuple[int, bool | None]:
    """Write `marks` on the rows `worker` still holds and, with `check`, read that subscriber's state: one statement.

    Committed when it returns if no transaction was open (it is its own transaction); part of the open one
    otherwise. Returns how many rows were marked (the others were taken over) and whether `check` is
    subscribed (None without `check`).
    """
    columns = list(zip(*marks)) if marks else [()] * 6
    rows = conn.execute_alone(_MARKS, ([*columns[0]], [*columns[1]], [*columns[2]], [*columns[3]], [*columns[4]],
                                       [*columns[5]], issue_id, worker, check)).fetchall()
    marked = next(int(row[1]) for row in rows if row[0] is None)
    if check is None:
        return marked, None
    return marked, any(row[0] == "subscribed" for row in rows if row[0] is not None)


def subscribed(conn: Any, subscriber_id: int) -> bool:
    """The subscriber's state now (a statement of its own when no transaction is open: no BEGIN round trip)."""
    row = conn.execute_alone(_SUBSCRIBED, (subscriber_id,)).fetchone()
    return row is not None and row[0] == "subscribed"


def claim_fresh(conn: Any, issue_id: str, worker: str, *, until: str, at: str, limit: int,
                after: int) -> tuple[list[int], int]:
    """Claim up to `limit` subscribed subscribers after `after` that have no row (in the caller's transaction).

    Returns the ids claimed and the new cursor. PostgreSQL: after a few windows that find only taken rows the
    next ones double (up to MAX_WINDOW claim sizes); what a grown window claims beyond `limit` is given back at
    once, never committed.
    """
    if dialect(conn) != "postgresql":
        return _claim_fresh_sqlite(conn, issue_id, worker, until=until, at=at, limit=limit, after=after)
    fresh: list[int] = []
    cursor, window, empty = after, limit, 0
    while len(fresh) < limit:
        rows = conn.execute(_FRESH, (cursor, window, issue_id, at, at, worker, until)).fetchall()
        got = sorted(int(row[0]) for row in rows if row[1] is None)
        last, seen = next((row[0], int(row[1])) for row in rows if row[1] is not None)
        if not seen:
            break
        fresh += got
        cursor = int(last)
        if len(fresh) > limit:  # a grown window: keep `limit`, give back the rest (never committed)
            surplus = fresh[limit:]
            del fresh[limit:]
            conn.execute("DELETE FROM ledger WHERE issue_id = ? AND subscriber_id = ANY(?::bigint[])",
                         (issue_id, surplus))
            cursor = fresh[-1]
            break
        if seen < window:
            break
        empty = 0 if got else empty + 1
        if empty > _PATIENCE:  # not just other senders' latest claims ahead: a long stretch of finished rows
            window = min(window * 2, limit * MAX_WINDOW)
    return fresh, cursor


def _claim_fresh_sqlite(conn: Any, issue_id: str, worker: str, *, until: str, at: str, limit: int,
                        after: int) -> tuple[list[int], int]:
    """SQLite probes the ledger's primary key per subscriber for NOT EXISTS, and claims take turns (BEGIN IMMEDIATE)."""
    candidates = [int(row[0]) for row in conn.execute(
        "SELECT s.id FROM subscribers s WHERE s.status = 'subscribed' AND s.id > ? AND NOT EXISTS ("
        " SELECT 1 FROM ledger l WHERE l.issue_id = ? AND l.subscriber_id = s.id) ORDER BY s.id LIMIT ?",
        (after, issue_id, limit)).fetchall()]
    if not candidates:
        return [], after
    fresh = [int(row[0]) for row in conn.execute(
        "INSERT INTO ledger (issue_id, subscriber_id, status, claimed_at, updated_at, claimed_by, claimed_until)"
        f" SELECT ?, id, 'claimed', ?, ?, ?, ? FROM subscribers WHERE id IN ({qmarks(len(candidates))})"
        " ON CONFLICT DO NOTHING RETURNING subscriber_id", (issue_id, at, at, worker, until, *candidates)).fetchall()]
    return fresh, candidates[-1]

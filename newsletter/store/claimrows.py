"""The statements behind the leased claims (newsletter.store.claims) that do the most per round trip.

On SQLite every statement is a function call; on PostgreSQL each is a round trip to the server (and a
BEGIN before the first statement of a transaction is one more). The send loop's per-message work is
therefore done here in as few statements as possible:

* `apply_marks`: every outcome recorded since the last write (sent / deferred / failed) and, when asked,
  the subscribed check of the next hand-off's subscribers, in one statement (one outcome, one subscriber)
  or sent together in libpq's pipeline mode. When no transaction is open they are a transaction of their own
  (autocommit): marks + COMMIT + check in one round trip, against four (BEGIN, SELECT, UPDATE, COMMIT) before.
* `subscribed_among`: the check alone, also without a BEGIN.
* `claim_fresh` (PostgreSQL): new rows by windows of subscribers after the cursor, inserted with ON CONFLICT
  DO NOTHING, so finding subscribers without a row never depends on the planner's guess of how many rows the issue
  has (a NOT EXISTS anti-join was planned as a hash join over every ledger row of the issue, per claim).

Each statement's text is fixed, so psycopg prepares it once per connection (PostgreSQL then skips parsing
and planning it); `plan_for_indexes` keeps those plans from sequential scans of the growing ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from newsletter.models import Subscriber
from newsletter.store.dbapi import dialect
from newsletter.store.ledger import id_chunks, qmarks

__all__ = ["Mark", "MARK", "people", "apply_marks", "subscribed_among", "claim_fresh", "MAX_WINDOW", "plan_for_indexes"]

#: One recorded outcome: (subscriber id, status, code, reason, message id, when).
Mark = tuple[int, str, "int | None", "str | None", "str | None", str]

#: One subscriber's id when they are subscribed (no row when not).
_SUBSCRIBED = "SELECT id FROM subscribers WHERE id = ? AND status = 'subscribed'"

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


def plan_for_indexes(conn: Any, on: bool) -> None:
    """PostgreSQL: while this session sends, plan with indexes wherever one applies (`enable_seqscan = off`).

    psycopg prepares a statement after a few uses and PostgreSQL then keeps one generic plan for it. Made
    while the ledger of a first send was a few rows long, that plan read the whole ledger for every mark (a
    sequential scan), and went on doing so as the ledger grew to a million rows. A custom plan for every
    execution (`plan_cache_mode = force_custom_plan`) avoids that as well, at the price of planning each one:
    about 70 µs more server CPU per message, measured with one sender."""
    if dialect(conn) == "postgresql":
        conn.execute_alone("SET enable_seqscan = off" if on else "RESET enable_seqscan")


#: An outcome on a row the sender still holds (both stores; the send loop counts a row it no longer holds).
MARK = (
    "UPDATE ledger SET status = ?, attempts = attempts + 1, code = ?, reason = ?,"
    " message_id = COALESCE(?, message_id), updated_at = ?, claimed_until = NULL,"
    " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END"
    " WHERE issue_id = ? AND subscriber_id = ? AND status = 'claimed' AND claimed_by = ?")

_MARK_AND_CHECK = f"WITH m AS ({MARK} RETURNING 1) SELECT (SELECT COUNT(*) FROM m), ({_SUBSCRIBED})"


def apply_marks(conn: Any, issue_id: str, worker: str, marks: Sequence[Mark],
                check: Sequence[int] = ()) -> tuple[int, set[int]]:
    """Write `marks` on the rows `worker` still holds and read which of the `check` subscribers are subscribed: one
    round trip.

    With no transaction open the statements are one transaction of their own, committed when this returns;
    otherwise part of the open one. Returns how many rows were marked (the others were taken over meanwhile)
    and the subscribed ones among `check`.
    """
    statements: list[tuple[str, Sequence[Any]]] = [
        (MARK, (status, code, reason, message_id, at, status, at, issue_id, sid, worker))
        for sid, status, code, reason, message_id, at in marks]
    if len(check) == 1 and len(marks) == 1:  # the usual case: one statement, lighter than a pipeline
        count, found = conn.execute_alone(_MARK_AND_CHECK, (*statements[0][1], check[0])).fetchone()
        return int(count), set(check) if found is not None else set()
    if check:
        statements.append(_subscribed_query(check))
    if len(statements) == 1:
        cursors = [conn.execute_alone(*statements[0])]
    else:
        cursors = conn.execute_together(statements)
    marked = sum(cursor.rowcount == 1 for cursor in cursors[:len(marks)])
    return marked, {row[0] for row in cursors[-1].fetchall()} if check else set()


def _subscribed_query(ids: Sequence[int]) -> tuple[str, Sequence[Any]]:
    if len(ids) == 1:
        return _SUBSCRIBED, ids
    return f"SELECT id FROM subscribers WHERE id IN ({qmarks(len(ids))}) AND status = 'subscribed'", ids


def subscribed_among(conn: Any, ids: Sequence[int]) -> set[int]:
    """The subscribed ones among `ids` (a few: one hand-off's worth), in one statement (of its own when no
    transaction is open: no BEGIN round trip on PostgreSQL)."""
    if not ids:
        return set()
    run = conn.execute_alone if dialect(conn) == "postgresql" else conn.execute
    return {row[0] for row in run(*_subscribed_query(ids)).fetchall()}


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


def people(conn: Any, ids: Sequence[int]) -> list[Subscriber]:
    """The subscribers with these ids, by id."""
    out: list[Subscriber] = []
    for part in id_chunks(sorted(ids)):
        out.extend(Subscriber(id=row[0], email=row[1], name=row[2], status=row[3], first_name=row[4])
                   for row in conn.execute("SELECT id, email, name, status, first_name FROM subscribers"
                                           f" WHERE id IN ({qmarks(len(part))}) ORDER BY id", tuple(part)))
    return out

"""The send ledger: one row per (issue, subscriber), claimed -> sent | deferred | failed; resume is a query.

Protocol, and what a crash can cost:

* A row is 'claimed' and COMMITTED before its message is handed to a transport.
* It becomes 'sent' only after the transport returned success; results are committed in batches
  (by default every 50 results or 0.5 s, and always together with the next claim).
* 'deferred' rows (4xx after retries) and 'claimed' rows are what the next run picks up again;
  'sent' and 'failed' are final.

So a crash (kill -9, power loss) can never lose a subscriber: everything not confirmed 'sent' or
'failed' is still pending. What it can cost is the claimed-but-unconfirmed rows: messages that the
server accepted but whose 'sent' mark was not yet committed are sent again on resume (at most one
commit batch plus the messages in flight). The next run counts those rows as "resent after crash";
some of them may never have reached the server before the crash.

The functions here do not say who holds a claim: two runs using them must not overlap. The send loop
claims through newsletter.store.claims instead, whose leases (claimed_by, claimed_until) tell a live
sender's rows from a dead one's, so runs of one issue may overlap across processes and hosts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from newsletter.store.dbapi import Connection, begin_write, utc_now
from newsletter.errors import LedgerError
from newsletter.models import Subscriber

__all__ = [
    "Claim",
    "LedgerCounts",
    "claim",
    "claim_batch",
    "release",
    "reopen",
    "pending_subscribers",
    "mark_sent",
    "mark_deferred",
    "mark_failed",
    "counts",
    "already_final",
    "first_sent_times",
    "first_sent_time",
    "has_row",
    "Ledger",
    "id_chunks",
    "qmarks",
]

#: The one "this subscriber is done for this issue" condition, on a ledger row aliased `l`.
_FINAL = "l.status IN ('sent', 'failed')"
_SQL_LIMIT = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming ids: those this run may send now, and which of them an earlier run left claimed."""

    claimed: tuple[int, ...]
    resumed: frozenset[int]


@dataclass(frozen=True)
class LedgerCounts:
    """Where an issue stands; `remaining` = subscribed subscribers without a final (sent/failed) row."""

    sent: int
    deferred: int
    failed: int
    claimed: int
    remaining: int


def id_chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    """`ids` in parts short enough for one IN (...) list."""
    for start in range(0, len(ids), _SQL_LIMIT):
        yield ids[start : start + _SQL_LIMIT]


def qmarks(n: int) -> str:
    """n placeholders for an IN (...) list."""
    return ", ".join("?" * n)


def claim(conn: Connection, issue_id: str, subscriber_ids: Sequence[int]) -> Claim:
    """Claim ids for this run and COMMIT: new rows, rows left 'claimed' by a crash, and 'deferred' rows.

    Only subscribers still subscribed are claimed; ids with a final row are left alone.
    """
    now = utc_now()
    claimed: set[int] = set()
    resumed: set[int] = set()
    # Unlike db.transaction this always commits, results recorded earlier in the open transaction included:
    # the claim must be durable before any of these messages reaches a transport.
    begin_write(conn)
    try:
        for part in id_chunks(list(subscriber_ids)):
            marks = qmarks(len(part))
            before = conn.execute(
                f"SELECT subscriber_id, status FROM ledger WHERE issue_id = ? AND subscriber_id IN ({marks})",
                (issue_id, *part),
            ).fetchall()
            resumed.update(row[0] for row in before if row[1] == "claimed")
            conn.execute(
                "INSERT INTO ledger (issue_id, subscriber_id, status, claimed_at, updated_at)"
                f" SELECT ?, id, 'claimed', ?, ? FROM subscribers WHERE status = 'subscribed' AND id IN ({marks})"
                " ON CONFLICT DO NOTHING",
                (issue_id, now, now, *part),
            )
            conn.execute(
                "UPDATE ledger SET status = 'claimed', claimed_at = ?, updated_at = ?"
                f" WHERE issue_id = ? AND status IN ('claimed', 'deferred') AND subscriber_id IN ("
                f"  SELECT id FROM subscribers WHERE status = 'subscribed' AND id IN ({marks}))",
                (now, now, issue_id, *part),
            )
            claimed.update(
                row[0]
                for row in conn.execute(
                    "SELECT l.subscriber_id FROM ledger l JOIN subscribers s ON s.id = l.subscriber_id"
                    f" WHERE l.issue_id = ? AND l.status = 'claimed' AND s.status = 'subscribed'"
                    f" AND l.subscriber_id IN ({marks})",
                    (issue_id, *part),
                )
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    order = {sid: i for i, sid in enumerate(subscriber_ids)}
    return Claim(claimed=tuple(sorted(claimed, key=order.__getitem__)), resumed=frozenset(resumed & claimed))


def claim_batch(conn: Connection, issue_id: str, subscriber_ids: Sequence[int]) -> list[int]:
    """The ids claimed for this run (see claim); committed before returning."""
    return list(claim(conn, issue_id, subscriber_ids).claimed)


def release(conn: Connection, issue_id: str, subscriber_ids: Sequence[int]) -> None:
    """Undo claims for messages never handed to a transport: back to no row, or to 'deferred'."""
    for part in id_chunks(list(subscriber_ids)):
        marks = qmarks(len(part))
        conn.execute(
            f"DELETE FROM ledger WHERE issue_id = ? AND status = 'claimed' AND attempts = 0"
            f" AND subscriber_id IN ({marks})",
            (issue_id, *part),
        )
        conn.execute(
            f"UPDATE ledger SET status = 'deferred', updated_at = ? WHERE issue_id = ? AND status = 'claimed'"
            f" AND subscriber_id IN ({marks})",
            (utc_now(), issue_id, *part),
        )


def reopen(conn: Connection, issue_id: str, subscriber_ids: Sequence[int]) -> None:
    """Give 'failed' rows back (no row: pending again), for refusals that were not about the recipient."""
    for part in id_chunks(list(subscriber_ids)):
        conn.execute(f"DELETE FROM ledger WHERE issue_id = ? AND status = 'failed' AND subscriber_id IN ({qmarks(len(part))})",
                     (issue_id, *part))


_PENDING = (
    "SELECT s.id, s.email, s.name, s.status, s.first_name FROM subscribers s"
    " WHERE s.status = 'subscribed' AND s.id > ? AND NOT EXISTS ("
    f"  SELECT 1 FROM ledger l WHERE l.issue_id = ? AND l.subscriber_id = s.id AND {_FINAL})"
    " ORDER BY s.id LIMIT ?"
)


def pending_subscribers(conn: Connection, issue_id: str, *, batch: int = 500) -> Iterator[Subscriber]:
    """Subscribed subscribers with no row or a 'claimed'/'deferred' row, by id, fetched `batch` at a time."""
    last = 0
    while True:
        rows = conn.execute(_PENDING, (last, issue_id, batch)).fetchall()
        for row in rows:
            yield Subscriber(id=row[0], email=row[1], name=row[2], status=row[3], first_name=row[4])
        if len(rows) < batch:
            return
        last = rows[-1][0]


def _mark(
    conn: Connection,
    issue_id: str,
    subscriber_id: int,
    status: str,
    *,
    code: int | None = None,
    reason: str | None = None,
    message_id: str | None = None,
) -> None:
    now = utc_now()
    cursor = conn.execute(
        "UPDATE ledger SET status = ?, attempts = attempts + 1, code = ?, reason = ?,"
        " message_id = COALESCE(?, message_id), updated_at = ?,"
        " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END"
        " WHERE issue_id = ? AND subscriber_id = ? AND status IN ('claimed', 'deferred')",
        (status, code, reason, message_id, now, status, now, issue_id, subscriber_id),
    )
    if cursor.rowcount != 1:
        row = conn.execute(
            "SELECT status FROM ledger WHERE issue_id = ? AND subscriber_id = ?", (issue_id, subscriber_id)
        ).fetchone()
        state = f"it is already '{row[0]}'" if row else "it was never claimed"
        raise LedgerError(f"issue {issue_id}: cannot mark subscriber {subscriber_id} {status}: {state}")


def mark_sent(conn: Connection, issue_id: str, subscriber_id: int, message_id: str) -> None:
    """Record that the transport accepted the message (not committed; see Ledger for batching)."""
    _mark(conn, issue_id, subscriber_id, "sent", message_id=message_id)


def mark_deferred(conn: Connection, issue_id: str, subscriber_id: int, code: int | None, reason: str) -> None:
    """Record a temporary failure after retries: the next run tries again."""
    _mark(conn, issue_id, subscriber_id, "deferred", code=code, reason=reason)


def mark_failed(conn: Connection, issue_id: str, subscriber_id: int, code: int | None, reason: str) -> None:
    """Record a permanent failure: final, never retried for this issue."""
    _mark(conn, issue_id, subscriber_id, "failed", code=code, reason=reason)


def already_final(conn: Connection, issue_id: str) -> int:
    """Subscribed subscribers whose row for this issue is final already (what a run skips)."""
    return int(conn.execute(
        "SELECT COUNT(*) FROM ledger l JOIN subscribers s ON s.id = l.subscriber_id"
        f" WHERE l.issue_id = ? AND {_FINAL} AND s.status = 'subscribed'",
        (issue_id,),
    ).fetchone()[0])


def first_sent_times(conn: Connection) -> list[tuple[str, str | None]]:
    """(issue id, first sent_at) of every issue someone received: what the web archive may show."""
    return [(row[0], row[1]) for row in
            conn.execute("SELECT issue_id, MIN(sent_at) FROM ledger WHERE status = 'sent' GROUP BY issue_id")]


def first_sent_time(conn: Connection, issue_id: str) -> tuple[bool, str | None]:
    """Was `issue_id` sent to anyone, and when first."""
    row = conn.execute("SELECT MIN(sent_at), COUNT(*) FROM ledger WHERE issue_id = ? AND status = 'sent'",
                       (issue_id,)).fetchone()
    return bool(row[1]), row[0]


def has_row(conn: Connection, issue_id: str, subscriber_id: int) -> bool:
    """Was this subscriber ever claimed for this issue (whatever became of the message)?"""
    return conn.execute("SELECT 1 FROM ledger WHERE issue_id = ? AND subscriber_id = ?",
                        (issue_id, subscriber_id)).fetchone() is not None


def counts(conn: Connection, issue_id: str) -> LedgerCounts:
    """Rows per status for the issue, and how many subscribed subscribers still lack a final row."""
    by_status = dict(
        conn.execute("SELECT status, COUNT(*) FROM ledger WHERE issue_id = ? GROUP BY status", (issue_id,)).fetchall()
    )
    remaining = conn.execute(
        "SELECT COUNT(*) FROM subscribers s WHERE s.status = 'subscribed' AND NOT EXISTS ("
        f" SELECT 1 FROM ledger l WHERE l.issue_id = ? AND l.subscriber_id = s.id AND {_FINAL})",
        (issue_id,),
    ).fetchone()[0]
    return LedgerCounts(
        sent=by_status.get("sent", 0),
        deferred=by_status.get("deferred", 0),
        failed=by_status.get("failed", 0),
        claimed=by_status.get("claimed", 0),
        remaining=int(remaining),
    )


class Ledger:
    """The ledger of one issue for one run: batches commits and remembers which claims were resumed."""

    def __init__(
        self,
        conn: Connection,
        issue_id: str,
        *,
        commit_every: int = 1,
        commit_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.issue_id = issue_id
        self.commit_every = max(1, commit_every)
        self.commit_interval = commit_interval
        self._clock = clock
        self._uncommitted = 0
        self._last_commit = clock()
        self._resumed: set[int] = set()
        self.recorded = 0  # results and releases recorded so far (newsletter.store.checkpoints reads it)

    def pending(self, *, batch: int = 500) -> Iterator[Subscriber]:
        return pending_subscribers(self.conn, self.issue_id, batch=batch)

    def claim_batch(self, subscriber_ids: Sequence[int]) -> list[int]:
        """Claim and commit (recorded results ride along in the same commit)."""
        result = claim(self.conn, self.issue_id, subscriber_ids)
        self._resumed |= result.resumed
        self._committed()
        return list(result.claimed)

    def was_claimed_before(self, subscriber_id: int) -> bool:
        """True when an earlier run left this row claimed (so sending now may be a re-send)."""
        return subscriber_id in self._resumed

    def release(self, subscriber_ids: Sequence[int]) -> None:
        release(self.conn, self.issue_id, subscriber_ids)
        self._resumed.difference_update(subscriber_ids)
        self._recorded()

    def reopen(self, subscriber_ids: Sequence[int]) -> None:
        reopen(self.conn, self.issue_id, subscriber_ids)
        self._recorded()

    def mark_sent(self, subscriber_id: int, message_id: str) -> None:
        mark_sent(self.conn, self.issue_id, subscriber_id, message_id)
        self._recorded()

    def mark_deferred(self, subscriber_id: int, code: int | None, reason: str) -> None:
        mark_deferred(self.conn, self.issue_id, subscriber_id, code, reason)
        self._recorded()

    def mark_failed(self, subscriber_id: int, code: int | None, reason: str) -> None:
        mark_failed(self.conn, self.issue_id, subscriber_id, code, reason)
        self._recorded()

    def maybe_commit(self) -> None:
        """Commit when the batch is full or the interval has passed."""
        if self._uncommitted and (
            self._uncommitted >= self.commit_every or self._clock() - self._last_commit >= self.commit_interval
        ):
            self.flush()

    def flush(self) -> None:
        self.conn.commit()
        self._committed()

    def commit_recorded(self) -> None:
        """Commit the results recorded since the last commit, if there are any."""
        if self._uncommitted:
            self.flush()

    def _recorded(self) -> None:
        self._uncommitted += 1
        self.recorded += 1
        self.maybe_commit()

    def _committed(self) -> None:
        self._uncommitted = 0
        self._last_commit = self._clock()

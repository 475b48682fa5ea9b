"""Leased claims on the ledger: which sender holds which (issue, subscriber) row, and until when.

Several senders may work on one issue at once (processes on one host, hosts sharing a PostgreSQL
database). Each is a `Lease`: a worker id (host, pid namespace, pid and a random part) and a length.

* A claim writes `claimed_by` and `claimed_until` (the database's clock + the lease) on each row and
  COMMITS before any of those messages reaches a transport.
* The holder renews its rows well inside the lease (`Claims.renew_if_due`, every third of it).
* Marks (sent / deferred / failed) and releases touch only rows the sender still holds.
* A row whose lease ran out, or whose holder is a process of this host that no longer exists, is
  taken over by the next claim and counted as resumed: its message may have reached the server.
  A live sender's rows are never taken: it renews them long before they expire.

PostgreSQL: claims lock their candidates with `FOR ... SKIP LOCKED`, so concurrent claimers take
disjoint batches without waiting for each other. SQLite: `BEGIN IMMEDIATE` makes claims take turns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from newsletter.models import Subscriber
from newsletter.store import claimrows
from newsletter.store.dbapi import DatabaseError, dialect, log_event, utc_now
from newsletter.store.ledger import Ledger, id_chunks, qmarks

__all__ = ["Lease", "Batch", "Holder", "new_run", "worker_id", "claim_next", "renew", "mark", "release", "release_all",
           "holders", "is_local_and_dead", "stamp", "db_time", "Claims"]

_HOST = socket.gethostname()


def _pid_namespace() -> str:
    """Processes in another pid namespace (a container) are not ours to judge dead or alive."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


_PIDNS = _pid_namespace()


def new_run() -> str:
    """A random name for one send: the senders started together share it."""
    return secrets.token_hex(4)


def worker_id(run: str | None = None) -> str:
    """host:pid-namespace:pid:run — unique per sender, and enough to tell a dead local process."""
    return f"{_HOST}:{_PIDNS}:{os.getpid()}:{run or new_run()}"


@dataclass(frozen=True)
class Lease:
    """Who claims (`worker`), and for how long a claim lasts unrenewed (`seconds`)."""

    worker: str
    seconds: float = 60.0

    @classmethod
    def new(cls, seconds: float = 60.0, *, run: str | None = None) -> Lease:
        return cls(worker_id(run), seconds)

    @property
    def run(self) -> str:
        """The send this sender belongs to: rows its run deferred are left for a later run."""
        return self.worker.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class Batch:
    """What one claim took: the subscribers (by id), those taken over from another holder, the new cursor."""

    subscribers: tuple[Subscriber, ...]
    resumed: frozenset[int]
    cursor: int


@dataclass(frozen=True)
class Holder:
    """A sender holding rows of an issue, and when its latest claim runs out (None: before leases existed)."""

    worker: str
    until: str | None
    rows: int


#: The senders running in this process now (their worker ids): one of ours that is not here has ended.
_LIVE_HERE: set[str] = set()


def is_local_and_dead(worker: str) -> bool:
    """True when `worker` names a sender of this host (and pid namespace) that has ended.

    Another process: when that process has ended. This process: when that sender's send has returned
    (a send that stopped on a database error, resumed by the same scheduler, desk or test process).
    """
    parts = worker.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != _HOST or parts[1] != _PIDNS or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid():
        return worker not in _LIVE_HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child its parent has not reaped yet is a zombie: dead, though kill() finds it
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def db_time(conn: Any) -> dt.datetime:
    """Now, on the database's clock for PostgreSQL (hosts' clocks may drift apart), on ours for SQLite."""
    if dialect(conn) == "postgresql":
        value = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        return value.astimezone(dt.UTC)  # type: ignore[no-any-return]
    return dt.datetime.now(dt.UTC)


def stamp(moment: dt.datetime) -> str:
    """The fixed-width text form of claimed_until (milliseconds), so text order is time order."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def claim_next(conn: Any, issue_id: str, lease: Lease, *, limit: int, after: int = 0,
               dead: Sequence[str] = ()) -> Batch:
    """Claim up to `limit` rows for `lease` and COMMIT (results recorded earlier in the transaction ride along).

    First rows to take over (claimed with a lapsed lease, or by a holder in `dead`) and 'deferred' rows of
    subscribed subscribers that another run deferred, then subscribed subscribers without a row, by id,
    after `after`.
    """
    postgres = dialect(conn) == "postgresql"
    if not postgres and not conn.in_transaction:
        conn.execute("BEGIN IMMEDIATE")  # one claimer at a time on SQLite
    try:
        now = db_time(conn)
        until = stamp(now + dt.timedelta(seconds=lease.seconds))
        at = utc_now()  # the other times in the ledger are this host's too; only leases use the database's clock
        gone = f" OR l.claimed_by IN ({qmarks(len(dead))})" if dead else ""
        lock = " FOR UPDATE OF l SKIP LOCKED" if postgres else ""
        # Two statements, each on the (issue_id, status) index: one with OR across the statuses would read
        # every row of the issue (all the sent ones too) on SQLite, for every claim.
        # A lapsed claim is taken whatever the subscriber's state: the send loop gives it back if they left.
        rows = conn.execute(
            "SELECT l.subscriber_id, l.status, l.claimed_by FROM ledger l WHERE l.issue_id = ? AND l.status = 'claimed'"
            f" AND (l.claimed_until IS NULL OR l.claimed_until < ?{gone}) LIMIT ?{lock}",
            (issue_id, stamp(now), *dead, limit),
        ).fetchall()
        if len(rows) < limit:
            rows += conn.execute(
                "SELECT l.subscriber_id, l.status, l.claimed_by FROM ledger l WHERE l.issue_id = ?"
                " AND l.status = 'deferred' AND (l.claimed_by IS NULL OR l.claimed_by NOT LIKE ?) AND EXISTS ("
                f" SELECT 1 FROM subscribers s WHERE s.id = l.subscriber_id AND s.status = 'subscribed') LIMIT ?{lock}",
                (issue_id, f"%:{lease.run}", limit - len(rows)),
            ).fetchall()
        taken = [int(row[0]) for row in rows]
        resumed = frozenset(int(row[0]) for row in rows if row[1] == "claimed")
        _log_takeovers(conn, issue_id, lease, [row[2] for row in rows if row[1] == "claimed"])
        for part in id_chunks(taken):
            conn.execute("UPDATE ledger SET status = 'claimed', claimed_by = ?, claimed_until = ?, claimed_at = ?,"
                         f" updated_at = ? WHERE issue_id = ? AND subscriber_id IN ({qmarks(len(part))})",
                         (lease.worker, until, at, at, issue_id, *part))
        cursor, fresh = after, []
        if len(taken) < limit:
            fresh, cursor = claimrows.claim_fresh(conn, issue_id, lease.worker, until=until, at=at,
                                                  limit=limit - len(taken), after=after)
        people = claimrows.people(conn, [*taken, *fresh])
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return Batch(subscribers=tuple(people), resumed=resumed, cursor=cursor)


def _log_takeovers(conn: Any, issue_id: str, lease: Lease, previous: list[str | None]) -> None:
    """One event per holder whose rows were taken over: how many, from whom, by whom (for the record)."""
    for holder in sorted(set(previous), key=str):
        log_event(conn, "send.takeover", issue_id=issue_id,
                  detail=f"rows={previous.count(holder)} from={holder or 'unknown'} by={lease.worker}")


def renew(conn: Any, issue_id: str, lease: Lease) -> set[int]:
    """Push the lease of every row `lease` holds forward (not committed); the ids it still holds."""
    until = stamp(db_time(conn) + dt.timedelta(seconds=lease.seconds))
    return {int(row[0]) for row in conn.execute(
        "UPDATE ledger SET claimed_until = ? WHERE issue_id = ? AND status = 'claimed' AND claimed_by = ?"
        " RETURNING subscriber_id", (until, issue_id, lease.worker)).fetchall()}


def mark(conn: Any, issue_id: str, worker: str, subscriber_id: int, status: str, *, code: int | None = None,
         reason: str | None = None, message_id: str | None = None) -> bool:
    """Record an outcome on a row `worker` holds (not committed); False if it holds it no longer."""
    now = utc_now()
    cursor = conn.execute(claimrows.MARK, (status, code, reason, message_id, now, status, now, issue_id,
                                           subscriber_id, worker))
    return bool(cursor.rowcount == 1)


def release(conn: Any, issue_id: str, worker: str, subscriber_ids: Sequence[int]) -> None:
    """Give back rows never handed to a transport (not committed): no row again, or 'deferred' if tried before."""
    for part in id_chunks(list(subscriber_ids)):
        marks = qmarks(len(part))
        conn.execute("DELETE FROM ledger WHERE issue_id = ? AND status = 'claimed' AND claimed_by = ?"
                     f" AND attempts = 0 AND subscriber_id IN ({marks})", (issue_id, worker, *part))
        conn.execute("UPDATE ledger SET status = 'deferred', claimed_until = NULL WHERE issue_id = ?"
                     f" AND status = 'claimed' AND claimed_by = ? AND subscriber_id IN ({marks})",
                     (issue_id, worker, *part))


def release_all(conn: Any, issue_id: str, worker: str) -> None:
    """Give back every row `worker` still holds (not committed): what a graceful stop leaves behind."""
    conn.execute("DELETE FROM ledger WHERE issue_id = ? AND status = 'claimed' AND claimed_by = ? AND attempts = 0",
                 (issue_id, worker))
    conn.execute("UPDATE ledger SET status = 'deferred', claimed_until = NULL WHERE issue_id = ?"
                 " AND status = 'claimed' AND claimed_by = ?", (issue_id, worker))


def holders(conn: Any, issue_id: str) -> list[Holder]:
    """Who holds claimed rows of the issue, with the latest end of their leases."""
    return [Holder(worker=row[0] or "", until=row[1], rows=int(row[2])) for row in conn.execute(
        "SELECT claimed_by, MAX(claimed_until), COUNT(*) FROM ledger WHERE issue_id = ? AND status = 'claimed'"
        " GROUP BY claimed_by", (issue_id,))]


class Claims(Ledger):
    """The ledger of one issue for one sender: leased claims, renewal, marks on held rows, batched commits.

    On PostgreSQL an outcome is written with the next statement that needs it (newsletter.store.claimrows):
    the commit (`flush`, due after `commit_every` results), the next subscribed check, a claim, a renewal, a
    release. Until then it is a recorded, uncommitted result, exactly as an executed but uncommitted UPDATE was.
    """

    def __init__(self, conn: Any, issue_id: str, lease: Lease, *, commit_every: int = 1, commit_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(conn, issue_id, commit_every=commit_every, commit_interval=commit_interval, clock=clock)
        self.lease = lease
        _LIVE_HERE.add(lease.worker)
        self.cursor = 0
        self.held: set[int] = set()
        self.taken_over: set[int] = set()
        self.lost = 0  # outcomes not recorded because another sender had taken the row over
        self.dead: tuple[str, ...] = ()
        self._renewed = clock()
        self._looked = float("-inf")
        self._postgres = dialect(conn) == "postgresql"
        self._marks: list[claimrows.Mark] = []  # PostgreSQL: outcomes recorded, not yet written
        claimrows.plan_for_indexes(conn, True)

    def next_batch(self, limit: int) -> list[Subscriber]:
        """Claim and commit the next rows (a sweep from the start once the cursor finds nothing)."""
        if self._clock() - self._looked >= 1.0:
            self.look_around()
        batch = self._claim(limit)
        if not batch.subscribers and self.cursor:
            self.cursor = 0  # rows given back behind the cursor (a stop, an unsubscribe race)
            batch = self._claim(limit)
        return list(batch.subscribers)

    def _claim(self, limit: int) -> Batch:
        self._write_marks()
        batch = claim_next(self.conn, self.issue_id, self.lease, limit=limit, after=self.cursor,
                           dead=self.dead)
        self.cursor = batch.cursor
        self.held.update(s.id for s in batch.subscribers)
        self.taken_over |= batch.resumed
        self._committed()
        return batch

    def look_around(self) -> float | None:
        """Find holders that died on this host; seconds until another holder's lease ends (None: none left)."""
        self._looked = self._clock()
        others = [h for h in holders(self.conn, self.issue_id) if h.worker != self.lease.worker]
        self.dead = tuple(h.worker for h in others if h.worker and is_local_and_dead(h.worker))
        live = [h for h in others if h.worker not in self.dead and h.until is not None and h.worker]
        if self.dead or len(live) < len(others):
            return 0.0
        if not live:
            return None
        ends = min(dt.datetime.fromisoformat(h.until) for h in live if h.until)
        return max(0.0, (ends - db_time(self.conn)).total_seconds())

    def end(self) -> None:
        """This sender has stopped: what it still holds is free to take at once in this process too."""
        _LIVE_HERE.discard(self.lease.worker)
        with contextlib.suppress(DatabaseError):  # a broken connection: the pool replaces it, setting and all
            claimrows.plan_for_indexes(self.conn, False)

    def renew_if_due(self, *, force: bool = False) -> None:
        """Renew every third of the lease (committing the results recorded so far)."""
        if not force and self._clock() - self._renewed < self.lease.seconds / 3:
            return
        self._write_marks()
        still = renew(self.conn, self.issue_id, self.lease)
        self.flush()
        self._renewed = self._clock()
        self.held &= still

    def holds(self, subscriber_id: int) -> bool:
        """Still ours (renewing first when the last renewal is getting old)."""
        if self._clock() - self._renewed >= self.lease.seconds * 0.6:
            self.renew_if_due(force=True)
        return subscriber_id in self.held

    def was_claimed_before(self, subscriber_id: int) -> bool:
        return subscriber_id in self.taken_over

    def release(self, subscriber_ids: Sequence[int]) -> None:
        release(self.conn, self.issue_id, self.lease.worker, subscriber_ids)
        self.held.difference_update(subscriber_ids)
        self.taken_over.difference_update(subscriber_ids)
        self._recorded()

    def release_all(self) -> None:
        self._write_marks()  # before: it gives back every row still 'claimed', and those are marked
        release_all(self.conn, self.issue_id, self.lease.worker)
        self.held.clear()
        self.flush()

    def reopen(self, subscriber_ids: Sequence[int]) -> None:
        self._write_marks()  # the 'failed' marks it takes back may not be written yet
        super().reopen(subscriber_ids)

    def flush(self) -> None:
        """Commit what was recorded (on PostgreSQL the outcomes not yet written go with the commit)."""
        self._write_marks()
        super().flush()

    def _write_marks(self, check: Sequence[int] = ()) -> set[int]:
        if not self._marks and not check:
            return set()
        marks, self._marks = self._marks, []
        marked, subscribed = claimrows.apply_marks(self.conn, self.issue_id, self.lease.worker, marks, check)
        self.lost += len(marks) - marked
        if marks and not self.conn.in_transaction:
            self._committed()  # written in a statement of its own: committed
        return subscribed

    def _mark(self, subscriber_id: int, status: str, **details: Any) -> None:
        if self._postgres:
            self._marks.append((subscriber_id, status, details.get("code"), details.get("reason"),
                                details.get("message_id"), utc_now()))
        elif not mark(self.conn, self.issue_id, self.lease.worker, subscriber_id, status, **details):
            self.lost += 1
        self.held.discard(subscriber_id)
        self._recorded()

    def mark_sent(self, subscriber_id: int, message_id: str) -> None:
        self._mark(subscriber_id, "sent", message_id=message_id)

    def mark_deferred(self, subscriber_id: int, code: int | None, reason: str) -> None:
        self._mark(subscriber_id, "deferred", code=code, reason=reason)

    def mark_failed(self, subscriber_id: int, code: int | None, reason: str) -> None:
        self._mark(subscriber_id, "failed", code=code, reason=reason)

    def subscribed_among(self, subscriber_ids: Sequence[int]) -> set[int]:
        """The subscribed ones among `subscriber_ids`, now: the send loop's check just before a hand-off (then
        `commit_recorded`). PostgreSQL: one round trip, which also writes (outside a transaction: commits) the
        outcomes recorded since the last write."""
        if self._postgres and self._marks:
            return self._write_marks(check=subscriber_ids)
        return claimrows.subscribed_among(self.conn, subscriber_ids)

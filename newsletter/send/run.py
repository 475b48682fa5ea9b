"""One sender's side of a send: claims rows, hands messages to the pool, writes every outcome to the ledger.

Everything here runs on the thread that owns the database connection; the pool's threads only talk to
transports. While it works, the sender renews the lease on the rows it holds (newsletter.store.claims).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from newsletter.errors import HeaderError
from newsletter.models import Message, Subscriber
from newsletter.store import subscribers
from newsletter.store.claims import Claims
from newsletter.store.events import Event, insert_event

from .pool import SENT, Job, Outcome, Pool

__all__ = ["Run", "Progress", "REFUSAL_LIMIT"]

Progress = Callable[[str, Subscriber], None]

#: This many identical permanent refusals in a row (not "no such user") stop the run.
REFUSAL_LIMIT = 5
#: Seconds between renewal and pause checks in `should_stop` (called for every message).
_TICK = 0.05
_ADDRESSES = re.compile(r"<[^>]*>|\S+@\S+")


def _refusal_key(reason: str) -> str:
    """The reply without the addresses it names, so the same refusal for different people compares equal."""
    return " ".join(_ADDRESSES.sub("", reason or "").split())[:120]


class Run:
    """The connection-owning side of one sender: claims, dispatches, and records every outcome."""

    def __init__(self, conn: Any, ledger: Claims, stop: threading.Event, progress: Progress | None,
                 pause_check: Callable[[], str | None] | None = None, pause_interval: float = 2.0, *,
                 group_commits: bool = True) -> None:
        self.conn, self.ledger, self.stop, self.progress = conn, ledger, stop, progress
        self.pause_check, self.pause_interval, self._next_pause_check = pause_check, pause_interval, 0.0
        self.sent = self.deferred = self.failed = self.bounced = self.resent = 0
        self.stopped_early: str | None = None
        self.error: BaseException | None = None
        self._refusal_key: tuple[int, str] | None = None
        self._refused: list[int] = []
        self._stopped_for: tuple[int, str] | None = None
        self.workers: Pool | None = None
        self._next_tick = 0.0
        # Lease and pause checks at most every 50 ms, or every `pause_interval` when that is shorter.
        self._tick = min(_TICK, pause_interval) if pause_check is not None else _TICK
        self.on_tick: Callable[[], None] = _nothing  # run with the lease and pause checks, every 50 ms
        # Commit what was recorded just before each hand-off (the results that arrived together share one
        # commit); with `group_commits` off the ledger's own batching (commit_every, commit_interval) decides.
        self.before_handoff: Callable[[], None] = ledger.commit_recorded if group_commits else _nothing

    def should_stop(self) -> bool:
        """True once the run is to stop; renews the lease and asks `pause_check` when due (looked at every 50 ms,
        or every `pause_interval` if shorter)."""
        workers = self.workers
        assert workers is not None
        if self.stop.is_set():
            workers.abort.set()
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + self._tick
            self.on_tick()
            self.ledger.renew_if_due()
            if self.pause_check is not None and now >= self._next_pause_check:
                # Bounces and complaints land in the database from other processes (fetch, webhooks).
                self._next_pause_check = now + self.pause_interval
                reason = self.pause_check()
                if reason:
                    self.stopped_early = self.stopped_early or reason
                    workers.abort.set()
        return workers.abort.is_set()

    def record(self, outcome: Outcome) -> None:
        job = outcome.job
        subscriber = job.subscriber
        sid = subscriber.id
        if outcome.status == SENT:
            ledger = self.ledger
            self.resent += ledger.was_claimed_before(sid)
            ledger.mark_sent(sid, job.message.message_id)
            self.sent += 1
        elif outcome.status == "deferred":
            self.ledger.mark_deferred(sid, outcome.code, outcome.reason)
            self.deferred += 1
        elif outcome.status in ("failed", "bounced"):
            self.fail(subscriber, outcome.code, outcome.reason, bounce=outcome.status == "bounced")
            return
        else:  # never handed over, or the transport could not take it: still pending
            self.ledger.release([sid])
            if outcome.status == "refused" and self.stopped_early is None:
                self.stopped_early = outcome.reason
            if outcome.status == "crashed" and self.error is None:
                self.error = outcome.error
            return
        if self.progress:
            self.progress(outcome.status, subscriber)

    def fail(self, subscriber: Subscriber, code: int | None, reason: str, *, bounce: bool = False) -> None:
        if bounce:  # before the ledger's commit, so both land together and no write lock is left open
            subscribers.mark_bounced(self.conn, subscriber.id, commit=False)
            insert_event(self.conn, Event(subscriber.id, "hard", "smtp", issue_id=self.ledger.issue_id,
                                          code=str(code or ""), diagnostic=reason))
            self.bounced += 1
        self.ledger.mark_failed(subscriber.id, code, reason)
        self.failed += 1
        if self.progress:
            self.progress("failed", subscriber)
        self._watch_refusals(subscriber.id, code, reason, bounce=bounce)

    def _watch_refusals(self, subscriber_id: int, code: int | None, reason: str, *, bounce: bool) -> None:
        """The same non-bounce refusal for REFUSAL_LIMIT messages in a row is about the sender, not them
        (a quota, a policy block): stop, and give those rows back so a later run sends them."""
        key = None if bounce or code is None else (code, _refusal_key(reason))
        if key is not None and key == self._stopped_for:
            # A message already in flight when the run stopped got the same refusal: give it back too.
            self.ledger.reopen([subscriber_id])
            self.failed -= 1
            return
        if key is None or key != self._refusal_key:
            self._refusal_key, self._refused = key, []
        if key is None:
            return
        self._refused.append(subscriber_id)
        if len(self._refused) >= REFUSAL_LIMIT:
            self.ledger.reopen(self._refused)
            self.failed -= len(self._refused)
            self.stopped_early = (f"the server refused {len(self._refused)} messages in a row with the same "
                                  f"answer ({code} {reason[:200]}); that is about the sender, not the "
                                  "recipients, so the run stopped and those rows stay pending")
            assert self.workers is not None
            self.workers.abort.set()
            self._stopped_for = key
            self._refusal_key, self._refused = None, []

    def dispatch(self, todo: list[Subscriber], make_message: Callable[[Subscriber], Message]) -> None:
        """Make the claimed subscribers' messages and hand them to the pool `connections` at a time (so the
        results that came back meanwhile share one commit); whatever is not handed over is given back."""
        workers, ledger, should_stop, record, vet = self.workers, self.ledger, self.should_stop, self.record, self.vet
        assert workers is not None
        size = max(1, workers.limit // 2)
        group: list[Job] = []  # made, not handed over yet
        settled = 0  # todo[:settled]: handed over, in `group`, or done with without a message
        complete = False
        try:
            for subscriber in todo:
                if should_stop():
                    return
                try:
                    group.append(Job(subscriber, make_message(subscriber)))
                except HeaderError as exc:  # this subscriber's name/address cannot go into a header
                    self.fail(subscriber, None, str(exc))
                settled += 1
                if len(group) >= size:
                    if not workers.hand(group, record, should_stop, vet):
                        return
                    group = []
            if group and not workers.hand(group, record, should_stop, vet):
                return
            group, complete = [], True
        finally:
            if not complete:
                ledger.release([job.subscriber.id for job in group] + [s.id for s in todo[settled:]])
        ledger.maybe_commit()

    def vet(self, jobs: list[Job]) -> list[Job]:
        """Just before a hand-off: the jobs whose rows this sender still holds and whose subscriber is still
        subscribed (the others' claims are given back), once every result recorded so far is committed."""
        ledger = self.ledger
        held = [job for job in jobs if ledger.holds(job.subscriber.id)]  # the others were taken over while this
        # sender stalled: their new holder sends them. One query for the group (PostgreSQL: one round trip, with
        # the outcomes waiting to be written).
        subscribed = ledger.subscribed_among([job.subscriber.id for job in held])
        kept = [job for job in held if job.subscriber.id in subscribed]
        # Unsubscribed (or bounced) since the claim: the claim is given back, nothing is sent (only the messages
        # already handed over, at most 2 x connections, can still go out after it).
        if len(kept) < len(held):
            ledger.release([job.subscriber.id for job in held if job.subscriber.id not in subscribed])
        # The results that came back since the last hand-off are committed before these messages go out,
        # so a crash re-sends no more than the messages really out (docs/reliability.md).
        self.before_handoff()
        return kept


def _nothing() -> None:
    pass

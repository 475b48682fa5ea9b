"""The send loop: pending ledger rows -> claimed -> Message -> transport -> sent | deferred | failed.

Threads only talk to transports. Every database write happens on the calling thread: workers hand
their outcomes back through a queue, so one sqlite3 connection is used by one thread, as it must be.
"""

from __future__ import annotations

import itertools
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from newsletter.errors import (
    HeaderError,
    PermanentDeliveryError,
    RecipientBounced,
    StopRun,
    TransientDeliveryError,
)
from newsletter.models import Message, Subscriber
from newsletter.policies import RetryPolicy, SendPolicy, SendReport
from newsletter.store import subscribers
from newsletter.store.events import Event, insert_event
from newsletter.store.ledger import Ledger, already_final
from newsletter.store.sqlite import ledger_error, log_event
from newsletter.transports import Transport

__all__ = ["RetryPolicy", "SendPolicy", "SendReport", "send_issue", "REFUSAL_LIMIT"]

Progress = Callable[[str, Subscriber], None]


#: This many identical permanent refusals in a row (not "no such user") stop the run.
REFUSAL_LIMIT = 5
_ADDRESSES = re.compile(r"<[^>]*>|\S+@\S+")


def _refusal_key(reason: str) -> str:
    """The reply without the addresses it names, so the same refusal for different people compares equal."""
    return " ".join(_ADDRESSES.sub("", reason or "").split())[:120]


@dataclass(frozen=True)
class _Job:
    subscriber: Subscriber
    message: Message


@dataclass(frozen=True)
class _Outcome:
    job: _Job
    status: str  # sent | deferred | failed | bounced | unsent | refused | crashed
    code: int | None = None
    reason: str = ""
    error: BaseException | None = None


class _Throttle:
    """At most `rate` sends per second across all workers."""

    def __init__(self, rate: float | None, wait: Callable[[float], bool]) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._wait = wait
        self._next = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        """Wait for a slot; False if the run was aborted meanwhile."""
        if not self.interval:
            return True
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        return self._wait(slot - now) if slot > now else True


class _Workers:
    """N threads, each with its own transport, fed through a small queue."""

    def __init__(self, transports: list[Transport], retry: RetryPolicy, rate: float | None,
                 sleep: Callable[[float], None] | None) -> None:
        self.retry = retry
        self.abort = threading.Event()
        self._sleep = sleep
        self.throttle = _Throttle(rate, self.wait)
        self.jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=len(transports))
        self.outcomes: queue.Queue[_Outcome] = queue.Queue()
        self.in_flight = 0
        self.threads = [
            threading.Thread(target=self._run, args=(t,), name=f"newsletter-send-{i}", daemon=True)
            for i, t in enumerate(transports)
        ]
        for thread in self.threads:
            thread.start()

    def wait(self, seconds: float) -> bool:
        """Sleep (waking early on abort unless a test sleep is injected); False if aborted."""
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self.abort.wait(seconds)
        return not self.abort.is_set()

    def _run(self, transport: Transport) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.abort.is_set():
                self.outcomes.put(_Outcome(job, "unsent"))
                continue
            try:
                outcome = self._deliver(transport, job)
            except Exception as exc:  # a bug in a transport: stop the run and re-raise on the main thread
                self.abort.set()
                outcome = _Outcome(job, "crashed", reason=str(exc), error=exc)
            self.outcomes.put(outcome)

    def _deliver(self, transport: Transport, job: _Job) -> _Outcome:
        last: TransientDeliveryError | None = None
        for attempt in range(1, max(1, self.retry.attempts) + 1):
            if attempt > 1 and not self.wait(self.retry.delay(attempt - 1)):
                break
            if not self.throttle():
                break
            try:
                transport.send(job.message)
                return _Outcome(job, "sent")
            except TransientDeliveryError as exc:
                last = exc
            except PermanentDeliveryError as exc:
                return _Outcome(job, "bounced" if isinstance(exc, RecipientBounced) else "failed", exc.code,
                                exc.reason)
            except StopRun as exc:
                self.abort.set()
                return _Outcome(job, "refused", exc.code, str(exc))
        if last is None:
            return _Outcome(job, "unsent")
        return _Outcome(job, "deferred", last.code, last.reason)

    def submit(self, job: _Job, record: Callable[[_Outcome], None], should_stop: Callable[[], bool]) -> bool:
        """Queue a job, recording outcomes while the queue is full; False if the run is stopping."""
        while not should_stop():
            try:
                self.jobs.put_nowait(job)
            except queue.Full:
                self.collect(record, timeout=0.05)
                continue
            self.in_flight += 1
            return True
        return False

    def collect(self, record: Callable[[_Outcome], None], *, timeout: float | None) -> None:
        """Record the outcomes that are ready, waiting up to `timeout` for the first (None: no waiting)."""
        block = timeout is not None
        while self.in_flight:
            try:
                outcome = self.outcomes.get(block=block, timeout=timeout)
            except queue.Empty:
                return
            self.in_flight -= 1
            block = False
            record(outcome)

    def finish(self, record: Callable[[_Outcome], None]) -> None:
        """Let the messages in flight finish, record them, and stop the threads."""
        for _ in self.threads:
            self.jobs.put(None)
        while self.in_flight and any(t.is_alive() for t in self.threads):
            self.collect(record, timeout=0.1)
        self.collect(record, timeout=None)
        for thread in self.threads:
            thread.join()


class _Run:
    """The main-thread side: claims, dispatches, and writes every outcome to the ledger."""

    def __init__(self, conn: sqlite3.Connection, ledger: Ledger, stop: threading.Event,
                 progress: Progress | None, pause_check: Callable[[], str | None] | None = None,
                 pause_interval: float = 2.0) -> None:
        self.conn, self.ledger, self.stop, self.progress = conn, ledger, stop, progress
        self.pause_check, self.pause_interval, self._next_pause_check = pause_check, pause_interval, 0.0
        self.sent = self.deferred = self.failed = self.bounced = self.resent = 0
        self.stopped_early: str | None = None
        self.error: BaseException | None = None
        self._refusal_key: tuple[int, str] | None = None
        self._refused: list[int] = []
        self._stopped_for: tuple[int, str] | None = None
        self.workers: _Workers | None = None

    def should_stop(self) -> bool:
        assert self.workers is not None
        if self.stop.is_set():
            self.workers.abort.set()
        if self.pause_check is not None and time.monotonic() >= self._next_pause_check:
            # Bounces and complaints land in the database from other processes (fetch, webhooks).
            self._next_pause_check = time.monotonic() + self.pause_interval
            reason = self.pause_check()
            if reason:
                self.stopped_early = self.stopped_early or reason
                self.workers.abort.set()
        return self.workers.abort.is_set()

    def record(self, outcome: _Outcome) -> None:
        subscriber = outcome.job.subscriber
        sid = subscriber.id
        if outcome.status == "sent":
            self.ledger.mark_sent(sid, outcome.job.message.message_id)
            self.sent += 1
            self.resent += self.ledger.was_claimed_before(sid)
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

    def _still_subscribed(self, subscriber_id: int) -> bool:
        """The subscriber's state now, not at claim time: an unsubscribe must stop a message already claimed
        (at most the `connections` messages queued or in flight can still go out after it)."""
        row = self.conn.execute("SELECT status FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
        return row is not None and row[0] == "subscribed"

    def dispatch(self, chunk: list[Subscriber], make_message: Callable[[Subscriber], Message]) -> None:
        assert self.workers is not None
        claimed = set(self.ledger.claim_batch([s.id for s in chunk]))
        todo = [s for s in chunk if s.id in claimed]
        for index, subscriber in enumerate(todo):
            handed = False
            try:
                if self.should_stop():
                    return
                if not self._still_subscribed(subscriber.id):
                    # Unsubscribed (or bounced) since the claim: the claim is given back, nothing is sent.
                    self.ledger.release([subscriber.id])
                    handed = True
                    continue
                try:
                    message = make_message(subscriber)
                except HeaderError as exc:  # this subscriber's name/address cannot go into a header
                    self.fail(subscriber, None, str(exc))
                    handed = True
                    continue
                handed = self.workers.submit(_Job(subscriber, message), self.record, self.should_stop)
                if not handed:
                    return
                self.workers.collect(self.record, timeout=None)
            finally:
                if not handed:
                    self.ledger.release([s.id for s in todo[index:]])
        self.ledger.maybe_commit()


def _chunks(items: Iterable[Subscriber], size: int) -> Iterator[list[Subscriber]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def send_issue(
    conn: sqlite3.Connection,
    issue_id: str,
    *,
    make_message: Callable[[Subscriber], Message],
    transport_factory: Callable[[], Transport],
    policy: SendPolicy = SendPolicy(),
    retry: RetryPolicy = RetryPolicy(),
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] | None = None,
    pause_check: Callable[[], str | None] | None = None,
    pause_interval: float = 2.0,
) -> SendReport:
    """Send `issue_id` to every subscribed subscriber without a final ledger row, streaming from the database.

    `sleep` replaces the (interruptible) wait used for backoff and rate limiting, for tests.
    `pause_check` (newsletter.bounces.pause) is asked at most every `pause_interval` seconds whether the
    issue's bounce or complaint rate says to stop; its answer becomes `stopped_early`.
    """
    connections, rate = policy.connections, policy.rate
    if connections < 1:
        raise ValueError("connections must be at least 1")
    started = time.monotonic()
    stop = stop if stop is not None else threading.Event()
    ledger = Ledger(conn, issue_id, commit_every=policy.commit_every, commit_interval=policy.commit_interval)
    run = _Run(conn, ledger, stop, progress, pause_check, pause_interval)
    try:
        skipped = already_final(conn, issue_id)
        log_event(conn, "send.start", issue_id=issue_id, detail=f"connections={connections} rate={rate}")
        conn.commit()
    except sqlite3.Error as exc:
        raise ledger_error(conn, exc, what=f"sending issue {issue_id}") from exc
    transports: list[Transport] = []
    try:
        try:
            for _ in range(connections):
                transports.append(transport_factory())
        except StopRun as exc:
            run.stopped_early = str(exc)
        if run.stopped_early is None:
            _send_all(run, transports, make_message, retry, rate, sleep, policy.claim_size, policy.page_size)
    finally:
        for transport in transports:
            transport.close()
    report = SendReport(
        issue_id=issue_id, sent=run.sent, deferred=run.deferred, failed=run.failed, skipped=skipped,
        resent_after_crash=run.resent, duration=time.monotonic() - started, stopped_early=run.stopped_early,
        interrupted=stop.is_set(), bounced=run.bounced,
    )
    try:
        log_event(conn, "send.finish", issue_id=issue_id, detail=report.log_line())
        conn.commit()
    except sqlite3.Error as exc:
        raise ledger_error(conn, exc, what=f"sending issue {issue_id}") from exc
    return report


def _send_all(run: _Run, transports: list[Transport], make_message: Callable[[Subscriber], Message],
              retry: RetryPolicy, rate: float | None, sleep: Callable[[float], None] | None,
              claim_size: int, page_size: int) -> None:
    run.workers = workers = _Workers(transports, retry, rate, sleep)
    try:
        for chunk in _chunks(run.ledger.pending(batch=page_size), max(1, claim_size)):
            if run.should_stop():
                break
            run.dispatch(chunk, make_message)
    except KeyboardInterrupt:
        # No handler was installed for SIGINT: treat Ctrl-C like the stop event.
        run.stop.set()
        workers.abort.set()
    except sqlite3.Error as exc:
        workers.abort.set()
        raise ledger_error(run.conn, exc, what=f"sending issue {run.ledger.issue_id}") from exc
    except BaseException:
        workers.abort.set()
        raise
    finally:
        try:
            workers.finish(run.record)
            run.ledger.flush()
        except sqlite3.Error as exc:  # the database failed again while recording the messages in flight
            workers.abort.set()
            raise ledger_error(run.conn, exc, what=f"recording the messages in flight of {run.ledger.issue_id}") \
                from exc
    if run.error is not None:
        raise run.error


"""The send loop's thread pool: N threads, each with its own transport, fed through a small queue.

Threads only talk to transports: they take a Job and hand back an Outcome; every database write happens
on the thread that owns the connection (newsletter.send.run).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.errors import PermanentDeliveryError, RecipientBounced, StopRun, TransientDeliveryError
from newsletter.models import Message, Subscriber
from newsletter.policies import RetryPolicy
from newsletter.transports import Transport

__all__ = ["Job", "Outcome", "Throttle", "Pool"]


@dataclass(frozen=True)
class Job:
    subscriber: Subscriber
    message: Message


@dataclass(frozen=True)
class Outcome:
    job: Job
    status: str  # sent | deferred | failed | bounced | unsent | refused | crashed
    code: int | None = None
    reason: str = ""
    error: BaseException | None = None


class Throttle:
    """At most `rate` sends per second across all threads."""

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


class Pool:
    """N threads, each with its own transport, fed through a queue of N jobs."""

    def __init__(self, transports: list[Transport], retry: RetryPolicy, rate: float | None,
                 sleep: Callable[[float], None] | None) -> None:
        self.retry = retry
        self.abort = threading.Event()
        self._sleep = sleep
        self.throttle = Throttle(rate, self.wait)
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=len(transports))
        self.outcomes: queue.Queue[Outcome] = queue.Queue()
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
                self.outcomes.put(Outcome(job, "unsent"))
                continue
            try:
                outcome = self._deliver(transport, job)
            except Exception as exc:  # a bug in a transport: stop the run and re-raise on the main thread
                self.abort.set()
                outcome = Outcome(job, "crashed", reason=str(exc), error=exc)
            self.outcomes.put(outcome)

    def _deliver(self, transport: Transport, job: Job) -> Outcome:
        last: TransientDeliveryError | None = None
        for attempt in range(1, max(1, self.retry.attempts) + 1):
            if attempt > 1 and not self.wait(self.retry.delay(attempt - 1)):
                break
            if not self.throttle():
                break
            try:
                transport.send(job.message)
                return Outcome(job, "sent")
            except TransientDeliveryError as exc:
                last = exc
            except PermanentDeliveryError as exc:
                return Outcome(job, "bounced" if isinstance(exc, RecipientBounced) else "failed", exc.code,
                               exc.reason)
            except StopRun as exc:
                self.abort.set()
                return Outcome(job, "refused", exc.code, str(exc))
        if last is None:
            return Outcome(job, "unsent")
        return Outcome(job, "deferred", last.code, last.reason)

    def submit(self, job: Job, record: Callable[[Outcome], None], should_stop: Callable[[], bool]) -> bool:
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

    def collect(self, record: Callable[[Outcome], None], *, timeout: float | None) -> None:
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

    def finish(self, record: Callable[[Outcome], None], tick: Callable[[], None] = lambda: None) -> None:
        """Let the messages in flight finish, record them, and stop the threads (`tick` runs while waiting)."""
        for _ in self.threads:
            self.jobs.put(None)
        try:
            while self.in_flight and any(t.is_alive() for t in self.threads):
                self.collect(record, timeout=0.1)
                tick()
            self.collect(record, timeout=None)
        except BaseException:
            self.abort.set()  # recording failed (the database): what is still queued stays unsent
            raise
        finally:
            # Always: the caller closes the transports next, and QUIT written while a thread is mid-message
            # would be read as message text, the server waiting for the end of data until the timeout.
            for thread in self.threads:
                thread.join()

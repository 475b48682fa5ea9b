"""The send loop's thread pool: N threads, each with its own transport, fed through one queue.

Threads only talk to transports: they take a Job and hand back an Outcome; every database write happens
on the thread that owns the connection (newsletter.send.run). Both queues are C-level `SimpleQueue`s (one
lock, no Python-level Condition per put/get); how many messages may be out at once is counted here instead:
at most `limit` = 2 x connections handed over whose outcome the owner has not collected yet (one being sent
and one waiting per connection), and before each hand-off `Pool.hand` lets the owner commit what it recorded.
The owner hands messages over `connections` at a time: it waits until no more than `connections` are out,
so the results of about `connections` messages share each commit while every connection stays busy.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from newsletter.errors import PermanentDeliveryError, RecipientBounced, StopRun, TransientDeliveryError
from newsletter.models import Message, Subscriber
from newsletter.policies import RetryPolicy
from newsletter.transports import Transport

__all__ = ["Job", "Outcome", "Throttle", "Pool", "SENT"]

SENT = "sent"


class Job:
    """One message for one subscriber (a slotted class: made and read once per message)."""

    __slots__ = ("subscriber", "message")

    def __init__(self, subscriber: Subscriber, message: Message) -> None:
        self.subscriber, self.message = subscriber, message


class Outcome:
    """What became of a Job: sent | deferred | failed | bounced | unsent | refused | crashed."""

    __slots__ = ("job", "status", "code", "reason", "error")

    def __init__(self, job: Job, status: str, code: int | None = None, reason: str = "",
                 error: BaseException | None = None) -> None:
        self.job, self.status, self.code, self.reason, self.error = job, status, code, reason, error


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
    """N threads, each with its own transport; at most 2 x N messages handed over and not yet collected."""

    def __init__(self, transports: list[Transport], retry: RetryPolicy, rate: float | None,
                 sleep: Callable[[float], None] | None) -> None:
        self.retry = retry
        self.abort = threading.Event()
        self._sleep = sleep
        self.throttle = Throttle(rate, self.wait)
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.limit = 2 * len(transports)
        self.in_flight = 0  # handed over, outcome not collected yet (only the owner's thread changes it)
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
        get, put, aborted = self.jobs.get, self.outcomes.put, self.abort.is_set
        plain = not self.throttle.interval  # no rate cap: the first attempt needs no slot
        while True:
            job = get()
            if job is None:
                return
            if aborted():
                put(Outcome(job, "unsent"))
                continue
            try:
                if plain:
                    try:  # the common case, without the retry loop's bookkeeping
                        transport.send(job.message)
                        put(Outcome(job, SENT))
                        continue
                    except TransientDeliveryError as exc:
                        outcome = self._deliver(transport, job, exc)
                    except (PermanentDeliveryError, StopRun) as exc:
                        outcome = self._refusal(job, exc)
                else:
                    outcome = self._deliver(transport, job, None)
            except Exception as exc:  # a bug in a transport: stop the run and re-raise on the main thread
                self.abort.set()
                outcome = Outcome(job, "crashed", reason=str(exc), error=exc)
            put(outcome)

    def _refusal(self, job: Job, exc: PermanentDeliveryError | StopRun) -> Outcome:
        if isinstance(exc, StopRun):
            self.abort.set()
            return Outcome(job, "refused", exc.code, str(exc))
        return Outcome(job, "bounced" if isinstance(exc, RecipientBounced) else "failed", exc.code, exc.reason)

    def _deliver(self, transport: Transport, job: Job, first: TransientDeliveryError | None) -> Outcome:
        """Attempts with backoff; `first`: the first attempt was made already and failed with it."""
        last = first
        for attempt in range(1 if first is None else 2, max(1, self.retry.attempts) + 1):
            if attempt > 1 and not self.wait(self.retry.delay(attempt - 1)):
                break
            if not self.throttle():
                break
            try:
                transport.send(job.message)
                return Outcome(job, SENT)
            except TransientDeliveryError as exc:
                last = exc
            except (PermanentDeliveryError, StopRun) as exc:
                return self._refusal(job, exc)
        if last is None:
            return Outcome(job, "unsent")
        return Outcome(job, "deferred", last.code, last.reason)

    def hand(self, jobs: list[Job], record: Callable[[Outcome], None], should_stop: Callable[[], bool],
             vet: Callable[[list[Job]], list[Job]]) -> bool:
        """Hand `jobs` (at most `limit`) to the threads once that many more may go out; False if the run is stopping.

        The outcomes that are ready are recorded first, waiting for more while too many are out; then `vet`
        (the owner's last checks and its commit) says which of the jobs go out, just before they do: so every
        recorded outcome is committed before another message goes out, and the results that came back since
        the last hand-off share that commit.
        """
        self.collect(record, timeout=None)
        while self.in_flight + len(jobs) > self.limit:
            if should_stop():
                return False
            self.collect(record, timeout=0.05)
        if should_stop():
            return False
        put = self.jobs.put
        for job in vet(jobs):
            put(job)
            self.in_flight += 1
        return True

    def collect(self, record: Callable[[Outcome], None], *, timeout: float | None) -> None:
        """Record the outcomes that are ready, waiting up to `timeout` for the first (None: no waiting)."""
        outcomes = self.outcomes
        if timeout is not None and self.in_flight:
            try:
                outcome = outcomes.get(True, timeout)
            except queue.Empty:
                return
            self.in_flight -= 1
            record(outcome)
        # Only this thread takes from the queue, so a non-empty queue has an outcome to take without waiting
        # (and without the cost of raising queue.Empty once per message).
        while self.in_flight and not outcomes.empty():
            self.in_flight -= 1
            record(outcomes.get_nowait())

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

"""Several sender processes on this host for one issue: `newsletter send ISSUE --workers N`.

Each worker is a fresh process (multiprocessing's "spawn": no connection, thread or lock is inherited)
running delivery.send_full with its own database connection and `connections` transports. The workers share
a run name, so none retries what another deferred; they share the work through the ledger's leased claims
(newsletter.store.claims), which is also how `newsletter worker` on another host joins. This process only
starts them, relays their progress and adds up their reports.

Stopping: the stop event (SIGINT/SIGTERM in the CLI) is passed on as SIGTERM; each worker finishes its
messages in flight, records them, gives back its other claims and reports. A worker that dies (kill -9, the
OOM killer) leaves its claims to the others, who take them over at once on this host.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from newsletter.approval import require_approval
from newsletter.errors import NewsletterError
from newsletter.models import Subscriber
from newsletter.policies import SendReport
from newsletter.settings import Settings
from newsletter.store import open_store
from newsletter.store.claims import new_run
from newsletter.store.ledger import already_final

from . import delivery

__all__ = ["WorkerSpec", "WorkerFailed", "send", "send_with_workers", "run_worker", "combine"]

Progress = Callable[[str, Subscriber], None]

_PROGRESS_EVERY = 0.2  # seconds between a worker's progress messages
_PROGRESS_BATCH = 500


class WorkerFailed(NewsletterError):
    """A worker process stopped with an error (its message, as the worker reported it)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process needs (pickled to it)."""

    settings: Settings
    folder: Path
    run: str
    index: int
    connections: int | None = None
    rate: float | None = None
    no_pause: bool = False
    pause_interval: float = 2.0
    progress: bool = True


@dataclass
class _Worker:
    spec: WorkerSpec
    process: Any
    pipe: Any
    report: SendReport | None = None
    error: tuple[str, int] | None = None
    exitcode: int | None = None
    done: bool = field(default=False)


class _Relay:
    """A worker's progress callback: outcomes batched and sent to the parent; a gone parent is ignored."""

    def __init__(self, pipe: Any, enabled: bool) -> None:
        self.pipe, self.enabled = pipe, enabled
        self.pending: list[tuple[str, int, str]] = []
        self.last = time.monotonic()

    def __call__(self, status: str, subscriber: Subscriber) -> None:
        self.pending.append((status, subscriber.id, subscriber.email))
        if len(self.pending) >= _PROGRESS_BATCH or time.monotonic() - self.last >= _PROGRESS_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.enabled:
            self.send(("progress", self.pending))
        self.pending, self.last = [], time.monotonic()

    def send(self, message: object) -> None:
        try:
            self.pipe.send(message)
        except OSError:  # the parent is gone: keep sending, stop reporting
            self.enabled = False


def run_worker(spec: WorkerSpec, pipe: Any) -> None:
    """The body of a worker process: SIGINT/SIGTERM stop it gracefully; its report goes to the parent."""
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        stop.set()  # Ctrl-C reaches the whole process group and the parent forwards it too: once is enough

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    relay = _Relay(pipe, spec.progress)
    try:
        report = delivery.send_full(spec.settings, spec.folder, stop=stop, progress=relay, run=spec.run,
                                    connections=spec.connections, rate=spec.rate, no_pause=spec.no_pause,
                                    pause_interval=spec.pause_interval)
    except NewsletterError as exc:
        relay.flush()
        relay.send(("error", str(exc), exc.exit_code))
        raise SystemExit(exc.exit_code) from None
    relay.flush()
    relay.send(("report", report))


def send(settings: Settings, folder: Path, *, workers: int | None = None, **options: Any) -> SendReport:
    """send_full in this process (no `workers`), or `workers` processes (send_with_workers)."""
    if not workers:
        return delivery.send_full(settings, folder, **options)
    return send_with_workers(settings, folder, workers=workers, **options)


def send_with_workers(settings: Settings, folder: Path, *, workers: int, stop: threading.Event | None = None,
                      progress: Progress | None = None, connections: int | None = None, rate: float | None = None,
                      no_pause: bool = False, pause_interval: float = 2.0,
                      target: Callable[[WorkerSpec, Any], None] = run_worker) -> SendReport:
    """`workers` sender processes on this host; their reports added up. `rate` is shared out between them.

    `target` is the worker's body (a benchmark may wrap run_worker to register a transport first).
    """
    require_approval(folder)  # one clear error here rather than one per worker
    delivery.lease_for(settings)  # the same for a bad setting
    stop = stop if stop is not None else threading.Event()
    started = time.monotonic()
    with open_store(settings).connection() as conn:
        skipped = already_final(conn, folder.name)
    run = new_run()
    share = rate / workers if rate else None
    context = multiprocessing.get_context("spawn")
    crew: list[_Worker] = []
    try:
        for index in range(workers):
            spec = WorkerSpec(settings, folder, run, index, connections, share, no_pause, pause_interval,
                              progress is not None)
            receive, send_end = context.Pipe(duplex=False)
            process = context.Process(target=target, args=(spec, send_end), name=f"newsletter-worker-{index}")
            process.start()
            send_end.close()
            crew.append(_Worker(spec, process, receive))
        _watch(crew, stop, progress)
    except BaseException:  # Ctrl-C twice, or a worker that could not start: stop the others gracefully
        _signal_all(crew)
        for member in crew:
            member.process.join()
        raise
    total = combine(folder.name, [m.report for m in crew if m.report is not None],
                    skipped=skipped, duration=time.monotonic() - started,
                    interrupted=stop.is_set())
    for member in crew:  # exited with a code but said nothing: a bug (its traceback is on stderr)
        if member.report is None and member.error is None and (member.exitcode or 0) > 0:
            member.error = (f"exited with code {member.exitcode}", 1)
    errors = [m for m in crew if m.error is not None]
    if errors:
        message, code = errors[0].error  # type: ignore[misc]
        raise WorkerFailed(f"worker {errors[0].spec.index + 1} of {workers}: {message}", code)
    died = [m for m in crew if m.report is None]
    if died and total.stopped_early is None and not total.interrupted:
        left = delivery.status(settings, folder)
        if left.remaining:
            names = ", ".join(f"{m.spec.index + 1} (exit {m.exitcode})" for m in died)
            total = replace(total, stopped_early=f"worker(s) {names} ended without a report and {left.remaining} "
                                                 "subscriber(s) are still to do")
    return total


def _signal_all(crew: list[_Worker]) -> None:
    for member in crew:
        if member.process.is_alive() and member.process.pid:
            try:
                os.kill(member.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _watch(crew: list[_Worker], stop: threading.Event, progress: Progress | None) -> None:
    """Relay progress and collect reports until every worker has ended; pass a stop on as SIGTERM."""
    forwarded = False
    while not all(m.done for m in crew):
        if stop.is_set() and not forwarded:
            _signal_all(crew)
            forwarded = True
        live = [m for m in crew if not m.done]
        ready = multiprocessing.connection.wait([m.pipe for m in live], timeout=0.2)
        for member in live:
            if member.pipe in ready:
                _receive(member, progress)
            elif not member.process.is_alive():
                # Ended: whatever it wrote before exiting is still readable (poll is also true at EOF).
                while not member.done and member.pipe.poll():
                    _receive(member, progress)
                _ended(member)
            if member.done:
                member.pipe.close()


def _ended(member: _Worker) -> None:
    """The worker's process has ended (or its pipe closed): reap it and keep its exit code."""
    member.process.join()
    member.exitcode = member.process.exitcode
    member.done = True


def _receive(member: _Worker, progress: Progress | None) -> None:
    try:
        message = member.pipe.recv()
    except (EOFError, OSError):
        _ended(member)
        return
    kind = message[0]
    if kind == "progress" and progress is not None:
        for status, sid, email in message[1]:
            progress(status, Subscriber(id=sid, email=email, name=""))
    elif kind == "report":
        member.report = message[1]
    elif kind == "error":
        member.error = (message[1], message[2])


def combine(issue_id: str, reports: list[SendReport], *, skipped: int, duration: float,
            interrupted: bool) -> SendReport:
    """One report for the workers of a send (`skipped` counted once, before they started)."""
    return SendReport(
        issue_id=issue_id, sent=sum(r.sent for r in reports), deferred=sum(r.deferred for r in reports),
        failed=sum(r.failed for r in reports), skipped=skipped,
        resent_after_crash=sum(r.resent_after_crash for r in reports), duration=duration,
        stopped_early=next((r.stopped_early for r in reports if r.stopped_early), None),
        interrupted=interrupted or any(r.interrupted for r in reports), bounced=sum(r.bounced for r in reports),
    )

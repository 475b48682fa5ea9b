"""The scheduler process: one per database (flock), fires due jobs, records misses and errors, stops cleanly."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.approval import read_approval
from newsletter.bounces.jobs import add_bounce_job
from newsletter.errors import ConfigError, NewsletterError, SchedulerRunning
from newsletter.settings import Settings
from newsletter.store import open_store

from .jobs import record, stop_event
from .jobstore import SEND_JOB, jobstore
from .times import UTC, now, utc_iso

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

__all__ = ["run_scheduler", "running_pid", "lock_path", "scheduler_lock", "poll_interval", "POLL_ENV",
           "DEFAULT_POLL_SECONDS", "LOCK_WAIT_SECONDS"]

log = logging.getLogger("newsletter.schedule")
POLL_ENV = "NEWSLETTER_SCHEDULER_POLL"
DEFAULT_POLL_SECONDS = 10.0
#: How long a starting scheduler tries for the lock: a probe (`schedule list`) holds it for microseconds.
LOCK_WAIT_SECONDS = 0.5



def _lock_file(settings: Settings, name: str) -> Path:
    database = settings.path(settings.database)
    return database.with_name(f"{database.name}.{name}.lock")


def lock_path(settings: Settings) -> Path:
    """The scheduler's lock file, next to the database."""
    return _lock_file(settings, "scheduler")


class _Busy(Exception):
    def __init__(self, pid: int | None) -> None:
        self.pid = pid


def _holder(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextmanager
def _flock(path: Path, *, wait: float = 0.0) -> Iterator[None]:
    """An exclusive flock on `path`, our pid written in it; the kernel frees it if the process dies.

    Tries again every 10 ms for up to `wait` seconds; then raises _Busy(pid of the holder).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _Busy(_holder(fd)) from None
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, as removing it would race with the next taker


def running_pid(settings: Settings) -> int | None:
    """The pid of the scheduler holding the lock (0 if unreadable), or None when none is running."""
    try:
        fd = os.open(lock_path(settings), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd) or 0
        return None  # closing the descriptor drops the probe lock
    finally:
        os.close(fd)


@contextmanager
def scheduler_lock(settings: Settings, *, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """One scheduler per database. Tries for `wait` s: `schedule list` probes the lock for a moment."""
    stack = ExitStack()
    try:
        stack.enter_context(_flock(lock_path(settings), wait=wait))
    except _Busy as busy:
        raise SchedulerRunning(
            f"another `newsletter scheduler` is already running for {settings.path(settings.database)}"
            f"{f' (pid {busy.pid})' if busy.pid else ''}; only one may fire jobs. Stop it first "
            f"(lock: {lock_path(settings)})", pid=busy.pid) from None
    with stack:
        # A shared database (PostgreSQL) may have schedulers on other hosts, which no local file lock sees.
        if not stack.enter_context(open_store(settings).exclusive("scheduler")):
            raise SchedulerRunning(
                f"another `newsletter scheduler` is already running on another host for "
                f"{settings.database_url or settings.path(settings.database)}; only one may fire jobs. "
                "Stop it first", pid=None)
        yield


def poll_interval() -> float:
    raw = os.environ.get(POLL_ENV)
    if not raw:
        return DEFAULT_POLL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise ConfigError(f"{raw!r}: must be a number of seconds between 0 and 3600", key=POLL_ENV)
    return value


def _wake() -> None:
    """The internal interval job: its only effect is that the scheduler looks at the store this often."""


def _listener(settings: Settings) -> Callable[[Any], None]:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED

    def on_event(event: Any) -> None:
        if event.jobstore != "default":
            return
        try:
            if event.code == EVENT_JOB_MISSED:
                log.warning("%s: missed, was due %s (more than the misfire grace time ago); not run",
                            event.job_id, utc_iso(event.scheduled_run_time))
                record(settings, event.job_id, "missed", "", insert=True, due_at=event.scheduled_run_time)
            elif event.code == EVENT_JOB_ERROR:
                exc = event.exception
                message = str(exc) if isinstance(exc, NewsletterError) else f"{type(exc).__name__}: {exc}"
                row = open_store(settings).job(event.job_id)
                if row is not None and (row.state, row.result) != ("error", message):  # not yet by the job
                    log.error("%s: %s", event.job_id, message)
                    record(settings, event.job_id, "error", message, insert=False)
        except NewsletterError as exc:
            log.error("%s: could not record the outcome: %s", event.job_id, exc)

    return on_event


def _resume_interrupted(settings: Settings, scheduler: BaseScheduler, config_path: str) -> None:
    """Sends a stopped scheduler left half done (SIGTERM, crash) go again now; the ledger skips who has it."""
    from apscheduler.triggers.date import DateTrigger

    rows = [row for row in open_store(settings).jobs()
            if row.state in ("running", "interrupted") and row.issue_id is not None]
    for row in rows:
        issue_id = row.issue_id
        if read_approval(settings.path(settings.issues_dir) / issue_id) is None:
            record(settings, row.job_id, "error", "the scheduler stopped during this run, before anything was "
                                                      "approved", insert=False)
            continue
        job_id = f"send:{issue_id}"
        log.info("%s: resuming the send the scheduler stopped during", job_id)
        # Not started yet, so this only queues the job; start() writes it to the store.
        scheduler.add_job(SEND_JOB, DateTrigger(run_date=now()), args=[config_path, issue_id], id=job_id,
                          name=f"send {issue_id}", misfire_grace_time=settings.misfire_grace_seconds,
                          coalesce=True, max_instances=1, replace_existing=True)
        if row.job_id != job_id:
            record(settings, row.job_id, "done", f"composed {issue_id}; its send resumes as {job_id}",
                    insert=False)
        record(settings, job_id, "scheduled", "resuming after the scheduler stopped during the send", insert=True,
                issue_id=issue_id, due_at=now())


def run_scheduler(settings: Settings, *, config_path: str, poll_seconds: float | None = None) -> None:
    """`newsletter scheduler`: fire due jobs until SIGTERM/SIGINT. Refuses to start if another one runs."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, EVENT_SCHEDULER_STARTED
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    poll = poll_seconds or poll_interval()
    with scheduler_lock(settings):
        scheduler = BlockingScheduler(jobstores={"default": jobstore(settings), "internal": MemoryJobStore()},
                                      executors={"default": ThreadPoolExecutor(4)}, timezone=UTC)
        started = threading.Event()
        scheduler.add_listener(_listener(settings), EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        scheduler.add_listener(lambda _event: started.set(), EVENT_SCHEDULER_STARTED)
        # Another process adds jobs to the store; the scheduler only sleeps until the next run time it
        # knows of, so this job makes it look again every `poll` seconds (SIGHUP: look now).
        scheduler.add_job(_wake, "interval", seconds=poll, id="wakeup", jobstore="internal")
        _resume_interrupted(settings, scheduler, config_path)
        add_bounce_job(settings, scheduler, config_path)  # every bounce_fetch_minutes when bounce_mailbox is set
        stop_event.clear()
        stopping: list[threading.Thread] = []

        def shutdown() -> None:
            stop_event.set()
            if started.wait(timeout=10) and scheduler.running:
                scheduler.shutdown(wait=True)  # waits for running jobs, which see stop_event

        def on_stop(signum: int, _frame: object) -> None:
            # Signal handlers run on the main thread, possibly inside the scheduler's locks: hand off.
            if stopping:  # a second signal: stop now; the ledger re-sends claimed rows on the next run
                log.warning("%s again: exiting without waiting for the send", signal.Signals(signum).name)
                os._exit(128 + signum)
            log.info("%s: finishing the message in flight, then stopping", signal.Signals(signum).name)
            stopping.append(threading.Thread(target=shutdown, name="newsletter-scheduler-stop"))
            stopping[0].start()

        def on_hup(_signum: int, _frame: object) -> None:
            threading.Thread(target=scheduler.wakeup, daemon=True).start()

        handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: on_hup}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        log.info("scheduler started (pid %d, database %s, looks for new jobs every %g s)",
                 os.getpid(), settings.path(settings.database), poll)
        try:
            scheduler.start()
        finally:
            for thread in stopping:
                thread.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("scheduler stopped")


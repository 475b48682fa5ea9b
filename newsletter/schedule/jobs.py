"""The scheduled jobs: what fires at a send's time or a digest's, recorded as running -> its outcome."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from newsletter.jobs.delivery import send_full
from newsletter.jobs.digest import DigestResult, digest
from newsletter.jobs.issues import issue_folder
from newsletter.errors import NewsletterError
from newsletter.policies import SendReport
from newsletter.settings import Settings
from newsletter.store import open_store

from .jobstore import load_config
from .times import now as _clock

__all__ = ["JobOutcome", "run_send", "run_digest", "record", "stop_event"]

log = logging.getLogger("newsletter.schedule")

#: Set when the scheduler stops: a running send finishes the message in flight, records it and returns.
stop_event = threading.Event()


@dataclass(frozen=True)
class JobOutcome:
    """What one run of a job did; `state` is done, skipped, incomplete or interrupted."""

    state: str
    message: str
    issue_id: str | None = None


def _send_outcome(report: SendReport) -> JobOutcome:
    counts = f"sent {report.sent}, {report.skipped} already had it, failed {report.failed}"
    if report.interrupted:
        return JobOutcome("interrupted", f"the scheduler stopped: {counts}; resumes when it starts again",
                          report.issue_id)
    if report.stopped_early or report.deferred:
        why = report.stopped_early or f"{report.deferred} deferred (4xx)"
        return JobOutcome("incomplete", f"{counts}; {why}; resume with: newsletter send {report.issue_id}",
                          report.issue_id)
    return JobOutcome("done", counts, report.issue_id)


def record(settings: Settings, job_id: str, state: str, result: str, *, insert: bool,
           issue_id: str | None = None, due_at: dt.datetime | None = None) -> None:
    """A job's state in the store's schedule records, and an event `schedule.<state>`."""
    open_store(settings).record_job(job_id, state, result, insert=insert, issue_id=issue_id, due_at=due_at,
                                    event=f"schedule.{state}")


@contextmanager
def _run(settings: Settings, job_id: str, issue_id: str | None = None) -> Iterator[list[JobOutcome]]:
    """Record running -> the outcome the body appends, or the error it raises (then re-raised for the event)."""
    record(settings, job_id, "running", "", insert=True, issue_id=issue_id, due_at=_clock())
    box: list[JobOutcome] = []
    try:
        yield box
    except NewsletterError as exc:
        log.error("%s: %s", job_id, exc)
        record(settings, job_id, "error", str(exc), insert=False)
        raise
    outcome = box[0]
    log.info("%s: %s: %s", job_id, outcome.state, outcome.message)
    record(settings, job_id, outcome.state, outcome.message, insert=False, issue_id=outcome.issue_id)


def run_send(config_path: str, issue_id: str) -> JobOutcome:
    """The job behind `schedule ISSUE --at`: the normal resumable ledger send (approval checked again)."""
    settings = load_config(config_path)
    job_id = f"send:{issue_id}"
    log.info("%s: firing", job_id)
    with _run(settings, job_id, issue_id) as box:
        folder = issue_folder(settings, issue_id)
        box.append(_send_outcome(send_full(settings, folder, stop=stop_event)))
    return box[0]


def run_digest(config_path: str, job_id: str, *, timezone: str = "UTC", min_new: int = 1, auto_send: bool = False,
               limit: int | None = None, now: dt.datetime | None = None) -> JobOutcome:
    """The job behind `schedule digest`: compose what is new since the last digest; maybe build, approve, send.

    `now` is for tests; the scheduler leaves it to the clock. The issue date is the run's date in `timezone`.
    """
    settings = load_config(config_path)
    today = (now or _clock()).astimezone(zoneinfo.ZoneInfo(timezone)).date()
    name = job_id.partition(":")[2] or job_id
    log.info("%s: firing for %s", job_id, today)
    with _run(settings, job_id) as box:
        result = digest(settings, name, today, min_new=min_new, auto_send=auto_send, limit=limit,
                             stop=stop_event)
        box.append(_digest_outcome(result))
    return box[0]


def _digest_outcome(result: DigestResult) -> JobOutcome:
    if result.skipped is not None:
        return JobOutcome("skipped", result.skipped, result.issue_id)
    if result.report is None:
        count = f"{result.new} {'summary' if result.new == 1 else 'summaries'}"
        return JobOutcome("done", f"composed {result.issue_id} ({count}) as a draft: review it, "
                                  f"then newsletter build/approve/send {result.issue_id}", result.issue_id)
    outcome = _send_outcome(result.report)
    return JobOutcome(outcome.state, f"{result.issue_id}: {outcome.message}", result.issue_id)

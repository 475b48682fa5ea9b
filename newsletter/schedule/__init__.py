"""Schedule: when sends and digests happen, as APScheduler jobs that call the same jobs as the CLI.

`times` parses what the editor typed, `jobstore` is where APScheduler keeps the jobs (the store's URL),
`requests` adds, cancels and lists them, `jobs` is what fires (`newsletter.schedule:run_send` and
`:run_digest`, the references the job store pickles), and `process` is the scheduler itself.
The store's schedule records keep what APScheduler forgets: a fired one-off, a run's outcome.
"""

from __future__ import annotations

from newsletter.errors import ScheduleError, SchedulerRunning

from .jobs import JobOutcome, run_digest, run_send, stop_event
from .jobstore import config_reference
from .requests import JobView, Scheduled, cancel, list_jobs, schedule_digest, schedule_send
from .times import UTC, digest_trigger, local_and_utc, parse_at, parse_every

__all__ = [
    "ScheduleError", "SchedulerRunning", "Scheduled", "JobOutcome", "JobView",
    "schedule_send", "schedule_digest", "cancel", "list_jobs", "run_send", "run_digest",
    "parse_at", "parse_every", "digest_trigger", "config_reference", "stop_event", "local_and_utc", "UTC",
]

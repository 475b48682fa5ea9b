"""Schedule requests: add a send or a digest to the job store, cancel one, list them with their states."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter.approval import require_approval
from newsletter.errors import ScheduleError
from newsletter.jobs.issues import issue_folder
from newsletter.settings import Settings
from newsletter.store import open_store

from .jobstore import DIGEST_JOB, SEND_JOB, store_only
from .process import running_pid
from .times import UTC, digest_trigger, dst_notes, local_and_utc, now, parse_at, utc_iso, zone

__all__ = ["Scheduled", "JobView", "schedule_send", "schedule_digest", "cancel", "list_jobs"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class Scheduled:
    job_id: str
    what: str
    run_at: dt.datetime  # the (next) run, aware, in the job's timezone
    replaced: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobView:
    """One line of `newsletter schedule list`."""

    job_id: str
    what: str
    timezone: str
    next_run: dt.datetime | None  # aware, in `timezone`; None once a one-off job has fired
    state: str
    detail: str


def schedule_send(settings: Settings, issue: str, *, config_path: str, at: str | None = None,
                  tz: str | None = None, now: bool = False,
                  clock: Callable[[], dt.datetime] = now) -> Scheduled:
    """One approved issue, sent at `at` (local time in `tz`), or as soon as the scheduler runs with `now`."""
    from apscheduler.triggers.date import DateTrigger

    zone_ = zone(tz, settings)
    notes: list[str] = []
    run_at, note = parse_at(at, zone_) if at is not None else (None, None)
    if at is None and not now:
        raise ScheduleError("say when: --at 'YYYY-MM-DD HH:MM', or --now")
    folder = issue_folder(settings, issue)
    require_approval(folder)  # refuse now rather than fail at 08:00; checked again when it fires
    current = clock().astimezone(zone_)
    if note:
        notes.append(note)
    if run_at is None or run_at <= current:
        if not now:
            raise ScheduleError(f"--at {at!r} is in the past ({local_and_utc(run_at or current, zone_)}; it is now "
                                f"{current:%Y-%m-%d %H:%M %Z}); give a later time, or add --now to send as soon as "
                                "the scheduler runs", value=at)
        if run_at is not None:
            notes.append(f"{at} has passed: it is sent as soon as the scheduler runs")
        run_at = current
    job_id, what = f"send:{folder.name}", f"send {folder.name}"
    with store_only(settings) as scheduler:
        replaced = scheduler.get_job(job_id) is not None
        scheduler.add_job(SEND_JOB, DateTrigger(run_date=run_at, timezone=zone_), args=[config_path, folder.name],
                          id=job_id, name=what, misfire_grace_time=settings.misfire_grace_seconds, coalesce=True,
                          max_instances=1, replace_existing=True)
    open_store(settings).record_job(job_id, "scheduled", what=what, timezone=zone_.key, issue_id=folder.name,
                                    due_at=run_at, event="schedule.add", detail=f"{job_id} at {utc_iso(run_at)}")
    return Scheduled(job_id=job_id, what=what, run_at=run_at, replaced=replaced, notes=tuple(notes))


def schedule_digest(settings: Settings, *, config_path: str, every: str, tz: str | None = None,
                    name: str = "weekly", min_new: int = 1, auto_send: bool = False, limit: int | None = None,
                    clock: Callable[[], dt.datetime] = now) -> Scheduled:
    """A recurring digest: each run composes an issue from what is new since the last one."""
    zone_ = zone(tz, settings)
    trigger = digest_trigger(every, zone_)
    if not _NAME.match(name):
        raise ScheduleError(f"--name {name!r}: use lower-case letters, digits and dashes", value=name)
    if min_new < 1 or (limit is not None and limit < 1):
        raise ScheduleError("--min-new and --limit must be at least 1")
    if min_new > (limit or settings.default_limit):
        raise ScheduleError(f"--min-new {min_new} is more than an issue holds ({limit or settings.default_limit}); "
                            "lower it or raise --limit", value=str(min_new))
    start = clock().astimezone(zone_)
    next_run = trigger.get_next_fire_time(None, start)
    assert next_run is not None  # a cron trigger without an end date always has a next run
    job_id = f"digest:{name}"
    what = (f"digest every {every.strip()} {zone_.key}, {'auto-send' if auto_send else 'draft'}"
            + (f", min-new {min_new}" if min_new > 1 else "") + (f", limit {limit}" if limit else ""))
    with store_only(settings) as scheduler:
        replaced = scheduler.get_job(job_id) is not None
        scheduler.add_job(DIGEST_JOB, trigger, args=[config_path, job_id],
                          kwargs={"timezone": zone_.key, "min_new": min_new, "auto_send": auto_send, "limit": limit},
                          id=job_id, name=what, misfire_grace_time=settings.misfire_grace_seconds, coalesce=True,
                          max_instances=1, replace_existing=True)
    open_store(settings).record_job(job_id, "scheduled", what=what, timezone=zone_.key, due_at=next_run,
                                    event="schedule.add", detail=f"{job_id}: {what}")
    return Scheduled(job_id=job_id, what=what, run_at=next_run, replaced=replaced,
                     notes=tuple(dst_notes(trigger, zone_, start)))


def cancel(settings: Settings, ref: str) -> str:
    """Remove a job (`send:2026-11-25`, `digest:weekly`, or just `2026-11-25` / `weekly`); returns its id."""
    candidates = [ref] if ":" in ref else [f"send:{Path(ref).name}", f"digest:{ref}"]
    with store_only(settings) as scheduler:
        target = next((job_id for job_id in candidates if scheduler.get_job(job_id) is not None), None)
        if target is not None:
            scheduler.remove_job(target)
    store = open_store(settings)
    if target is None:
        target = next((job_id for job_id in candidates if store.job(job_id) is not None), None)
    if target is None:
        raise ScheduleError(f"no scheduled job {ref!r}; see `newsletter schedule list` for the ids", value=ref)
    store.delete_job(target)
    return target


def list_jobs(settings: Settings, *, clock: Callable[[], dt.datetime] = now) -> list[JobView]:
    """Every job in the store plus every one-off that has fired, with its state."""
    now = clock()
    with store_only(settings) as scheduler:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    rows = {row.job_id: row for row in open_store(settings).jobs()}
    daemon = running_pid(settings)
    views = []
    for job_id in sorted(set(jobs) | set(rows)):
        job, row = jobs.get(job_id), rows.get(job_id)
        tz = zoneinfo.ZoneInfo(row.timezone) if row else UTC
        due = row.due_at if row else None
        state, detail = (row.state, row.result) if row else ("scheduled", "")
        if state == "running" and daemon is None:
            state = "interrupted"
            detail = "the scheduler stopped during this run; an approved send resumes when it starts"
        elif state == "missed" and due is not None:
            detail = f"was due {local_and_utc(due, tz)}"
        next_run = None
        if job is not None and job.next_run_time is not None:
            next_run = job.next_run_time.astimezone(tz)
            if state not in ("scheduled", "running"):  # a recurring job: its last run, then what comes next
                detail, state = f"last run: {state}{': ' + detail if detail else ''}", "scheduled"
            if next_run <= now and state == "scheduled":
                late = (now - next_run).total_seconds() > (job.misfire_grace_time or 0)
                state = "overdue"
                detail = ("fires now" if daemon else
                          "the scheduler is not running; past the grace time, it will be reported missed" if late else
                          "fires as soon as `newsletter scheduler` starts")
        elif state == "scheduled":
            state, detail = "lost", "no longer in the job store; schedule it again"
        views.append(JobView(job_id=job_id, what=row.what if row else (job.name if job else job_id),
                             timezone=tz.key, next_run=next_run, state=state, detail=detail))
    return views

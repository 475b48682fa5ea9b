"""Schedule: when sends and digests happen, as APScheduler jobs in the project's SQLite file.

Jobs are plain references (`newsletter.schedule:run_send`) with plain arguments (a config path, ids,
numbers), so what the job store pickles is only that and the trigger. The jobs call the same
pipeline/deliver functions as the CLI. `schedule_jobs` (our table, same file) keeps what
APScheduler forgets: a one-off job leaves its store when it fires, and a missed run is only an event.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sqlite3
import threading
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import db
from .approval import approve, read_approval, require_approval
from .compose import used_summary_ids
from .deliver import SendInProgress, database, send_full
from .errors import CheckFailed, NewsletterError
from .freeze import sent_count
from .pipeline import build, compose, gather, issue_folder
from .selection import select_latest
from .send import SendReport
from .settings import CONFIG_NAME, Settings, load_settings

if TYPE_CHECKING:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.base import BaseScheduler
    from apscheduler.triggers.cron import CronTrigger

__all__ = [
    "ScheduleError", "SchedulerRunning", "Scheduled", "JobOutcome", "JobView",
    "schedule_send", "schedule_digest", "cancel", "list_jobs", "run_send", "run_digest",
    "parse_at", "parse_every", "digest_trigger", "config_reference", "stop_event", "local_and_utc", "UTC",
]

log = logging.getLogger("newsletter.schedule")

UTC = dt.timezone.utc
_SEND = "newsletter.schedule:run_send"
_DIGEST = "newsletter.schedule:run_digest"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EVERY = re.compile(r"^(?:(?P<days>[a-z*][a-z,*-]*)\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})$")

#: Set when the scheduler stops: a running send finishes the message in flight, records it and returns.
stop_event = threading.Event()

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS schedule_jobs (
        job_id TEXT PRIMARY KEY,
        what TEXT NOT NULL,
        timezone TEXT NOT NULL,
        issue_id TEXT,          -- what a send job sends; the last issue a digest composed
        state TEXT NOT NULL,    -- scheduled running done skipped incomplete interrupted missed error
        due_at TEXT,            -- UTC run time of the next or the last fire
        result TEXT NOT NULL DEFAULT '',
        updated_at TEXT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS schedule_digests (
        name TEXT PRIMARY KEY,
        last_date TEXT NOT NULL,  -- issue date of the last digest composed: the next one starts there
        last_issue_id TEXT NOT NULL,
        updated_at TEXT
    )
    """,
)


class ScheduleError(NewsletterError):
    """A schedule request is invalid or cannot be carried out; `value` is the input at fault."""

    def __init__(self, message: str, *, value: str | None = None) -> None:
        self.value = value
        super().__init__(message)


class SchedulerRunning(ScheduleError):
    """Another `newsletter scheduler` holds the lock for this database."""

    def __init__(self, message: str, *, pid: int | None) -> None:
        self.pid = pid
        super().__init__(message)


@dataclass(frozen=True)
class Scheduled:
    job_id: str
    what: str
    run_at: dt.datetime  # the (next) run, aware, in the job's timezone
    replaced: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobOutcome:
    """What one run of a job did; `state` is done, skipped, incomplete or interrupted."""

    state: str
    message: str
    issue_id: str | None = None


@dataclass(frozen=True)
class JobView:
    """One line of `newsletter schedule list`."""

    job_id: str
    what: str
    timezone: str
    next_run: dt.datetime | None  # aware, in `timezone`; None once a one-off job has fired
    state: str
    detail: str


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _utc_iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def local_and_utc(moment: dt.datetime, tz: dt.tzinfo) -> str:
    """'2026-12-01 08:00 CET (07:00 UTC)', for messages and the list."""
    local, utc = moment.astimezone(tz), moment.astimezone(UTC)
    same_day = local.date() == utc.date()
    return f"{local:%Y-%m-%d %H:%M %Z} ({utc:%H:%M} UTC)" if same_day else \
        f"{local:%Y-%m-%d %H:%M %Z} ({utc:%Y-%m-%d %H:%M} UTC)"


# --- state in the project's database -------------------------------------------------------------------

@contextmanager
def _db(settings: Settings) -> Iterator[sqlite3.Connection]:
    """The project's database (WAL, schema applied by db.connect) plus our two tables; commits on success."""
    with database(settings) as conn:  # SQLite failures become a LedgerError naming the file
        for statement in _SCHEMA:
            conn.execute(statement)
        yield conn
        conn.commit()


def _save(conn: sqlite3.Connection, job_id: str, state: str, result: str = "", *, insert: bool = True,
          what: str | None = None, timezone: str | None = None, issue_id: str | None = None,
          due_at: dt.datetime | None = None) -> None:
    # insert=False for a run's final state: a job cancelled while it ran stays cancelled.
    if insert:
        conn.execute("INSERT OR IGNORE INTO schedule_jobs (job_id, what, timezone, state) VALUES (?, ?, ?, ?)",
                     (job_id, what or job_id, timezone or "UTC", state))
    conn.execute(
        "UPDATE schedule_jobs SET state = ?, result = ?, updated_at = ?, what = COALESCE(?, what),"
        " timezone = COALESCE(?, timezone), issue_id = COALESCE(?, issue_id), due_at = COALESCE(?, due_at)"
        " WHERE job_id = ?",
        (state, result, db.utc_now(), what, timezone, issue_id, due_at and _utc_iso(due_at), job_id))


def _record(settings: Settings, job_id: str, state: str, result: str, *, insert: bool,
            issue_id: str | None = None, due_at: dt.datetime | None = None) -> None:
    with _db(settings) as conn:
        _save(conn, job_id, state, result, insert=insert, issue_id=issue_id, due_at=due_at)
        db.log_event(conn, f"schedule.{state}", issue_id=issue_id, detail=f"{job_id}: {result}".strip(": "))


# --- the job store, as the CLI uses it -------------------------------------------------------------------

def jobstore(settings: Settings) -> SQLAlchemyJobStore:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from sqlalchemy.engine import URL

    url = URL.create("sqlite", database=str(settings.path(settings.database)))
    return SQLAlchemyJobStore(url=url, tablename="apscheduler_jobs", engine_options={"connect_args": {"timeout": 10}})


@contextmanager
def _store(settings: Settings) -> Iterator[BaseScheduler]:
    """A scheduler on the shared job store that never runs anything: how `schedule`/`cancel`/`list` use it.

    One that was never started only queues added jobs in memory until start(), so it is started
    paused. Not a BackgroundScheduler: on shutdown its thread processes due jobs once more, which
    would advance an overdue recurring job (skipping that run) or drop an overdue one-off.
    """
    from apscheduler.schedulers.base import BaseScheduler

    class StoreOnly(BaseScheduler):
        def wakeup(self) -> None:
            """Nothing to wake: there is no main loop."""

        def shutdown(self, wait: bool = False) -> None:
            super().shutdown(wait)

    with _db(settings):
        pass  # creates the file in WAL mode before SQLAlchemy opens it
    scheduler = StoreOnly(jobstores={"default": jobstore(settings)}, timezone=UTC)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


# --- parsing what the editor typed -----------------------------------------------------------------------

def zone(name: str | None, settings: Settings) -> zoneinfo.ZoneInfo:
    if name is None:
        return settings.tz
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"--tz {name!r}: unknown timezone (use an IANA name like Europe/Berlin)",
                            value=name) from None


def _wall_clock(naive: dt.datetime, tz: zoneinfo.ZoneInfo) -> str:
    """'ok', 'gap' (the clocks skip this time) or 'fold' (it happens twice)."""
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return "ok"
    return "gap" if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive else "fold"


def parse_at(text: str, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, str | None]:
    """'2026-12-01 08:00' in `tz` -> an aware datetime, and a note when the local time was ambiguous."""
    raw = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        parsed = None
    if parsed is None or len(raw) <= 10:  # a bare date would silently mean midnight
        raise ScheduleError(f"--at {text!r} is not a date and time; use 'YYYY-MM-DD HH:MM' (e.g. '2026-12-01 08:00')",
                            value=text)
    if parsed.tzinfo is not None:
        return parsed.astimezone(tz), None
    kind = _wall_clock(parsed, tz)
    if kind == "gap":
        later = parsed.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)
        raise ScheduleError(f"--at {text!r} does not exist in {tz.key}: the clocks go forward over that time "
                            f"(daylight saving time starts); use a time outside the gap, e.g. '{later:%Y-%m-%d %H:%M}'",
                            value=text)
    at = parsed.replace(tzinfo=tz, fold=0)
    if kind == "fold":
        return at, (f"{parsed:%Y-%m-%d %H:%M} happens twice in {tz.key} (the clocks go back); using the first, "
                    f"{at:%H:%M %Z} = {at.astimezone(UTC):%H:%M} UTC")
    return at, None


def parse_every(text: str) -> tuple[str, int, int]:
    """'mon 08:00', 'mon,thu 08:00', 'mon-fri 07:30', 'daily 08:00' -> (day_of_week, hour, minute)."""
    bad = ScheduleError(f"--every {text!r} is not understood; use days and a time like 'mon 08:00', "
                        "'mon,thu 08:00', 'mon-fri 07:30' or 'daily 08:00'", value=text)
    match = _EVERY.match(text.strip().lower())
    if not match:
        raise bad
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise bad
    days = match["days"] or "daily"
    if days in ("daily", "day", "*"):
        return "*", hour, minute
    parts = []
    for part in days.split(","):
        ends = part.split("-", 1)
        if not all(day in _DAYS or day in _FULL_DAYS for day in ends):
            raise bad
        parts.append("-".join(day[:3] for day in ends))
    return ",".join(parts), hour, minute


def digest_trigger(every: str, tz: zoneinfo.ZoneInfo) -> CronTrigger:
    from apscheduler.triggers.cron import CronTrigger

    days, hour, minute = parse_every(every)
    return CronTrigger(day_of_week=days, hour=hour, minute=minute, timezone=tz)


def _dst_notes(trigger: CronTrigger, tz: zoneinfo.ZoneInfo, start: dt.datetime) -> list[str]:
    """What APScheduler does with this time of day on the next DST changes (checked over a year of runs)."""
    notes: dict[str, str] = {}
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < start + dt.timedelta(days=366) and len(notes) < 2:
        wall = fire.replace(tzinfo=None)
        kind = _wall_clock(wall, tz)
        if kind == "gap" and "gap" not in notes:
            notes["gap"] = (f"{wall:%H:%M} does not exist in {tz.key} on {wall:%Y-%m-%d} (the clocks go forward): "
                            f"that run happens at {fire.astimezone(UTC).astimezone(tz):%H:%M %Z} instead")
        elif kind == "fold" and "fold" not in notes:
            notes["fold"] = (f"{wall:%H:%M} happens twice in {tz.key} on {wall:%Y-%m-%d} (the clocks go back): "
                             "the job fires at both; the second run finds that day's digest made and does nothing")
        fire = trigger.get_next_fire_time(fire, fire)
    return list(notes.values())


def config_reference(config: Path | None, settings: Settings) -> str:
    """What a job stores to find its settings again: the config file, or the project root if there is none."""
    if config is None and os.environ.get("NEWSLETTER_CONFIG"):
        config = Path(os.environ["NEWSLETTER_CONFIG"])
    if config is None and (settings.root / CONFIG_NAME).exists():
        config = settings.root / CONFIG_NAME
    return str(config.resolve()) if config is not None else str(settings.root)


def _load(config_path: str) -> Settings:
    path = Path(config_path)
    if path.is_dir():
        return load_settings(None, root=path, env={k: v for k, v in os.environ.items() if k != "NEWSLETTER_CONFIG"})
    return load_settings(path)


# --- schedule, cancel, list --------------------------------------------------------------------------------

def schedule_send(settings: Settings, issue: str, *, config_path: str, at: str | None = None,
                  tz: str | None = None, now: bool = False,
                  clock: Callable[[], dt.datetime] = _now) -> Scheduled:
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
    with _store(settings) as scheduler:
        replaced = scheduler.get_job(job_id) is not None
        scheduler.add_job(_SEND, DateTrigger(run_date=run_at, timezone=zone_), args=[config_path, folder.name],
                          id=job_id, name=what, misfire_grace_time=settings.misfire_grace_seconds, coalesce=True,
                          max_instances=1, replace_existing=True)
    with _db(settings) as conn:
        _save(conn, job_id, "scheduled", what=what, timezone=zone_.key, issue_id=folder.name, due_at=run_at)
        db.log_event(conn, "schedule.add", issue_id=folder.name, detail=f"{job_id} at {_utc_iso(run_at)}")
    return Scheduled(job_id=job_id, what=what, run_at=run_at, replaced=replaced, notes=tuple(notes))


def schedule_digest(settings: Settings, *, config_path: str, every: str, tz: str | None = None,
                    name: str = "weekly", min_new: int = 1, auto_send: bool = False, limit: int | None = None,
                    clock: Callable[[], dt.datetime] = _now) -> Scheduled:
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
    with _store(settings) as scheduler:
        replaced = scheduler.get_job(job_id) is not None
        scheduler.add_job(_DIGEST, trigger, args=[config_path, job_id],
                          kwargs={"timezone": zone_.key, "min_new": min_new, "auto_send": auto_send, "limit": limit},
                          id=job_id, name=what, misfire_grace_time=settings.misfire_grace_seconds, coalesce=True,
                          max_instances=1, replace_existing=True)
    with _db(settings) as conn:
        _save(conn, job_id, "scheduled", what=what, timezone=zone_.key, due_at=next_run)
        db.log_event(conn, "schedule.add", detail=f"{job_id}: {what}")
    return Scheduled(job_id=job_id, what=what, run_at=next_run, replaced=replaced,
                     notes=tuple(_dst_notes(trigger, zone_, start)))


def cancel(settings: Settings, ref: str) -> str:
    """Remove a job (`send:2026-11-25`, `digest:weekly`, or just `2026-11-25` / `weekly`); returns its id."""
    candidates = [ref] if ":" in ref else [f"send:{Path(ref).name}", f"digest:{ref}"]
    with _store(settings) as scheduler:
        target = next((job_id for job_id in candidates if scheduler.get_job(job_id) is not None), None)
        if target is not None:
            scheduler.remove_job(target)
    with _db(settings) as conn:
        if target is None:
            target = next((job_id for job_id in candidates if conn.execute(
                "SELECT 1 FROM schedule_jobs WHERE job_id = ?", (job_id,)).fetchone()), None)
        if target is None:
            raise ScheduleError(f"no scheduled job {ref!r}; see `newsletter schedule list` for the ids", value=ref)
        conn.execute("DELETE FROM schedule_jobs WHERE job_id = ?", (target,))
        db.log_event(conn, "schedule.cancel", detail=target)
    return target


def list_jobs(settings: Settings, *, clock: Callable[[], dt.datetime] = _now) -> list[JobView]:
    """Every job in the store plus every one-off that has fired, with its state."""
    now = clock()
    with _store(settings) as scheduler:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    with _db(settings) as conn:
        rows = {row["job_id"]: row for row in conn.execute("SELECT * FROM schedule_jobs")}
    from .scheduler import running_pid

    daemon = running_pid(settings)
    views = []
    for job_id in sorted(set(jobs) | set(rows)):
        job, row = jobs.get(job_id), rows.get(job_id)
        tz = zoneinfo.ZoneInfo(row["timezone"]) if row else UTC
        due = dt.datetime.fromisoformat(row["due_at"]) if row and row["due_at"] else None
        state, detail = (row["state"], row["result"]) if row else ("scheduled", "")
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
        views.append(JobView(job_id=job_id, what=row["what"] if row else (job.name if job else job_id),
                             timezone=tz.key, next_run=next_run, state=state, detail=detail))
    return views


# --- the jobs ------------------------------------------------------------------------------------------

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


@contextmanager
def _run(settings: Settings, job_id: str, issue_id: str | None = None) -> Iterator[list[JobOutcome]]:
    """Record running -> the outcome the body appends, or the error it raises (then re-raised for the event)."""
    _record(settings, job_id, "running", "", insert=True, issue_id=issue_id, due_at=_now())
    box: list[JobOutcome] = []
    try:
        yield box
    except NewsletterError as exc:
        log.error("%s: %s", job_id, exc)
        _record(settings, job_id, "error", str(exc), insert=False)
        raise
    outcome = box[0]
    log.info("%s: %s: %s", job_id, outcome.state, outcome.message)
    _record(settings, job_id, outcome.state, outcome.message, insert=False, issue_id=outcome.issue_id)


def run_send(config_path: str, issue_id: str) -> JobOutcome:
    """The job behind `schedule ISSUE --at`: the normal resumable ledger send (approval checked again)."""
    settings = _load(config_path)
    job_id = f"send:{issue_id}"
    log.info("%s: firing", job_id)
    with _run(settings, job_id, issue_id) as box:
        box.append(_send(settings, issue_folder(settings, issue_id)))
    return box[0]


def run_digest(config_path: str, job_id: str, *, timezone: str = "UTC", min_new: int = 1, auto_send: bool = False,
               limit: int | None = None, now: dt.datetime | None = None) -> JobOutcome:
    """The job behind `schedule digest`: compose what is new since the last digest; maybe build, approve, send.

    `now` is for tests; the scheduler leaves it to the clock. The issue date is the run's date in `timezone`.
    """
    settings = _load(config_path)
    today = (now or _now()).astimezone(zoneinfo.ZoneInfo(timezone)).date()
    name = job_id.partition(":")[2] or job_id
    log.info("%s: firing for %s", job_id, today)
    with _run(settings, job_id) as box:
        box.append(_digest(settings, name, today, min_new=min_new, auto_send=auto_send, limit=limit))
    return box[0]


def _digest(settings: Settings, name: str, today: dt.date, *, min_new: int, auto_send: bool,
            limit: int | None) -> JobOutcome:
    issues_dir = settings.path(settings.issues_dir)
    with _db(settings) as conn:
        last = conn.execute("SELECT last_date, last_issue_id FROM schedule_digests WHERE name = ?", (name,)).fetchone()
    if last and last["last_date"] == today.isoformat() and (issues_dir / last["last_issue_id"] / "issue.toml").exists():
        # A second fire on the same local day (a repeated hour when the clocks go back, a re-run).
        if not auto_send:
            return JobOutcome("skipped", f"today's digest {last['last_issue_id']} already exists",
                              last["last_issue_id"])
        return _deliver(settings, issues_dir / last["last_issue_id"])
    # Summaries dated on the last digest's day that it did not include still count; used ids rule out repeats.
    since = dt.date.fromisoformat(last["last_date"]) - dt.timedelta(days=1) if last else None
    new = select_latest(gather(settings), issue_date=today, limit=limit or settings.default_limit,
                        used_ids=used_summary_ids(issues_dir), since=since,
                        oldest=today - dt.timedelta(days=settings.max_age_days))
    if len(new) < min_new:
        after = f"since the last digest ({last['last_issue_id']})" if last else "that no issue holds yet"
        reason = f"{len(new)} new {'summary' if len(new) == 1 else 'summaries'} {after}; need at least {min_new}"
        with _db(settings) as conn:
            db.log_event(conn, "digest.skip", detail=f"{name}: {reason}")
        return JobOutcome("skipped", reason)
    issue_id = next(i for i in [today.isoformat(), f"{today}-digest", *(f"{today}-digest-{n}" for n in range(2, 100))]
                    if not (issues_dir / i).exists())
    issue = compose(settings, date=today, limit=limit, since=since, issue_id=issue_id)
    with _db(settings) as conn:
        conn.execute("INSERT INTO schedule_digests (name, last_date, last_issue_id, updated_at) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT (name) DO UPDATE SET last_date = excluded.last_date,"
                     " last_issue_id = excluded.last_issue_id, updated_at = excluded.updated_at",
                     (name, today.isoformat(), issue_id, db.utc_now()))
        _save(conn, f"digest:{name}", "running", insert=False, issue_id=issue_id)
        db.log_event(conn, "digest.compose", issue_id=issue_id, detail=f"{name}: {len(issue.summaries)} summaries")
    if not auto_send:
        count = f"{len(issue.summaries)} {'summary' if len(issue.summaries) == 1 else 'summaries'}"
        return JobOutcome("done", f"composed {issue_id} ({count}) as a draft: review it, "
                                  f"then newsletter build/approve/send {issue_id}", issue_id)
    return _deliver(settings, issue.folder)


def _deliver(settings: Settings, folder: Path) -> JobOutcome:
    if sent_count(settings, folder.name):  # a resumed digest: its build is frozen, finish the send
        outcome = _send(settings, folder)
        return JobOutcome(outcome.state, f"{folder.name}: {outcome.message}", folder.name)
    result = build(settings, folder)
    if not result.report.ok:
        problems = "; ".join(f.message for f in result.report.errors)
        raise CheckFailed(f"digest {folder.name} fails `newsletter check`, so it was not sent: {problems}")
    if read_approval(folder) is None:
        approve(folder)
    outcome = _send(settings, folder)
    return JobOutcome(outcome.state, f"{folder.name}: {outcome.message}", folder.name)


def _send(settings: Settings, folder: Path) -> JobOutcome:
    """send_full (which allows one run per issue at a time); a busy issue is a skip, not an error."""
    try:
        return _send_outcome(send_full(settings, folder, stop=stop_event))
    except SendInProgress as exc:
        return JobOutcome("skipped", str(exc), folder.name)


if __name__ == "__main__":
    # `python -m newsletter.schedule --config newsletter.toml`: the scheduler without the `newsletter` CLI.
    from newsletter.cli_schedule import main

    main()

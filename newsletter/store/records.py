"""Schedule records: what APScheduler forgets (a fired one-off, a run's outcome) and where each digest stands."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .dbapi import Connection, Row, log_event, utc_now

__all__ = ["JobRecord", "DigestMark", "save_job", "job", "jobs", "delete_job", "last_digest",
           "record_digest"]

# The tables are part of the versioned schema (newsletter.store.tables, schema v5).


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    what: str
    timezone: str
    issue_id: str | None
    state: str
    due_at: dt.datetime | None
    result: str


@dataclass(frozen=True)
class DigestMark:
    """Where digest `name` stands: the date and id of the last issue it composed."""

    date: dt.date
    issue_id: str


def _utc_iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def save_job(conn: Connection, job_id: str, state: str, result: str = "", *, insert: bool = True,
             what: str | None = None, timezone: str | None = None, issue_id: str | None = None,
             due_at: dt.datetime | None = None) -> None:
    # insert=False for a run's final state: a job cancelled while it ran stays cancelled.
    if insert:
        conn.execute("INSERT INTO schedule_jobs (job_id, what, timezone, state) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT DO NOTHING",
                     (job_id, what or job_id, timezone or "UTC", state))
    conn.execute(
        "UPDATE schedule_jobs SET state = ?, result = ?, updated_at = ?, what = COALESCE(?, what),"
        " timezone = COALESCE(?, timezone), issue_id = COALESCE(?, issue_id), due_at = COALESCE(?, due_at)"
        " WHERE job_id = ?",
        (state, result, utc_now(), what, timezone, issue_id, due_at and _utc_iso(due_at), job_id))


def _record(row: Row) -> JobRecord:
    due = dt.datetime.fromisoformat(row["due_at"]) if row["due_at"] else None
    return JobRecord(job_id=row["job_id"], what=row["what"], timezone=row["timezone"], issue_id=row["issue_id"],
                     state=row["state"], due_at=due, result=row["result"])


def job(conn: Connection, job_id: str) -> JobRecord | None:
    row = conn.execute("SELECT * FROM schedule_jobs WHERE job_id = ?", (job_id,)).fetchone()
    return _record(row) if row is not None else None


def jobs(conn: Connection) -> list[JobRecord]:
    return [_record(row) for row in conn.execute("SELECT * FROM schedule_jobs ORDER BY job_id")]


def delete_job(conn: Connection, job_id: str) -> None:
    conn.execute("DELETE FROM schedule_jobs WHERE job_id = ?", (job_id,))


def last_digest(conn: Connection, name: str) -> DigestMark | None:
    row = conn.execute("SELECT last_date, last_issue_id FROM schedule_digests WHERE name = ?", (name,)).fetchone()
    return DigestMark(dt.date.fromisoformat(row["last_date"]), row["last_issue_id"]) if row else None


def record_digest(conn: Connection, name: str, date: dt.date, issue_id: str, *, summaries: int) -> None:
    """Digest `name` composed `issue_id`: the next run starts there, and its job record names the issue."""
    conn.execute("INSERT INTO schedule_digests (name, last_date, last_issue_id, updated_at) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (name) DO UPDATE SET last_date = excluded.last_date,"
                 " last_issue_id = excluded.last_issue_id, updated_at = excluded.updated_at",
                 (name, date.isoformat(), issue_id, utc_now()))
    save_job(conn, f"digest:{name}", "running", insert=False, issue_id=issue_id)
    log_event(conn, "digest.compose", issue_id=issue_id, detail=f"{name}: {summaries} summaries")

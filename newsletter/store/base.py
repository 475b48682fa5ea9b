"""What both stores do the same way once they have a connection: every Store method but connection(),
jobstore_url() and jobstore_engine_options(), written against the dialect-neutral store modules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from . import ledger, records, subscribers
from .dbapi import log_event
from .ledger import LedgerCounts
from .records import DigestMark, JobRecord
from .subscribers import ImportReport

__all__ = ["StoreBase", "JOBSTORE_WAIT_SECONDS"]

#: How long APScheduler's job store waits for the database (SQLite's busy wait, libpq's connect timeout).
JOBSTORE_WAIT_SECONDS = 10


class StoreBase:
    """Store methods on top of `connection()`, which each implementation provides."""

    def connection(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    @contextmanager
    def _unit(self) -> Iterator[Any]:
        """A connection that commits on success."""
        with self.connection() as conn:
            yield conn
            conn.commit()

    def log_event(self, kind: str, *, issue_id: str | None = None, detail: str = "") -> None:
        with self._unit() as conn:
            log_event(conn, kind, issue_id=issue_id, detail=detail)

    def counts(self, issue_id: str) -> LedgerCounts:
        with self.connection() as conn:
            return ledger.counts(conn, issue_id)

    def pending(self, issue_id: str, *, sample: int) -> tuple[int, list[str]]:
        with self.connection() as conn:
            count, first = 0, []
            for sub in ledger.pending_subscribers(conn, issue_id):
                count += 1
                if len(first) < sample:
                    first.append(sub.email)
        return count, first

    def seed_subscribers(self, csv_file: Path) -> ImportReport | None:
        """Import `csv_file` only while the list is empty (the demo's sample subscribers)."""
        with self.connection() as conn:
            if subscribers.count(conn) > 0:
                return None
            return subscribers.import_csv(conn, csv_file)

    def last_digest(self, name: str) -> DigestMark | None:
        with self.connection() as conn:
            return records.last_digest(conn, name)

    def record_digest(self, name: str, date: dt.date, issue_id: str, *, summaries: int) -> None:
        with self._unit() as conn:
            records.record_digest(conn, name, date, issue_id, summaries=summaries)

    def record_job(self, job_id: str, state: str, result: str = "", *, insert: bool = True,
                   what: str | None = None, timezone: str | None = None, issue_id: str | None = None,
                   due_at: dt.datetime | None = None, event: str | None = None,
                   detail: str | None = None) -> None:
        """Save a job's state; with `event`, log it too (`detail` defaults to "job_id: result")."""
        with self._unit() as conn:
            records.save_job(conn, job_id, state, result, insert=insert, what=what, timezone=timezone,
                             issue_id=issue_id, due_at=due_at)
            if event is not None:
                log_event(conn, event, issue_id=issue_id,
                          detail=detail if detail is not None else f"{job_id}: {result}".strip(": "))

    def job(self, job_id: str) -> JobRecord | None:
        with self.connection() as conn:
            return records.job(conn, job_id)

    def jobs(self) -> list[JobRecord]:
        with self.connection() as conn:
            return records.jobs(conn)

    def delete_job(self, job_id: str) -> None:
        with self._unit() as conn:
            records.delete_job(conn, job_id)
            log_event(conn, "schedule.cancel", detail=job_id)

"""Storage: the Store protocol the jobs and the web app use, and its first implementation on SQLite.

Every SQL statement lives in this package: `sqlite` (connection, schema, events), `ledger` (who got
what), `subscribers` (the list) and `records` (schedule records and digests). A second store (say
PostgreSQL) implements `Store` and hands APScheduler its own job store URL.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import ledger, records, sqlite, subscribers
from .ledger import LedgerCounts
from .records import DigestMark, JobRecord
from .subscribers import ImportReport

if TYPE_CHECKING:
    from newsletter.settings import Settings

__all__ = ["Store", "SQLiteStore", "open_store", "LedgerCounts", "ImportReport", "DigestMark", "JobRecord"]


class Store(Protocol):
    """What the jobs, the scheduler and the web app need from storage."""

    def connection(self) -> AbstractContextManager[sqlite3.Connection]:
        """One unit of work for the send loop and the web app; a failure inside names the database."""
        ...

    def jobstore_url(self) -> str: ...

    def log_event(self, kind: str, *, issue_id: str | None = None, detail: str = "") -> None: ...

    # subscribers and the ledger
    def counts(self, issue_id: str) -> LedgerCounts: ...

    def pending(self, issue_id: str, *, sample: int) -> tuple[int, list[str]]: ...

    def seed_subscribers(self, csv_file: Path) -> ImportReport | None: ...

    # schedule records
    def last_digest(self, name: str) -> DigestMark | None: ...

    def record_digest(self, name: str, date: dt.date, issue_id: str, *, summaries: int) -> None: ...

    def record_job(self, job_id: str, state: str, result: str = "", *, insert: bool = True,
                   what: str | None = None, timezone: str | None = None, issue_id: str | None = None,
                   due_at: dt.datetime | None = None, event: str | None = None,
                   detail: str | None = None) -> None: ...

    def job(self, job_id: str) -> JobRecord | None: ...

    def jobs(self) -> list[JobRecord]: ...

    def delete_job(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class SQLiteStore:
    """The project's SQLite file; `busy_timeout` is how long a writer waits for another's lock."""

    path: Path
    busy_timeout: float = sqlite.BUSY_TIMEOUT_SECONDS

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite.connect(self.path, timeout=self.busy_timeout)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise sqlite.ledger_error(conn, exc, what="reading or updating the database") from exc
        finally:
            conn.close()

    @contextmanager
    def _records(self) -> Iterator[sqlite3.Connection]:
        """A connection with the schedule tables in place; commits on success."""
        with self.connection() as conn:
            records.ensure_schema(conn)
            yield conn
            conn.commit()

    def jobstore_url(self) -> str:
        from sqlalchemy.engine import URL

        with self._records():
            pass  # creates the file in WAL mode before SQLAlchemy opens it
        return URL.create("sqlite", database=str(self.path)).render_as_string(hide_password=False)

    def log_event(self, kind: str, *, issue_id: str | None = None, detail: str = "") -> None:
        with self.connection() as conn:
            sqlite.log_event(conn, kind, issue_id=issue_id, detail=detail)
            conn.commit()

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
        with self._records() as conn:
            return records.last_digest(conn, name)

    def record_digest(self, name: str, date: dt.date, issue_id: str, *, summaries: int) -> None:
        with self._records() as conn:
            records.record_digest(conn, name, date, issue_id, summaries=summaries)

    def record_job(self, job_id: str, state: str, result: str = "", *, insert: bool = True,
                   what: str | None = None, timezone: str | None = None, issue_id: str | None = None,
                   due_at: dt.datetime | None = None, event: str | None = None,
                   detail: str | None = None) -> None:
        """Save a job's state; with `event`, log it too (`detail` defaults to "job_id: result")."""
        with self._records() as conn:
            records.save_job(conn, job_id, state, result, insert=insert, what=what, timezone=timezone,
                             issue_id=issue_id, due_at=due_at)
            if event is not None:
                sqlite.log_event(conn, event, issue_id=issue_id,
                                 detail=detail if detail is not None else f"{job_id}: {result}".strip(": "))

    def job(self, job_id: str) -> JobRecord | None:
        with self._records() as conn:
            return records.job(conn, job_id)

    def jobs(self) -> list[JobRecord]:
        with self._records() as conn:
            return records.jobs(conn)

    def delete_job(self, job_id: str) -> None:
        with self._records() as conn:
            records.delete_job(conn, job_id)
            sqlite.log_event(conn, "schedule.cancel", detail=job_id)


def open_store(settings: Settings) -> Store:
    """The store the settings name (the `database` file; `busy_timeout` seconds for a writer to wait)."""
    return SQLiteStore(settings.path(settings.database), busy_timeout=settings.busy_timeout)

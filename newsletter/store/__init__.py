"""Storage: the Store protocol the jobs and the web app use, on SQLite (the default) or PostgreSQL.

Every SQL statement lives in this package, written once for both databases against `Connection`
(`dbapi`): `ledger` (who got what), `subscribers` (the list), `records` (schedule records and digests),
`events`, `safeguards`, `desk`; `sqlite` and `postgres` hold each database's connection and schema.
Callers catch `DatabaseError` (never sqlite3.Error or psycopg.Error) and annotate `Connection`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import desk, events, ledger, records, safeguards, sqlite, subscribers
from .base import JOBSTORE_WAIT_SECONDS, StoreBase
from .dbapi import Connection, DatabaseError, IntegrityError, ledger_error
from .ledger import LedgerCounts
from .records import DigestMark, JobRecord
from .schema import Upgrade
from .subscribers import ImportReport

if TYPE_CHECKING:
    from newsletter.settings import Settings

__all__ = ["Store", "SQLiteStore", "open_store", "is_database_url", "Connection", "DatabaseError", "IntegrityError",
           "Upgrade", "LedgerCounts", "ImportReport", "DigestMark", "JobRecord", "desk", "events", "ledger", "records",
           "safeguards", "subscribers"]


class Store(Protocol):
    """What the jobs, the scheduler and the web app need from storage."""

    def connection(self) -> AbstractContextManager[Connection]:
        """One unit of work for the send loop and the web app; a failure inside names the database."""
        ...

    def jobstore_url(self) -> str:
        """The SQLAlchemy URL of this database, for APScheduler's job store (the same database)."""
        ...

    def jobstore_engine_options(self) -> dict[str, Any]:
        """SQLAlchemy engine options for that job store: each driver names its own connect arguments."""
        ...

    def upgrade(self) -> Upgrade:
        """Create or upgrade the schema to the head revision (`newsletter db upgrade`); what it found and left."""
        ...

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """Held by one process of every host using this database, or yields False at once when another holds it.

        For what must run once per database however many hosts share it (the scheduler). A file lock
        suffices for SQLite, which lives on one host: there it always yields True.
        """
        ...

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
class SQLiteStore(StoreBase):
    """The project's SQLite file; `busy_timeout` is how long a writer waits for another's lock."""

    path: Path
    busy_timeout: float = sqlite.BUSY_TIMEOUT_SECONDS

    @contextmanager
    def connection(self) -> Iterator[sqlite.SQLiteConnection]:
        conn = sqlite.connect(self.path, timeout=self.busy_timeout)
        try:
            yield conn
        except DatabaseError as exc:
            raise ledger_error(conn, exc, what="reading or updating the database") from exc
        finally:
            conn.close()

    def jobstore_url(self) -> str:
        from sqlalchemy.engine import URL

        with self.connection():
            pass  # creates the file in WAL mode before SQLAlchemy opens it
        return URL.create("sqlite", database=str(self.path)).render_as_string(hide_password=False)

    def jobstore_engine_options(self) -> dict[str, Any]:
        return {"connect_args": {"timeout": JOBSTORE_WAIT_SECONDS}}  # sqlite3's busy wait

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        yield True  # one host: the caller's file lock next to the database is the whole story

    def upgrade(self) -> Upgrade:
        sqlite.prepare(self.path)
        from .migrate import upgrade_sqlite  # Alembic is imported only here

        return upgrade_sqlite(self.path)


def is_database_url(database: str | Path | None) -> bool:
    """True for a postgresql:// (or postgres://) URL, the one kind of database URL there is."""
    return isinstance(database, str) and database.startswith(("postgresql://", "postgres://"))


def open_store(settings: Settings) -> Store:
    """The store the settings name: PostgreSQL for `database = "postgresql://..."` (one pool per process), else
    the SQLite file `database` (`busy_timeout` seconds for a writer to wait)."""
    if settings.database_url is not None:
        if not is_database_url(settings.database_url):
            from newsletter.errors import ConfigError

            raise ConfigError("must be a file path or a postgresql://USER@HOST/DB URL", key="database")
        from .pgstore import shared_store

        return shared_store(settings.database_url)
    return SQLiteStore(settings.path(settings.database), busy_timeout=settings.busy_timeout)

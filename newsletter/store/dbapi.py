"""What every store module writes against: a dialect-neutral connection, its errors, and the few helpers
whose SQL differs between SQLite and PostgreSQL.

Store modules write `?` placeholders and SQL both databases accept (`INSERT ... ON CONFLICT DO NOTHING`,
`RETURNING id`, `CASE WHEN` instead of summing booleans). A SQLite connection is a `sqlite3.Connection`
(a subclass that says `dialect = "sqlite"`); a PostgreSQL one is newsletter.store.pgconn's wrapper around
psycopg, which rewrites the placeholders and raises `PostgresError` instead of psycopg's own errors, so
that code catching `DatabaseError` never imports psycopg.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from newsletter.errors import LedgerError

__all__ = ["Row", "Cursor", "Connection", "PostgresError", "PostgresIntegrityError", "DatabaseError",
           "IntegrityError", "dialect", "describe_sqlite_error", "begin_write", "transaction", "utc_now", "log_event", "ledger_error"]


class Row(Protocol):
    """A result row: by position (`row[0]`) and by column name (`row["email"]`), like sqlite3.Row."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __len__(self) -> int: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """One database session, as `Store.connection()` hands it out: `?` placeholders, rows like sqlite3.Row.

    `in_transaction` is true while writes wait for a commit (PostgreSQL's read-only snapshots do not count,
    as SQLite's reads do not), `dialect` is "sqlite" or "postgresql".
    """

    @property
    def dialect(self) -> str: ...

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class PostgresError(Exception):
    """A psycopg error raised through the store's PostgreSQL connection (the original is `__cause__`)."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class PostgresIntegrityError(PostgresError):
    """A constraint refused a row (SQLSTATE class 23), as sqlite3.IntegrityError on SQLite."""


#: Catch this around store calls instead of sqlite3.Error: it also catches PostgreSQL's failures.
DatabaseError: tuple[type[Exception], ...] = (sqlite3.Error, PostgresError)
#: A constraint (unique, check, foreign key, not null) refused a row, on either database.
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError, PostgresIntegrityError)


def dialect(conn: Any) -> str:
    """ "sqlite" or "postgresql" (a plain sqlite3.Connection, as some tests open, counts as SQLite)."""
    return getattr(conn, "dialect", "sqlite")


def utc_now() -> str:
    """The current time as ISO-8601 UTC, to the second (e.g. 2024-05-01T12:00:00+00:00)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def begin_write(conn: Any) -> None:
    """Take the database's writer lock for the current transaction, opening one if needed.

    SQLite: BEGIN IMMEDIATE (inside an open write transaction the lock is held already). PostgreSQL: a
    transaction-scoped advisory lock, so read-then-write units (a confirmation limit, an upsert by address,
    a claim) take turns across processes exactly as they do on SQLite.
    """
    if dialect(conn) == "sqlite":
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
    else:
        conn.lock_writes()


@contextmanager
def transaction(conn: Any) -> Iterator[Any]:
    """A write transaction (the writer lock first), COMMIT on success and ROLLBACK on error; inside an open
    transaction, joins it instead (the owner of the outer transaction decides when it commits)."""
    if conn.in_transaction:
        begin_write(conn)
        yield conn
        return
    begin_write(conn)
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def log_event(conn: Any, kind: str, *, issue_id: str | None = None, detail: str = "") -> None:
    """Append a row to the events log (not committed: it rides along with the caller's transaction)."""
    conn.execute(
        "INSERT INTO events (at, kind, issue_id, detail) VALUES (?, ?, ?, ?)",
        (utc_now(), kind, issue_id, detail),
    )


def ledger_error(conn: Any, exc: BaseException, *, what: str) -> LedgerError:
    """A LedgerError naming the database (file, or user@host:port/db), what was being done, and why it refused."""
    try:
        if hasattr(conn, "where"):
            where = conn.where
        else:  # a plain sqlite3.Connection
            row = conn.execute("PRAGMA database_list").fetchone()
            where = row[2] if row and row[2] else "the database"
    except Exception:  # noqa: BLE001 - a broken connection: the message still says what failed
        where = "the database"
    describe = getattr(conn, "describe_error", describe_sqlite_error)
    return LedgerError(f"{where}: {what}: {describe(exc)}")


def describe_sqlite_error(exc: BaseException) -> str:
    """SQLite's words, with what they mean for the person reading them."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"the database is locked by another process ({text})"
    if "readonly" in text or "read-only" in text:
        return f"the database is read-only ({text})"
    if "not a database" in text:
        return f"this file is not an SQLite database ({text})"
    return text

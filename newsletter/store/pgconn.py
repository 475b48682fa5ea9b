"""A psycopg 3 connection that speaks like the store's SQLite one: `?` placeholders, rows readable by position
and by name, `in_transaction` meaning "writes wait for a commit", and PostgresError instead of psycopg's errors.

Imported only when a PostgreSQL database is configured (psycopg is the optional `postgresql` extra).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from newsletter.store.dbapi import PostgresError, PostgresIntegrityError

__all__ = ["PgRow", "PostgresConnection", "translate", "wrap_error", "WRITE_LOCK"]

#: The advisory lock a write transaction takes (begin_write): PostgreSQL's stand-in for SQLite's one writer.
WRITE_LOCK = 0x6E6C5F7772697465

_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|TRUNCATE|MERGE|LOCK)\b", re.IGNORECASE)
# A read that writes or locks rows: a CTE with INSERT/UPDATE/DELETE, SELECT ... FOR UPDATE/SHARE (SKIP LOCKED).
_LOCKING_READ = re.compile(r"\b(INSERT|UPDATE|DELETE)\b|\bFOR\s+(NO\s+KEY\s+)?(UPDATE|SHARE)\b|\bFOR\s+KEY\s+SHARE\b",
                           re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def writes(sql: str) -> bool:
    """Does the statement write, or lock rows until the commit? (Then the connection is in a transaction.)"""
    return bool(_WRITES.match(sql) or (re.match(r"\s*(WITH|SELECT)\b", sql, re.IGNORECASE)
                                       and _LOCKING_READ.search(sql)))
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|\?|%""")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """`?` to `%s` outside quoted literals, identifiers and comments; every literal `%` doubled for psycopg."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        return token.replace("%", "%%")

    return _TOKENS.sub(one, sql)


class PgRow(tuple):  # type: ignore[type-arg]
    """A row like sqlite3.Row: `row[0]`, `row["email"]`, `row.keys()`; a tuple, so it unpacks and compares."""

    __slots__ = ()
    _index: dict[str, int] = {}
    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                raise IndexError(f"no column named {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)  # a repeated name means its first column, as with sqlite3.Row
    return type("PgRow", (PgRow,), {"__slots__": (), "_index": index, "_names": names})


def _rows(cursor: Any) -> Any:
    """psycopg row factory: PgRow instances for this result's columns."""
    names = tuple(column.name for column in cursor.description or ())
    cls = _row_class(names)
    return lambda values: tuple.__new__(cls, values)


def wrap_error(exc: psycopg.Error) -> PostgresError:
    """Our own exception for a psycopg one (the original becomes its __cause__ when raised `from`)."""
    kind = PostgresIntegrityError if isinstance(exc, psycopg.IntegrityError) else PostgresError
    text = str(exc).strip() or type(exc).__name__
    return kind(text, sqlstate=getattr(exc, "sqlstate", None))


class PostgresConnection:
    """One pooled (or direct) psycopg connection behind the store's Connection protocol."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[Any], where: str) -> None:
        self.raw = raw
        self.where = where
        self._writing = False

    @property
    def in_transaction(self) -> bool:
        status = self.raw.info.transaction_status
        return self._writing or status == TransactionStatus.INERROR

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        if writes(sql):
            self._writing = True
        try:
            cursor = self.raw.cursor(row_factory=_rows)
            cursor.execute(translate(sql), tuple(parameters))
        except psycopg.Error as exc:
            raise wrap_error(exc) from exc
        return cursor

    def _idle(self) -> bool:
        """No transaction open (nor a write waiting for its BEGIN): a statement now can be one of its own."""
        return not self._writing and self.raw.info.transaction_status == TransactionStatus.IDLE

    @contextmanager
    def _autocommit(self) -> Iterator[None]:
        """Autocommit for the statements inside: each (or one pipeline) is committed when it returns."""
        self.raw.autocommit = True
        try:
            yield
        finally:
            try:
                self.raw.autocommit = False
            except psycopg.Error:
                pass  # the connection broke: the error raised inside says so, and the pool replaces it

    def execute_alone(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        """`execute` (rows as plain tuples), as a transaction of its own when none is open: committed when it
        returns, in one round trip.

        (Otherwise psycopg sends BEGIN first and the caller a COMMIT after: three round trips.) Inside an open
        transaction it is part of that transaction, as `execute` would make it.
        """
        if not self._idle():
            return self.execute(sql, parameters)
        try:
            with self._autocommit():
                cursor = self.raw.cursor()  # rows as plain tuples: no column names read per result
                cursor.execute(translate(sql), tuple(parameters))
        except psycopg.Error as exc:
            raise wrap_error(exc) from exc
        return cursor

    def execute_together(self, statements: Sequence[tuple[str, Sequence[Any]]], /) -> list[Any]:
        """Several statements in one round trip (libpq's pipeline mode); their cursors (rows as plain tuples).

        As `execute_alone`: with no transaction open they are one transaction of their own, committed when this
        returns (a failing one rolls them all back); otherwise part of the open transaction.
        """
        alone = self._idle()
        if not alone and any(writes(sql) for sql, _ in statements):
            self._writing = True
        cursors = []
        try:
            with self._autocommit() if alone else nullcontext():
                with self.raw.pipeline():
                    for sql, parameters in statements:
                        cursor = self.raw.cursor()
                        cursor.execute(translate(sql), tuple(parameters))
                        cursors.append(cursor)
        except psycopg.Error as exc:
            raise wrap_error(exc) from exc
        return cursors

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        rows = [tuple(row) for row in parameters]
        if rows and writes(sql):
            self._writing = True
        try:
            cursor = self.raw.cursor(row_factory=_rows)
            if rows:
                cursor.executemany(translate(sql), rows)
        except psycopg.Error as exc:
            raise wrap_error(exc) from exc
        return cursor

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Bulk-load rows with COPY (the streaming import's fast path)."""
        self._writing = True
        try:
            with self.raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise wrap_error(exc) from exc

    def lock_writes(self) -> None:
        """The writer lock for this transaction (released by its COMMIT or ROLLBACK)."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        self._writing = True

    def commit(self) -> None:
        try:
            self.raw.commit()
        except psycopg.Error as exc:
            raise wrap_error(exc) from exc
        finally:
            self._writing = False

    def rollback(self) -> None:
        try:
            self.raw.rollback()
        except psycopg.Error as exc:
            raise wrap_error(exc) from exc
        finally:
            self._writing = False

    def close(self) -> None:
        self.raw.close()

    @staticmethod
    def describe_error(exc: BaseException) -> str:
        text = str(exc).strip()
        state = getattr(exc, "sqlstate", None)
        if state in ("40P01", "55P03", "57014"):
            return f"the database is locked by another process ({text})"
        if state == "25006":
            return f"the database is read-only ({text})"
        return text

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

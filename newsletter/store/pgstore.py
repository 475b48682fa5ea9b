"""The PostgreSQL store: the Store protocol on a psycopg_pool connection pool (one pool per database per process).

Imported only when `database` is a postgresql:// URL: psycopg is the optional `postgresql` extra.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from newsletter.errors import LedgerError

from . import postgres
from .base import JOBSTORE_WAIT_SECONDS, StoreBase
from .dbapi import PostgresError, ledger_error
from .pgconn import PostgresConnection

if TYPE_CHECKING:
    from .schema import Upgrade

__all__ = ["PostgresStore", "DEFAULT_POOL_SIZE", "shared_store", "close_shared"]

DEFAULT_POOL_SIZE = 5


class PostgresStore(StoreBase):
    """The database at `url` (password from NEWSLETTER_DATABASE_PASSWORD in `env`, TLS options as written).

    The pool opens on first use, after checking the schema: a database this newsletter does not know (older:
    run `newsletter db upgrade`; newer: upgrade newsletter) is refused with a message naming it.
    `timeout` is how long a caller waits for a free connection.
    """

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE, env: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        self.info = postgres.conninfo(url, os.environ if env is None else env)
        self.where = postgres.where(self.info)
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the password
        return f"PostgresStore({self.where!r}, pool_size={self.pool_size})"

    def _open(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                postgres.connect(self.info).close()  # refuses a schema it does not know, or an older one
                self._pool = ConnectionPool(self.info, min_size=1, max_size=self.pool_size, timeout=self.timeout,
                                            check=ConnectionPool.check_connection, open=True,
                                            name=f"newsletter {self.where}")
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[PostgresConnection]:
        """One pooled connection; uncommitted work is rolled back when it goes back to the pool."""
        pool = self._pool or self._open()
        try:
            raw = pool.getconn()
        except psycopg.Error as exc:
            raise LedgerError(f"{self.where}: cannot connect to the database: {str(exc).strip()}") from exc
        conn = PostgresConnection(raw, self.where)
        try:
            yield conn
        except PostgresError as exc:
            raise ledger_error(conn, exc, what="reading or updating the database") from exc
        finally:
            try:
                if not raw.closed and raw.info.transaction_status != TransactionStatus.IDLE:
                    raw.rollback()
            except psycopg.Error:
                pass  # the pool's check finds and replaces a broken connection
            pool.putconn(raw)

    def close(self) -> None:
        """Close the pool (its connections end); the next use opens a new one."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """A session advisory lock on a connection of its own, held while the block runs (False: another has it).

        The server frees it when this process or its connection dies, so a crash never leaves it held.
        """
        key = int.from_bytes(hashlib.sha256(f"newsletter:{name}".encode()).digest()[:8], "big", signed=True)
        try:
            conn = psycopg.connect(self.info, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerError(f"{self.where}: cannot connect to the database: {str(exc).strip()}") from exc
        with conn:
            held = bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])
            yield held

    def jobstore_url(self) -> str:
        return postgres.jobstore_url(self.info)

    def jobstore_engine_options(self) -> dict[str, Any]:
        return {"connect_args": {"connect_timeout": JOBSTORE_WAIT_SECONDS}}  # libpq's connect timeout

    def upgrade(self) -> Upgrade:
        """Create or upgrade the schema (`newsletter db upgrade`); what it found and left."""
        from .migrate import upgrade_postgres

        return upgrade_postgres(self.info)


_shared: dict[tuple[int, str, int], PostgresStore] = {}
_shared_lock = threading.Lock()


def shared_store(url: str, *, pool_size: int = DEFAULT_POOL_SIZE, env: Mapping[str, str] | None = None) -> PostgresStore:
    """The process's store for `url`: every open_store() of a process shares one pool (a fork gets its own)."""
    info = postgres.conninfo(url, os.environ if env is None else env)
    key = (os.getpid(), info, pool_size)
    with _shared_lock:
        store = _shared.get(key)
        if store is None:
            store = _shared[key] = PostgresStore(url, pool_size=pool_size, env=env)
        return store


def close_shared() -> None:
    """Close every pool shared_store() opened in this process (at exit, or when a test drops its database)."""
    with _shared_lock:
        stores = list(_shared.values())
        _shared.clear()
    for store in stores:
        store.close()


atexit.register(close_shared)

"""The store suite's fixtures: one `store` per test on each database (a fresh SQLite file; a fresh PostgreSQL
database copied from an upgraded template on the session's throwaway cluster), and `conn`, one connection of it.

Test modules import the fixtures by name (`from store_support import conn, store  # noqa: F401`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import throwaway_database
from newsletter.store import SQLiteStore, Store

STORES = [pytest.param("sqlite", id="sqlite"),
          pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_template(postgres_server: Any) -> Iterator[str]:
    """A database at the current schema, copied (CREATE DATABASE ... TEMPLATE) for each test."""
    from newsletter.store.pgstore import PostgresStore

    with throwaway_database(postgres_server, "store_template") as name:
        PostgresStore(postgres_server.url(name), env={}).upgrade()
        yield name


@pytest.fixture
def pg_database(postgres_server: Any, pg_template: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh database at the current schema, dropped after the test."""
    with throwaway_database(postgres_server, "s_", request.node.name, template=pg_template) as name:
        yield postgres_server.url(name)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The store under test: SQLite or PostgreSQL, empty, at the current schema."""
    if request.param == "sqlite":
        yield SQLiteStore(tmp_path / "state" / "newsletter.db")
        return
    from newsletter.store.pgstore import PostgresStore

    pg = PostgresStore(request.getfixturevalue("pg_database"), pool_size=3, env={})
    try:
        yield pg
    finally:
        pg.close()


@pytest.fixture
def conn(store: Store) -> Iterator[Any]:
    """One connection of the store, open for the whole test."""
    with store.connection() as connection:
        yield connection


@contextmanager
def second(store: Store) -> Iterator[Any]:
    """Another connection of the same store: it sees only what was committed."""
    with store.connection() as other:
        yield other
        other.rollback()


class Counting:
    """A connection that counts the statements it runs containing `word` (to see that reads come in pages)."""

    def __init__(self, conn: Any, word: str) -> None:
        self.conn, self.word, self.count = conn, word, 0

    def execute(self, sql: str, *args: Any) -> Any:
        self.count += self.word in sql
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def in_threads(work: Callable[[], Any], count: int) -> list[BaseException]:
    """Run `work` on `count` threads at once; what each raised (an empty list when none did)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors

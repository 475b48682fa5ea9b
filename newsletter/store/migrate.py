"""Run the Alembic migrations (newsletter/store/migrations/) on either database: `newsletter db upgrade`, and
SQLite's upgrade on open. The only module that imports Alembic; the start check is newsletter.store.schema.

One process upgrades at a time: the whole upgrade is one transaction that first takes the writer lock
(SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so a second process waits, then finds nothing to do.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from newsletter.errors import LedgerError

from . import schema
from .schema import Upgrade

__all__ = ["Upgrade", "upgrade_sqlite", "upgrade_postgres", "script_revisions", "UPGRADE_LOCK"]

MIGRATIONS = Path(__file__).with_name("migrations")
#: The advisory lock PostgreSQL upgrades take (the same in every process and every version).
UPGRADE_LOCK = 0x6E6C5F7363686D61


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def script_revisions() -> list[str]:
    """The revisions of the migration scripts, oldest first (what schema.REVISIONS must list)."""
    scripts = ScriptDirectory.from_config(_config())
    return [rev.revision for rev in reversed(list(scripts.walk_revisions()))]


def _run(engine: Any, where: str, lock: str) -> Upgrade:
    with engine.connect() as connection:
        connection.exec_driver_sql(lock)  # the transaction starts here, with the writer lock
        before = schema.current_revision(connection.connection.driver_connection)
        schema.check(before, where)  # an unknown (newer) revision is refused, never "upgraded"
        if before != schema.HEAD:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, schema.HEAD)
        connection.commit()
    engine.dispose()
    return Upgrade(where, before, schema.HEAD)


def upgrade_sqlite(path: Path) -> Upgrade:
    """Create or upgrade the SQLite file at `path` (an existing file made before Alembic is adopted in place)."""

    def connect() -> sqlite3.Connection:
        # Autocommit at the driver: the BEGIN IMMEDIATE below is the one transaction, and it holds DDL too.
        return sqlite3.connect(path, isolation_level=None, timeout=30)

    engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)
    try:
        return _run(engine, str(path), "BEGIN IMMEDIATE")
    except DBAPIError as exc:
        raise LedgerError(f"{path}: cannot upgrade the database: {exc.orig}") from exc
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: cannot upgrade the database: {exc}") from exc


def upgrade_postgres(info: str) -> Upgrade:
    """Create or upgrade the PostgreSQL database `info` names (libpq settings, see postgres.conninfo)."""
    import psycopg

    from . import postgres

    where = postgres.where(info)
    engine = create_engine(postgres.jobstore_url(info), poolclass=NullPool)
    try:
        return _run(engine, where, f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK})")
    except DBAPIError as exc:
        raise LedgerError(f"{where}: cannot upgrade the database: {str(exc.orig).strip()}") from exc
    except psycopg.Error as exc:
        raise LedgerError(f"{where}: cannot upgrade the database: {str(exc).strip()}") from exc


def check_scripts() -> None:
    """LedgerError when the scripts and schema.REVISIONS disagree (a revision added without listing it)."""
    found = script_revisions()
    if tuple(found) != schema.REVISIONS:
        raise LedgerError(f"migration scripts {found} do not match newsletter.store.schema.REVISIONS {schema.REVISIONS}")


"""The SQLite database: one connection with sane pragmas and the versioned schema applied."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from newsletter.errors import LedgerError
from newsletter.store import schema
from newsletter.store.dbapi import describe_sqlite_error, ledger_error, log_event, transaction, utc_now
from newsletter.store.events import SCHEMA_V3 as _SCHEMA_BOUNCES
from newsletter.store.tables import LEASE_COLUMNS, SCHEDULE_AND_DESK, render

__all__ = ["SQLiteConnection", "ledger_error", "SCHEMA_VERSION", "connect", "transaction", "utc_now", "log_event"]

#: The last `PRAGMA user_version` before Alembic (whose first revision brings any older file to it); newer
#: changes are Alembic revisions (newsletter/store/migrations/) and leave user_version at 5.
SCHEMA_VERSION = 5

log = logging.getLogger("newsletter.db")

WAL_AUTOCHECKPOINT_PAGES = 128
BUSY_TIMEOUT_SECONDS = 5.0

_SCHEMA_V1 = (
    """
    CREATE TABLE IF NOT EXISTS subscribers (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,  -- lower-cased normalised address
        name TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('subscribed', 'unsubscribed', 'bounced')),
        created_at TEXT,
        updated_at TEXT,
        unsubscribed_at TEXT,
        bounced_at TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS subscribers_status_id ON subscribers (status, id)",
    """
    CREATE TABLE IF NOT EXISTS ledger (
        issue_id TEXT NOT NULL,
        subscriber_id INTEGER NOT NULL REFERENCES subscribers (id),
        status TEXT NOT NULL CHECK (status IN ('claimed', 'sent', 'deferred', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        code INTEGER,
        reason TEXT,
        message_id TEXT,
        claimed_at TEXT,
        updated_at TEXT,
        sent_at TEXT,
        PRIMARY KEY (issue_id, subscriber_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS ledger_issue_status ON ledger (issue_id, status)",
    """
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        at TEXT,
        kind TEXT,
        issue_id TEXT,
        detail TEXT
    )
    """,
)

# v2: the name a greeting uses ("Hello Jane,"), kept apart from the display name ("Doe, Jane").
_SCHEMA_V2 = ("ALTER TABLE subscribers ADD COLUMN first_name TEXT NOT NULL DEFAULT ''",)

# Version 3 (security audit, issue 14): new tables only, so an existing file upgrades in place.
_SCHEMA_V3 = (
    # Confirmation emails sent per recipient (a keyed digest of the address, never the address itself):
    # the per-recipient limit must survive restarts and be shared by every process serving the site.
    """
    CREATE TABLE IF NOT EXISTS confirmation_mail (
        recipient TEXT NOT NULL,
        sent_at REAL NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS confirmation_mail_recipient ON confirmation_mail (recipient, sent_at)",
    # Confirm links already used (a digest of the link), so each works once.
    """
    CREATE TABLE IF NOT EXISTS used_links (
        digest TEXT PRIMARY KEY,
        used_at REAL NOT NULL
    )
    """,
    # Which signing key (a short HMAC, never the key) and token format each issue's links were made with.
    """
    CREATE TABLE IF NOT EXISTS send_keys (
        issue_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        token_format INTEGER NOT NULL,
        first_used TEXT,
        PRIMARY KEY (issue_id, key_id)
    )
    """,
)


# v5: the schedule's and the desk's tables (created on first use before; IF NOT EXISTS adopts them), and the
# ledger's lease columns (added only where missing).
def _schema_v5(conn: sqlite3.Connection) -> None:
    for statement in render(SCHEDULE_AND_DESK, "sqlite"):
        conn.execute(statement)
    have = {row[1] for row in conn.execute("PRAGMA table_info(ledger)")}
    for name, kind in LEASE_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE ledger ADD COLUMN {name} {kind}")


# Index i holds what takes a file from user_version i to i + 1: statements, or a function for a step that
# must look first.
_MIGRATIONS: tuple[Any, ...] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_BOUNCES, _schema_v5)  # v4: delivery_events


class SQLiteConnection(sqlite3.Connection):
    """sqlite3's connection, saying which dialect it speaks and which file it is (for error messages)."""

    dialect = "sqlite"

    @property
    def where(self) -> str:
        row = self.execute("PRAGMA database_list").fetchone()
        return str(row[2]) if row and row[2] else "the database"

    @staticmethod
    def describe_error(exc: BaseException) -> str:
        return describe_sqlite_error(exc)


def prepare(path: Path) -> None:
    """The database's folder, and the file itself created private (0600) when new."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"{path}: cannot create the folder {path.parent}: {exc.strerror or exc}") from exc
    _private_file(path)


def connect(path: Path, *, timeout: float = BUSY_TIMEOUT_SECONDS) -> SQLiteConnection:
    """Open (creating if needed) the database at `path`, with WAL, foreign keys and the schema applied."""
    path = Path(path)
    prepare(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, factory=SQLiteConnection)
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: cannot open the database: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = _switch_to_wal(conn, timeout)
        if mode != "wal":
            raise LedgerError(f"{path}: cannot switch the database to WAL mode (got {mode!r})")
        # NORMAL: a commit survives a crash of the process (kill -9) at once, and a power loss from the
        # next checkpoint on; checkpoints every 128 pages (~300 sent messages) bound what a power loss
        # can cost. FULL would fsync every commit: ~200 us per message, which the ledger pays per result.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute("PRAGMA foreign_keys = ON")
        _apply_schema(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise LedgerError(f"{path}: {describe_sqlite_error(exc)}") from exc
    except LedgerError:
        conn.close()
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """The journal mode after asking for WAL. SQLite answers a mode switch that races another connection's
    (several processes opening a new file at once) with SQLITE_BUSY at once, without its busy handler, so the
    switch is retried here until `timeout`. A file already in WAL mode is only read, which never races."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            return mode
        except sqlite3.OperationalError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


_warned: set[str] = set()


def _private_file(path: Path) -> None:
    """Create the database 0600 (it holds every address and name; SQLite gives its -wal and -shm files the
    same mode), and warn once per file when an existing one is readable or writable by others."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            return  # sqlite3.connect reports the real problem
        if mode & 0o077 and str(path) not in _warned:
            _warned.add(str(path))
            log.warning("%s can be read by other users of this machine (mode %04o) and holds every subscriber's "
                        "address: run `chmod 600 %s`", path, mode, path)
        return
    except OSError:
        return  # a read-only folder, for example: sqlite3.connect reports it with the file name
    os.close(fd)


def _apply_schema(conn: sqlite3.Connection, path: Path) -> None:
    """The start check: at the head revision, go on; older (or a file made before Alembic), upgrade it in place
    (the embedded default needs no extra step); unknown, refuse."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"{path}: schema version {version} was written by a newer newsletter (this one knows {SCHEMA_VERSION})"
        )
    revision = schema.current_revision(conn)
    if revision is not None and version < SCHEMA_VERSION:
        # Alembic's row is there but user_version says older steps are missing (lowered by hand, or by a tool
        # restoring an old copy of the tables): run them again; each is idempotent.
        with transaction(conn):
            legacy_upgrade(conn)
    if schema.check(revision, str(path)):
        return
    if revision is None:
        _baseline(conn)
        if schema.HEAD == BASELINE:
            return
    from newsletter.store.migrate import upgrade_sqlite  # Alembic is imported only for the revisions after it

    upgrade_sqlite(path)


#: The first Alembic revision, which is `legacy_upgrade` and nothing else (migrations/versions/v0001_schema_v5.py).
BASELINE = schema.REVISIONS[0]
#: Alembic's version table as its SQLite dialect creates it.
_VERSION_TABLE = (f"CREATE TABLE {schema.VERSION_TABLE} (\n\tversion_num VARCHAR(32) NOT NULL, \n"
                  f"\tCONSTRAINT {schema.VERSION_TABLE}_pkc PRIMARY KEY (version_num)\n)")


def _baseline(conn: sqlite3.Connection) -> None:
    """A new file (or one made before Alembic) brought to the first revision with plain SQL, as that revision's
    script would: creating the embedded default's database needs no Alembic import (~20 MB of memory and ~0.2 s
    a process). One write transaction; a process that lost the race finds the work done."""
    with transaction(conn):
        if schema.current_revision(conn) is not None:
            return
        legacy_upgrade(conn)
        conn.execute(_VERSION_TABLE)
        conn.execute(f"INSERT INTO {schema.VERSION_TABLE} (version_num) VALUES (?)", (BASELINE,))


def legacy_upgrade(conn: sqlite3.Connection) -> int:
    """Alembic's first revision: a file's tables brought to SCHEMA_VERSION from its `PRAGMA user_version` (0 for
    a new file), in the caller's transaction; returns where it started. Rows are never touched."""
    start = conn.execute("PRAGMA user_version").fetchone()[0]
    if start > SCHEMA_VERSION:
        raise LedgerError(f"schema version {start} was written by a newer newsletter (this one knows {SCHEMA_VERSION})")
    for step in range(start, SCHEMA_VERSION):
        if callable(_MIGRATIONS[step]):
            _MIGRATIONS[step](conn)
            continue
        for statement in _MIGRATIONS[step]:
            conn.execute(statement)
    # Kept at 5 from now on: a newsletter from before Alembic opens the file as the version it knows.
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return int(start)

"""Which schema a database holds, read with plain SQL (no Alembic import): the start check of every process.

The migrations themselves are Alembic revisions in newsletter/store/migrations/ (one set for both databases,
run by `newsletter db upgrade` and newsletter.store.migrate). `REVISIONS` lists them oldest first; a test
checks it against Alembic's own view of the scripts.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from newsletter.errors import LedgerError

__all__ = ["REVISIONS", "HEAD", "VERSION_TABLE", "Upgrade", "current_revision", "check", "newer_message"]

#: Every revision this newsletter knows, oldest first; the last is what it runs on.
REVISIONS = ("0001_schema_v5",)
HEAD = REVISIONS[-1]
VERSION_TABLE = "alembic_version"



@dataclass(frozen=True)
class Upgrade:
    """What an upgrade did: the database, the revision it found (None: none) and the one it left."""

    where: str
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def current_revision(conn: Any) -> str | None:
    """The revision in the database's alembic_version row; None when it has none (empty, or made before
    Alembic). `conn` is a store connection or a raw sqlite3/psycopg one (no placeholders are used)."""
    if isinstance(conn, sqlite3.Connection):
        found = conn.execute(f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{VERSION_TABLE}'")
        exists = found.fetchone() is not None
    else:
        exists = conn.execute(f"SELECT to_regclass('public.{VERSION_TABLE}') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    return str(row[0]) if row else None


def newer_message(where: str, revision: str) -> str:
    return (f"{where}: the database schema is at revision {revision!r}, which this newsletter does not know (it was "
            f"written by a newer newsletter; this one knows up to {HEAD!r}): upgrade newsletter")


def check(revision: str | None, where: str) -> bool:
    """True when `revision` is the head; False when it is older (or none: upgrade it); LedgerError when unknown."""
    if revision == HEAD:
        return True
    if revision is None or revision in REVISIONS:
        return False
    raise LedgerError(newer_message(where, revision))

"""What the web app keeps between requests, in the database so every process serving the site shares it.

`newsletter serve` may run as several processes (`uvicorn --workers`, two hosts behind one proxy):
whatever one of them counts or remembers, the next request may reach another. So the rate limit of
the subscribe form and the desk's unsaved draft previews live here (the desk's sessions and sign-in
attempts live in store/desk.py, confirmation counts and used links in store/safeguards.py).

Portable SQL only (SQLite and PostgreSQL): `?` placeholders, `INSERT ... ON CONFLICT DO UPDATE`;
times are Unix seconds in DOUBLE PRECISION columns (wall clock: every process agrees on it).
"""

from __future__ import annotations

from .dbapi import Connection, transaction

__all__ = ["ensure_schema", "rate_hit", "prune_rate_limits", "save_draft", "draft", "DRAFT_KEEP_SECONDS"]

#: An unsaved draft preview is forgotten this long after it was last written.
DRAFT_KEEP_SECONDS = 24 * 3600.0

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS web_rate_hits (
        scope TEXT NOT NULL,              -- which limit ('subscribe')
        client TEXT NOT NULL,             -- the client's key (an IPv4 address, an IPv6 /64)
        at DOUBLE PRECISION NOT NULL      -- an allowed hit (refused ones are not kept)
    )
    """,
    "CREATE INDEX IF NOT EXISTS web_rate_hits_client ON web_rate_hits (scope, client, at)",
    "CREATE INDEX IF NOT EXISTS web_rate_hits_at ON web_rate_hits (at)",
    """
    CREATE TABLE IF NOT EXISTS web_drafts (
        editor_id BIGINT NOT NULL,
        issue_id TEXT NOT NULL,
        html TEXT NOT NULL,               -- the preview of words not saved yet
        saved_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (editor_id, issue_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS web_drafts_saved ON web_drafts (saved_at)",
)


def ensure_schema(conn: Connection) -> None:
    """Create the web app's tables if missing (committed). Under the writer lock: two processes starting
    together would otherwise race in PostgreSQL's CREATE TABLE IF NOT EXISTS (a duplicate-key error)."""
    with transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)


def rate_hit(conn: Connection, scope: str, client: str, *, limit: int, window: float, now: float) -> float:
    """Count one hit of `client` against `scope`'s limit (committed): 0.0 when allowed, else the seconds
    until the oldest of its hits in the last `window` seconds is that old (a sliding window).

    Allowed hits are recorded by one conditional INSERT under the writer lock, so hits from any number of
    processes are counted together and two of them never both take the last place. A refused hit is
    not recorded and costs one more read.
    """
    with transaction(conn):
        recorded = conn.execute(
            "INSERT INTO web_rate_hits (scope, client, at) SELECT ?, ?, ? WHERE"
            " (SELECT COUNT(*) FROM web_rate_hits WHERE scope = ? AND client = ? AND at > ?) < ?",
            (scope, client, now, scope, client, now - window, limit)).rowcount
        if recorded == 1:
            return 0.0
        oldest = conn.execute("SELECT MIN(at) FROM web_rate_hits WHERE scope = ? AND client = ? AND at > ?",
                              (scope, client, now - window)).fetchone()[0]
    return max(window - (now - float(oldest)), 1.0) if oldest is not None else 1.0


def prune_rate_limits(conn: Connection, scope: str, *, window: float, now: float) -> int:
    """Forget `scope`'s hits older than `window` (never a recent one: a flood of new clients resets nobody's
    limit); committed."""
    with transaction(conn):
        deleted = conn.execute("DELETE FROM web_rate_hits WHERE scope = ? AND at <= ?", (scope, now - window)).rowcount
    return int(deleted or 0)


def save_draft(conn: Connection, editor_id: int, issue_id: str, html: str, now: float) -> None:
    """Keep `editor_id`'s unsaved preview of `issue_id` (replacing the last one); old drafts go. Committed."""
    conn.execute("DELETE FROM web_drafts WHERE saved_at <= ?", (now - DRAFT_KEEP_SECONDS,))
    conn.execute("INSERT INTO web_drafts (editor_id, issue_id, html, saved_at) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (editor_id, issue_id) DO UPDATE SET html = excluded.html, saved_at = excluded.saved_at",
                 (editor_id, issue_id, html, now))
    conn.commit()


def draft(conn: Connection, editor_id: int, issue_id: str, now: float) -> str | None:
    """`editor_id`'s unsaved preview of `issue_id`, if one was saved in the last DRAFT_KEEP_SECONDS."""
    row = conn.execute("SELECT html FROM web_drafts WHERE editor_id = ? AND issue_id = ? AND saved_at > ?",
                       (editor_id, issue_id, now - DRAFT_KEEP_SECONDS)).fetchone()
    return str(row[0]) if row else None

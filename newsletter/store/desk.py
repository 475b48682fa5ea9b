"""Desk storage: editor accounts, desk sessions, sign-in attempts and the audit log (all the desk's SQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from .dbapi import Connection, Row

__all__ = [
    "ROLES", "EditorRow", "SessionRow", "AuditEntry",
    "add_editor", "editor_by_email", "editor_by_id", "editors", "count_editors", "remove_editor", "set_password",
    "create_session", "session", "touch_session", "delete_session", "delete_sessions_of",
    "record_attempt", "failed_attempts",
    "audit", "audit_entries", "last_edit", "bounced", "search_subscribers", "subscriber_pages",
]

ROLES = ("editor", "approver")

# The tables are part of the versioned schema (newsletter.store.tables, schema v5).


@dataclass(frozen=True)
class EditorRow:
    id: int
    email: str
    name: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class SessionRow:
    editor: EditorRow
    created_at: float
    last_seen: float


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    editor_id: int | None
    editor_name: str
    action: str
    issue_id: str | None
    version: str | None
    detail: str


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _editor(row: Row) -> EditorRow:
    return EditorRow(id=row["id"], email=row["email"], name=row["name"], role=row["role"],
                     password_hash=row["password_hash"])


def add_editor(conn: Connection, email: str, email_key: str, name: str, role: str,
               password_hash: str) -> EditorRow | None:
    """The new account, or None when that address already has one."""
    now = _now_iso()
    added = conn.execute(
        "INSERT INTO desk_editors (email, email_key, name, role, password_hash, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        (email, email_key, name, role, password_hash, now, now)).fetchall()
    conn.commit()
    return editor_by_id(conn, int(added[0][0])) if added else None


def editor_by_email(conn: Connection, email_key: str) -> EditorRow | None:
    row = conn.execute("SELECT * FROM desk_editors WHERE email_key = ?", (email_key,)).fetchone()
    return _editor(row) if row else None


def editor_by_id(conn: Connection, editor_id: int) -> EditorRow | None:
    row = conn.execute("SELECT * FROM desk_editors WHERE id = ?", (editor_id,)).fetchone()
    return _editor(row) if row else None


def editors(conn: Connection) -> list[EditorRow]:
    return [_editor(row) for row in conn.execute("SELECT * FROM desk_editors ORDER BY email_key")]


def count_editors(conn: Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM desk_editors").fetchone()[0])


def remove_editor(conn: Connection, email_key: str) -> bool:
    row = editor_by_email(conn, email_key)
    if row is None:
        return False
    conn.execute("DELETE FROM desk_sessions WHERE editor_id = ?", (row.id,))
    conn.execute("DELETE FROM desk_editors WHERE id = ?", (row.id,))
    conn.commit()
    return True


def set_password(conn: Connection, email_key: str, password_hash: str) -> bool:
    """New hash; every open session of that person ends (a changed password locks out a stolen cookie)."""
    row = editor_by_email(conn, email_key)
    if row is None:
        return False
    conn.execute("UPDATE desk_editors SET password_hash = ?, updated_at = ? WHERE id = ?",
                 (password_hash, _now_iso(), row.id))
    conn.execute("DELETE FROM desk_sessions WHERE editor_id = ?", (row.id,))
    conn.commit()
    return True


def create_session(conn: Connection, id_hash: str, editor_id: int, now: float) -> None:
    conn.execute("INSERT INTO desk_sessions (id_hash, editor_id, created_at, last_seen) VALUES (?, ?, ?, ?)",
                 (id_hash, editor_id, now, now))
    conn.commit()


def session(conn: Connection, id_hash: str) -> SessionRow | None:
    row = conn.execute("SELECT s.created_at, s.last_seen, e.* FROM desk_sessions s"
                       " JOIN desk_editors e ON e.id = s.editor_id WHERE s.id_hash = ?", (id_hash,)).fetchone()
    return SessionRow(_editor(row), row["created_at"], row["last_seen"]) if row else None


def touch_session(conn: Connection, id_hash: str, now: float) -> None:
    conn.execute("UPDATE desk_sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))
    conn.commit()


def delete_session(conn: Connection, id_hash: str) -> None:
    conn.execute("DELETE FROM desk_sessions WHERE id_hash = ?", (id_hash,))
    conn.commit()


def delete_sessions_of(conn: Connection, editor_id: int) -> None:
    conn.execute("DELETE FROM desk_sessions WHERE editor_id = ?", (editor_id,))
    conn.commit()


def record_attempt(conn: Connection, email_key: str, address: str, *, ok: bool, now: float,
                   keep_seconds: float) -> None:
    """One sign-in attempt; rows older than `keep_seconds` go, so the table stays small."""
    conn.execute("DELETE FROM desk_signin_attempts WHERE at < ?", (now - keep_seconds,))
    conn.execute("INSERT INTO desk_signin_attempts (at, email_key, address, ok) VALUES (?, ?, ?, ?)",
                 (now, email_key, address, int(ok)))
    conn.commit()


def failed_attempts(conn: Connection, *, email_key: str, address: str, since: float) -> tuple[int, int]:
    """Failed attempts since `since`: (for this account, from this address)."""
    by_email = conn.execute("SELECT COUNT(*) FROM desk_signin_attempts WHERE email_key = ? AND at >= ? AND ok = 0",
                            (email_key, since)).fetchone()[0]
    by_address = conn.execute("SELECT COUNT(*) FROM desk_signin_attempts WHERE address = ? AND at >= ? AND ok = 0",
                              (address, since)).fetchone()[0]
    return int(by_email), int(by_address)


def audit(conn: Connection, editor: EditorRow | None, action: str, *, issue_id: str | None = None,
          version: str | None = None, detail: str = "") -> None:
    conn.execute("INSERT INTO desk_audit (at, editor_id, editor_name, action, issue_id, version, detail)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (_now_iso(), editor.id if editor else None, f"{editor.name} <{editor.email}>" if editor else "the system",
                  action, issue_id, version, detail))
    conn.commit()


def _entry(row: Row) -> AuditEntry:
    return AuditEntry(at=dt.datetime.fromisoformat(row["at"]), editor_id=row["editor_id"],
                      editor_name=row["editor_name"], action=row["action"], issue_id=row["issue_id"],
                      version=row["version"], detail=row["detail"])


def audit_entries(conn: Connection, *, issue_id: str | None = None, limit: int = 50,
                  offset: int = 0) -> list[AuditEntry]:
    if issue_id is None:
        rows = conn.execute("SELECT * FROM desk_audit ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
    else:
        rows = conn.execute("SELECT * FROM desk_audit WHERE issue_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                            (issue_id, limit, offset))
    return [_entry(row) for row in rows]


def last_edit(conn: Connection, issue_id: str) -> AuditEntry | None:
    """The latest compose or edit of an issue made on the desk."""
    row = conn.execute("SELECT * FROM desk_audit WHERE issue_id = ? AND action IN ('compose', 'edit')"
                       " ORDER BY id DESC LIMIT 1", (issue_id,)).fetchone()
    return _entry(row) if row else None


def bounced(conn: Connection, issue_id: str) -> int:
    """Of an issue's failed rows, how many marked the subscriber bounced (no such user)."""
    return int(conn.execute("SELECT COUNT(*) FROM ledger l JOIN subscribers s ON s.id = l.subscriber_id"
                            " WHERE l.issue_id = ? AND l.status = 'failed' AND s.status = 'bounced'",
                            (issue_id,)).fetchone()[0])


def search_subscribers(conn: Connection, text: str, *, status: str | None, limit: int,
                       offset: int) -> tuple[int, list[tuple[str, str, str]]]:
    """(how many match, one page of (email, name, status)) for addresses containing `text`."""
    pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    where = "email_key LIKE ? ESCAPE '\\'" + (" AND status = ?" if status else "")
    args: tuple[object, ...] = (pattern, status) if status else (pattern,)
    total = int(conn.execute(f"SELECT COUNT(*) FROM subscribers WHERE {where}", args).fetchone()[0])
    rows = conn.execute(f"SELECT email, name, status FROM subscribers WHERE {where} ORDER BY email_key"
                        " LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
    return total, [(r["email"], r["name"], r["status"]) for r in rows]


def subscriber_pages(conn: Connection, *, batch: int = 1000) -> Iterator[list[tuple[str, str, str]]]:
    """Every subscriber as (email, name, status), a page at a time (for the CSV export)."""
    last = ""
    while True:
        rows = conn.execute("SELECT email, name, status, email_key FROM subscribers WHERE email_key > ?"
                            " ORDER BY email_key LIMIT ?", (last, batch)).fetchall()
        if not rows:
            return
        last = rows[-1]["email_key"]
        yield [(r["email"], r["name"], r["status"]) for r in rows]

"""Database-backed safeguards: per-recipient confirmation limits, single-use links, and signing-key ids per issue.

These live in the database, not in memory, so they survive restarts and hold across several
processes serving the same site. They never store an address in clear: a confirmation limit keys
on an HMAC of the address, a used link on a hash of the link.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from .dbapi import Connection, transaction, utc_now

__all__ = [
    "CONFIRMATION_LIMIT",
    "TOKEN_FORMAT",
    "allow_confirmation",
    "use_link",
    "record_send_key",
    "issues_sent_under_other_keys",
]

#: At most this many confirmation emails per recipient address per this many seconds.
CONFIRMATION_LIMIT = (3, 24 * 3600.0)
#: The link-token format new sends use (2: keyed address digests; 1: the unkeyed digests of before).
TOKEN_FORMAT = 2


def _recipient_key(secret: str, address: str) -> str:
    # Keyed, so a copy of the database does not list the people who asked (or were asked) to subscribe.
    return hmac.new(secret.encode("utf-8"), b"newsletter.confirmation\0" + address.lower().encode("utf-8"),
                    hashlib.sha256).hexdigest()[:32]


def allow_confirmation(conn: Connection, secret: str, address: str, *,
                       limit: tuple[int, float] = CONFIRMATION_LIMIT, now: float | None = None) -> bool:
    """Record one confirmation email to `address` and return True, or False when the limit is reached.

    One write transaction (the writer lock first): two processes cannot both take the last slot.
    """
    count, window = limit
    now = time.time() if now is None else now
    key = _recipient_key(secret, address)
    with transaction(conn):
        # Only entries older than the window are forgotten, never recent ones.
        conn.execute("DELETE FROM confirmation_mail WHERE sent_at <= ?", (now - window,))
        recent = conn.execute("SELECT COUNT(*) FROM confirmation_mail WHERE recipient = ? AND sent_at > ?",
                              (key, now - window)).fetchone()[0]
        if recent >= count:
            return False
        conn.execute("INSERT INTO confirmation_mail (recipient, sent_at) VALUES (?, ?)", (key, now))
        return True


def use_link(conn: Connection, token: str, *, keep_for: float, now: float | None = None) -> bool:
    """Mark a one-time link used: True the first time, False ever after (within `keep_for` seconds,
    after which the link has expired anyway). Joins the caller's transaction when there is one."""
    now = time.time() if now is None else now
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    with transaction(conn):
        conn.execute("DELETE FROM used_links WHERE used_at <= ?", (now - keep_for,))
        cursor = conn.execute("INSERT INTO used_links (digest, used_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                              (digest, now))
        return cursor.rowcount == 1


def record_send_key(conn: Connection, issue_id: str, key_id: str, *, token_format: int = TOKEN_FORMAT) -> None:
    """Note that `issue_id`'s links are signed with the key named `key_id` (see tokens.key_id); committed."""
    with transaction(conn):
        conn.execute("INSERT INTO send_keys (issue_id, key_id, token_format, first_used) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT DO NOTHING", (issue_id, key_id, token_format, utc_now()))


def issues_sent_under_other_keys(conn: Connection, key_id: str) -> list[str]:
    """Issues with sent messages whose links were signed with a key other than `key_id`."""
    rows = conn.execute(
        "SELECT DISTINCT k.issue_id FROM send_keys k WHERE k.key_id != ?"
        " AND EXISTS (SELECT 1 FROM ledger l WHERE l.issue_id = k.issue_id AND l.status = 'sent')"
        " ORDER BY k.issue_id", (key_id,))
    return [row[0] for row in rows]

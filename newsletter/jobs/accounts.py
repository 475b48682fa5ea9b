"""Editor accounts for the desk: argon2-hashed passwords, roles, and the database handle the desk uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from newsletter.errors import NewsletterError, SubscriberError
from newsletter.settings import Settings
from newsletter.store import Connection
from newsletter.store import desk as desk_store
from newsletter.store import open_store
from newsletter.store.desk import ROLES, EditorRow
from newsletter.store.subscribers import clean_name, email_key, normalise_address

__all__ = ["AccountError", "ROLES", "EditorRow", "MIN_PASSWORD", "desk_db", "add", "remove", "change_password",
           "list_editors", "verify", "hash_password", "DUMMY_HASH"]

MIN_PASSWORD = 12
_HASHER = PasswordHasher()
#: Verified against when the address has no account, so a wrong email takes as long as a wrong password.
DUMMY_HASH = _HASHER.hash("not a password anyone has")


class AccountError(NewsletterError):
    """An account command was refused; the message says why (never echoes a password)."""


@contextmanager
def desk_db(settings: Settings) -> Iterator[Connection]:
    """A connection to the project's database with the desk's tables in place."""
    with open_store(settings).connection() as conn:
        yield conn


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: use at least {MIN_PASSWORD} characters "
                           "(a few unrelated words work well)")
    if len(password) > 1024:
        raise AccountError("the password is too long (at most 1024 characters)")
    return _HASHER.hash(password)


def _address(raw: str) -> str:
    try:
        return normalise_address(raw)
    except SubscriberError as exc:
        raise AccountError(str(exc)) from None


def add(settings: Settings, email: str, *, name: str, role: str, password: str) -> EditorRow:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    address = _address(email)
    clean = clean_name(name)
    if not clean:
        raise AccountError("give the person's name with --name (it is shown in the audit log)")
    hashed = hash_password(password)
    with desk_db(settings) as conn:
        row = desk_store.add_editor(conn, address, email_key(address), clean, role, hashed)
        if row is None:
            raise AccountError(f"{address} already has an account (change its password with `editors passwd`)")
        desk_store.audit(conn, None, "account.add", detail=f"{clean} <{address}> as {role}")
    return row


def remove(settings: Settings, email: str) -> None:
    address = _address(email)
    with desk_db(settings) as conn:
        if not desk_store.remove_editor(conn, email_key(address)):
            raise AccountError(f"{address} has no account (see `newsletter editors list`)")
        desk_store.audit(conn, None, "account.remove", detail=address)


def change_password(settings: Settings, email: str, password: str) -> None:
    address = _address(email)
    hashed = hash_password(password)
    with desk_db(settings) as conn:
        if not desk_store.set_password(conn, email_key(address), hashed):
            raise AccountError(f"{address} has no account (see `newsletter editors list`)")
        desk_store.audit(conn, None, "account.passwd", detail=address)


def list_editors(settings: Settings) -> list[EditorRow]:
    with desk_db(settings) as conn:
        return desk_store.editors(conn)


def verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False

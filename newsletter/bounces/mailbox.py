"""Bounce mailboxes: `maildir:PATH` and `imaps://USER@HOST[:PORT]/FOLDER` -> messages; processed mail is moved.

Mail is never deleted: a processed message moves to a folder of its own (Maildir++ `.name` folders, or
IMAP MOVE, or COPY + expunge of that one message where the server has no MOVE). A message over
`max_bytes` is not downloaded at all.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.errors import NewsletterError

__all__ = ["MailItem", "Mailbox", "MaildirMailbox", "ImapMailbox", "BounceMailboxError", "open_mailbox",
           "MAX_MESSAGE_BYTES", "mask_mailbox"]

#: Bounces quote at most the original message (ours are ~100 KB); anything this big is something else.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class BounceMailboxError(NewsletterError):
    """The bounce mailbox cannot be opened or read (bad URL, refused login, missing folder)."""


@dataclass(frozen=True)
class MailItem:
    key: str  # file name or "UID 42"
    size: int
    data: bytes | None  # None when larger than max_bytes


class Mailbox(Protocol):
    def messages(self) -> Iterator[MailItem]: ...

    def move(self, key: str, folder: str) -> None: ...

    def close(self) -> None: ...


class MaildirMailbox:
    """A Maildir's new/ and cur/ messages; folders are Maildir++ subfolders (`PATH/.name/`)."""

    def __init__(self, path: Path, *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise BounceMailboxError(f"maildir:{path}: not a Maildir (no cur/ and new/ folders)")
        self.path, self.max_bytes = path, max_bytes
        self._where: dict[str, Path] = {}

    def messages(self) -> Iterator[MailItem]:
        for sub in ("new", "cur"):
            for entry in sorted((self.path / sub).iterdir()):
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                self._where[entry.name] = entry
                size = entry.stat().st_size
                data = entry.read_bytes() if size <= self.max_bytes else None
                yield MailItem(entry.name, size, data)

    def move(self, key: str, folder: str) -> None:
        source = self._where.pop(key)
        target = self.path / f".{folder}"
        for sub in ("tmp", "new", "cur"):
            (target / sub).mkdir(parents=True, exist_ok=True)
        (target / "maildirfolder").touch()
        name = key if ":2," in key else f"{key}:2,S"
        # rename within one file system: atomic, and the message exists in exactly one place throughout
        os.rename(source, target / "cur" / name)

    def close(self) -> None:
        return None


class ImapMailbox:
    """An IMAP folder over TLS (certificates verified; `?cafile=` trusts a private CA)."""

    def __init__(self, url: str, password: str | None, *, max_bytes: int = MAX_MESSAGE_BYTES,
                 timeout: float = 30.0) -> None:
        import imapclient
        from imapclient.exceptions import IMAPClientError, LoginError

        parts = urlsplit(url)
        self.label = mask_mailbox(url)
        if parts.scheme != "imaps" or not parts.hostname or not parts.username:
            raise BounceMailboxError(f"{self.label}: use imaps://USER@HOST[:PORT]/FOLDER")
        if parts.password:
            raise BounceMailboxError(f"{self.label}: put the password in NEWSLETTER_BOUNCE_PASSWORD, not in the URL")
        if not password:
            raise BounceMailboxError(f"{self.label}: NEWSLETTER_BOUNCE_PASSWORD is not set")
        query = parse_qs(parts.query)
        context = ssl.create_default_context(cafile=query["cafile"][0] if "cafile" in query else None)
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.max_bytes = max_bytes
        try:
            self.client = imapclient.IMAPClient(parts.hostname, port=parts.port or 993, ssl=True,
                                                ssl_context=context, timeout=timeout)
        except (OSError, IMAPClientError) as exc:
            raise BounceMailboxError(f"{self.label}: cannot connect: {exc}") from None
        try:
            self.client.login(unquote(parts.username), password)
            self.client.select_folder(self.folder)
        except LoginError as exc:
            self.client.shutdown()
            raise BounceMailboxError(f"{self.label}: the server refused the login ({_text(exc)})") from None
        except IMAPClientError as exc:
            self.close()
            raise BounceMailboxError(f"{self.label}: cannot open folder {self.folder!r} ({_text(exc)})") from None
        self._made: set[str] = set()

    def messages(self) -> Iterator[MailItem]:
        uids = self.client.search(["NOT", "DELETED"])
        sizes = self.client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        for uid in uids:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            data = None
            if size <= self.max_bytes:
                fetched = self.client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {})
                data = fetched.get(b"BODY[]")
                if data is None:  # deleted by someone else meanwhile
                    continue
            yield MailItem(f"UID {uid}", size, data)

    def move(self, key: str, folder: str) -> None:
        uid = int(key.removeprefix("UID "))
        if folder not in self._made:
            if not self.client.folder_exists(folder):
                self.client.create_folder(folder)
            self._made.add(folder)
        if self.client.has_capability("MOVE"):
            self.client.move([uid], folder)
            return
        self.client.copy([uid], folder)  # a copy first, so the message is never only in memory
        self.client.add_flags([uid], [b"\\Deleted"])
        self.client.uid_expunge([uid]) if self.client.has_capability("UIDPLUS") else self.client.expunge()

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # the connection may already be gone; closing must not hide the real error
            self.client.shutdown()


def _text(exc: Exception) -> str:
    text = str(exc)
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def mask_mailbox(url: str) -> str:
    """The URL as it may be printed (no password, even a wrongly given one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


def open_mailbox(url: str, *, root: Path, password: str | None, max_bytes: int = MAX_MESSAGE_BYTES) -> Mailbox:
    """`maildir:PATH` (relative to the project root) or `imaps://...`."""
    if url.startswith("maildir:"):
        path = Path(url.partition(":")[2]).expanduser()
        return MaildirMailbox(path if path.is_absolute() else root / path, max_bytes=max_bytes)
    if url.startswith("imaps://"):
        return ImapMailbox(url, password, max_bytes=max_bytes)
    raise BounceMailboxError(f"bounce_mailbox {mask_mailbox(url)!r}: use maildir:PATH or imaps://USER@HOST/FOLDER")

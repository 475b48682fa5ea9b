"""A Maildir transport: each message written atomically into PATH/new, readable with mailbox.Maildir."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from newsletter.errors import ConfigError, StopRun
from newsletter.models import Message
from newsletter.transports import TransportBase, register

__all__ = ["MaildirTransport", "maildir_path"]

_COUNTER = itertools.count()
_COUNTER_LOCK = threading.Lock()


def maildir_path(url: str) -> Path:
    """The folder named by `maildir:PATH` or `maildir:///abs/path` (~ expanded)."""
    if url.startswith("maildir://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{url!r}: use maildir:relative/path or maildir:///absolute/path", key="transport")
        raw = unquote(parts.path)
    else:
        raw = url.partition(":")[2]
    if not raw.strip():
        raise ConfigError(f"{url!r}: no Maildir folder given (maildir:PATH)", key="transport")
    return Path(raw).expanduser()


def _storage_error(path: Path, exc: OSError) -> StopRun:
    # Disk full, read-only or permission problems hit every message alike: stop the run.
    return StopRun(f"cannot write to Maildir {path}: {exc.strerror or exc}")


class MaildirTransport(TransportBase):
    """Delivers into a Maildir (tmp -> fsync -> rename into new); storage errors stop the run."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        host = socket.gethostname() or "localhost"
        self._host = host.replace("/", r"\057").replace(":", r"\072")
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _storage_error(self.path, exc) from exc

    def _unique_name(self) -> str:
        with _COUNTER_LOCK:
            n = next(_COUNTER)
        now = time.time_ns()
        return f"{now // 1_000_000_000}.M{(now // 1000) % 1_000_000}P{os.getpid()}Q{n}.{self._host}"

    def send(self, message: Message) -> None:
        # Maildir files use LF line endings, as mailbox.Maildir writes them.
        data = message.data.replace(b"\r\n", b"\n")
        name = self._unique_name()
        tmp, new = self.path / "tmp" / name, self.path / "new" / name
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, new)
            if self.fsync:
                self._fsync_dir(self.path / "new")
        except OSError as exc:
            self._discard(tmp)
            raise _storage_error(self.path, exc) from exc

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _discard(tmp: Path) -> None:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            # Nothing more to do about a half-written file in tmp/; Maildir readers ignore tmp/.
            return

    def close(self) -> None:
        return None


@register("maildir", demo_subscribers=True)
def _open(url: str, *, fsync: bool = True, **_ignored: Any) -> MaildirTransport:
    # Options meant for network transports (password, timeout, ...) do not apply here.
    return MaildirTransport(maildir_path(url), fsync=fsync)

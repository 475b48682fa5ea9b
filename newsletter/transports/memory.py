"""An in-memory transport: messages kept in a list, for tests of the stages above."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from newsletter.models import Message
from newsletter.transports import TransportBase, register

__all__ = ["MemoryTransport", "outbox"]

_OUTBOXES: dict[str, list[Message]] = {}
_LOCK = threading.Lock()


def outbox(name: str = "") -> list[Message]:
    """The shared list behind `memory://NAME` (`memory://` is the unnamed one)."""
    with _LOCK:
        return _OUTBOXES.setdefault(name, [])


class MemoryTransport(TransportBase):
    """Appends each message to `messages`; `fail(message)` may raise a delivery error to simulate a server."""

    def __init__(
        self,
        messages: list[Message] | None = None,
        *,
        fail: Callable[[Message], None] | None = None,
    ) -> None:
        self.messages: list[Message] = [] if messages is None else messages
        self.fail = fail
        self.closed = False

    def send(self, message: Message) -> None:
        if self.fail is not None:
            self.fail(message)
        with _LOCK:
            self.messages.append(message)

    def close(self) -> None:
        self.closed = True


@register("memory", demo_subscribers=True)
def _open(url: str, *, fail: Callable[[Message], None] | None = None, **_ignored: Any) -> MemoryTransport:
    # Options meant for network transports (password, timeout, ...) do not apply here.
    return MemoryTransport(outbox(urlsplit(url).netloc), fail=fail)

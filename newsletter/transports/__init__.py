"""Transports deliver a Message; one is chosen by URL scheme (smtp://, smtps://, maildir:, memory://)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from newsletter.errors import ConfigError
from newsletter.models import Message

__all__ = ["Transport", "TransportFactory", "register", "open_transport", "schemes", "mask_url", "SECRET_PARAMETERS"]


@runtime_checkable
class Transport(Protocol):
    """Delivers one message at a time; raises Transient/PermanentDeliveryError or ConnectionRefusedForAll."""

    def send(self, message: Message) -> None: ...

    def close(self) -> None: ...


TransportFactory = Callable[..., Transport]

_REGISTRY: dict[str, TransportFactory] = {}
#: Query parameters that hold credentials; everything after one is masked (a value may hold `&`, `#` or `@`).
SECRET_PARAMETERS = ("password", "passwd", "pass", "pwd", "secret", "token", "apikey", "api_key", "key", "auth")
_SECRET_PARAM = re.compile(r"[?&;](?:" + "|".join(SECRET_PARAMETERS) + r")=", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with every credential replaced by *** (`user:pass@` -> `user:***@`, `?password=...` -> `?password=***`).

    A credential in the query is masked to the end of the URL first, so an `@` inside it cannot be
    taken for the end of the user information. Then everything between `//` and the LAST `@` is user
    information, so a password holding `@`, `/` or `#` is masked whole; only the part before the first
    `:` (the user name) is kept.
    """
    secret = _SECRET_PARAM.search(url)
    if secret:
        url = url[: secret.end()] + "***"
    scheme, sep, rest = url.partition("//")
    if sep and "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user = userinfo.split(":", 1)[0]
        url = f"{scheme}//{user}:***@{hostpart}" if ":" in userinfo else f"{scheme}//{userinfo}@{hostpart}"
    return url


def register(scheme: str) -> Callable[[TransportFactory], TransportFactory]:
    """Decorator: `factory(url, **options) -> Transport` handles URLs of this scheme."""

    def decorate(factory: TransportFactory) -> TransportFactory:
        _REGISTRY[scheme.lower()] = factory
        return factory

    return decorate


def schemes() -> tuple[str, ...]:
    """The registered URL schemes, sorted."""
    return tuple(sorted(_REGISTRY))


def open_transport(url: str, **options: Any) -> Transport:
    """A transport for `url`; ConfigError (with any password masked) if the scheme or URL is wrong."""
    scheme, colon, _ = url.partition(":")
    factory = _REGISTRY.get(scheme.lower()) if colon else None
    if factory is None:
        raise ConfigError(
            f"unknown transport URL {mask_url(url)!r} (expected one of: {', '.join(s + ':' for s in schemes())})",
            key="transport",
        )
    return factory(url, **options)


# The built-in transports register themselves on import.
from newsletter.transports import maildir, memory, smtp  # noqa: E402,F401

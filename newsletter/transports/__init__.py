"""Transports deliver a Message; one is chosen by URL scheme (smtp://, smtps://, maildir:, memory://)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from newsletter.errors import ConfigError
from newsletter.masking import mask_url

if TYPE_CHECKING:
    from newsletter.settings import Settings
from newsletter.models import Message

__all__ = ["Transport", "TransportBase", "TransportFactory", "register", "open_transport", "schemes", "mask_url",
           "allows_demo_subscribers", "transport_url", "transport_factory"]


@runtime_checkable
class Transport(Protocol):
    """Delivers one message at a time; a context manager that closes itself.

    Failures are typed by what the send loop must do: TransientDeliveryError (retry later),
    PermanentDeliveryError (this recipient failed), RecipientBounced (no such address), StopRun (stop).
    """

    def send(self, message: Message) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Transport: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class TransportBase:
    """What every transport shares: `with open_transport(url) as t:` closes it however the block ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


TransportFactory = Callable[..., Transport]

_REGISTRY: dict[str, TransportFactory] = {}
_DEMO_SCHEMES: set[str] = set()


def register(scheme: str, *, demo_subscribers: bool = False) -> Callable[[TransportFactory], TransportFactory]:
    """Decorator: `factory(url, **options) -> Transport` handles URLs of this scheme.

    `demo_subscribers`: the transport delivers nowhere real (a local folder, memory), so the demo's
    sample subscribers may be imported for it.
    """

    def decorate(factory: TransportFactory) -> TransportFactory:
        _REGISTRY[scheme.lower()] = factory
        if demo_subscribers:
            _DEMO_SCHEMES.add(scheme.lower())
        return factory

    return decorate


def schemes() -> tuple[str, ...]:
    """The registered URL schemes, sorted."""
    return tuple(sorted(_REGISTRY))


def allows_demo_subscribers(url: str) -> bool:
    """May the demo's sample subscribers be imported for this transport (as its registration declares)?"""
    return url.partition(":")[0].lower() in _DEMO_SCHEMES


def open_transport(url: str, *, secrets: Mapping[str, str] | None = None, **options: Any) -> Transport:
    """A transport for `url`; ConfigError (with any password masked) if the scheme or URL is wrong.

    `secrets` (from the environment, e.g. {"password": ...}) reach the transport as keyword options.
    """
    scheme, colon, _ = url.partition(":")
    factory = _REGISTRY.get(scheme.lower()) if colon else None
    if factory is None:
        raise ConfigError(
            f"unknown transport URL {mask_url(url)!r} (expected one of: {', '.join(s + ':' for s in schemes())})",
            key="transport",
        )
    return factory(url, **{**options, **(secrets or {})})


def transport_url(settings: Settings) -> str:
    """The configured transport, with a relative Maildir path resolved against the project root."""
    url = settings.transport
    if url.startswith("maildir:") and not url.startswith("maildir://"):
        path = Path(url.partition(":")[2]).expanduser()
        if not path.is_absolute():
            return f"maildir:{settings.root / path}"
    return url


def transport_factory(settings: Settings) -> Callable[[], Transport]:
    """Opens the configured transport, secrets from the environment passed the one generic way."""
    url = transport_url(settings)
    return lambda: open_transport(url, secrets=settings.transport_secrets)


# The built-in transports register themselves on import.
from newsletter.transports import maildir, memory, smtp  # noqa: E402,F401

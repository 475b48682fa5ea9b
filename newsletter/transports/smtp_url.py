"""An smtp:// or smtps:// URL -> the SMTP transport's options, with errors that never show a password."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from newsletter.errors import ConfigError
from newsletter.masking import mask_url

__all__ = ["parse_smtp_url", "PASSWORD_ENV"]

PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"


def parse_smtp_url(url: str) -> dict[str, object]:
    """Keyword arguments for SMTPTransport from an smtp:// or smtps:// URL (ConfigError if malformed)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    shown = mask_url(url)
    if parts.password is not None:
        raise ConfigError(f"{shown}: put the SMTP password in {PASSWORD_ENV}, not in the URL", key="transport")
    if not parts.hostname:
        raise ConfigError(f"{shown}: no host (expected {scheme}://[user@]host:port)", key="transport")
    try:
        port = parts.port or (465 if scheme == "smtps" else 587)
    except ValueError:
        raise ConfigError(f"{shown}: the port must be a number from 1 to 65535", key="transport") from None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    allowed = {"cafile", "timeout"} | ({"starttls"} if scheme == "smtp" else set())
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ConfigError(f"{shown}: unknown option(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})",
                          key="transport")
    tls: TLSMode = "implicit" if scheme == "smtps" else "starttls"
    starttls = query.get("starttls", "required").lower()
    if starttls not in ("required", "off"):
        raise ConfigError(f"{shown}: starttls must be 'required' or 'off', not {starttls!r}", key="transport")
    if starttls == "off":
        tls = "off"
    kwargs: dict[str, object] = {"host": parts.hostname, "port": port, "tls": tls}
    if parts.username:
        kwargs["user"] = unquote(parts.username)
    if query.get("cafile"):
        kwargs["cafile"] = query["cafile"]
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError as exc:
            raise ConfigError(f"{shown}: timeout must be a number of seconds", key="transport") from exc
        if not timeout > 0:
            raise ConfigError(f"{shown}: timeout must be positive", key="transport")
        kwargs["timeout"] = timeout
    return kwargs

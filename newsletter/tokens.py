"""Signed, compact link tokens (unsubscribe, resubscribe, confirm) naming one subscriber."""

from __future__ import annotations

import os
from collections.abc import Mapping

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.errors import ConfigError, TokenError

__all__ = ["PURPOSES", "SECRET_ENV", "secret_from_env", "make_token", "read_token"]

PURPOSES = ("unsubscribe", "resubscribe", "confirm")
SECRET_ENV = "NEWSLETTER_SECRET"
_MAX_TOKEN_LENGTH = 1024  # real tokens are ~100 characters; anything far longer is not ours


def secret_from_env(env: Mapping[str, str] = os.environ, *, fallback: str | None = None) -> str:
    """NEWSLETTER_SECRET from `env`; `fallback` (the embedded demo's secret) if unset; else ConfigError."""
    secret = env.get(SECRET_ENV, "").strip()
    if secret:
        return secret
    if fallback:
        return fallback
    raise ConfigError(
        "not set; links in emails are signed with it. Generate one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and export it",
        key=SECRET_ENV,
    )


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r} (expected one of {', '.join(PURPOSES)})")
    if not secret:
        raise ConfigError("empty signing secret", key=SECRET_ENV)
    # The salt keeps an unsubscribe token from being replayed as a confirm token.
    return URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose}")


def make_token(secret: str, purpose: str, subscriber_id: int, email: str) -> str:
    """A URL-safe token for `purpose` naming the subscriber (id + lower-cased address)."""
    return str(_serializer(secret, purpose).dumps({"s": int(subscriber_id), "e": email.strip().lower()}))


def read_token(secret: str, purpose: str, token: str, *, max_age: int | None = None) -> tuple[int, str]:
    """(subscriber_id, email_key) from a token; TokenError if forged, for another purpose, expired or garbled."""
    serializer = _serializer(secret, purpose)
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        raise TokenError("this link is not valid", reason="malformed")
    try:
        payload = serializer.loads(token.strip(), max_age=max_age)
    except SignatureExpired as exc:
        raise TokenError("this link has expired", reason="expired") from exc
    except BadSignature as exc:
        raise TokenError("this link is not valid", reason="invalid") from exc
    if not isinstance(payload, dict):
        raise TokenError("this link is not valid", reason="malformed")
    subscriber_id, key = payload.get("s"), payload.get("e")
    if type(subscriber_id) is not int or not isinstance(key, str) or "@" not in key:
        raise TokenError("this link is not valid", reason="malformed")
    return subscriber_id, key

"""Signed, compact link tokens (unsubscribe, resubscribe, confirm) naming one subscriber."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from collections.abc import Mapping

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner

from newsletter.errors import ConfigError, TokenError

__all__ = ["PURPOSES", "SECRET_ENV", "secret_from_env", "make_token", "read_token", "email_digest"]

PURPOSES = ("unsubscribe", "resubscribe", "confirm")
SECRET_ENV = "NEWSLETTER_SECRET"
_MAX_TOKEN_LENGTH = 1024  # real tokens are ~45 characters; anything far longer is not ours


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


#: Purposes whose tokens carry a timestamp and can expire; unsubscribe links must keep working for good
#: (RFC 8058), and without a timestamp the same subscriber always gets the same token.
TIMED = frozenset({"confirm", "resubscribe"})


@lru_cache(maxsize=32)
def _signer(secret: str, purpose: str) -> Signer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r} (expected one of {', '.join(PURPOSES)})")
    if not secret:
        raise ConfigError("empty signing secret", key=SECRET_ENV)
    # The salt keeps an unsubscribe token from being replayed as a confirm token.
    kind = TimestampSigner if purpose in TIMED else Signer
    return kind(secret, salt=f"newsletter.{purpose}")


def email_digest(email: str) -> str:
    """A short digest binding a token to the address it was made for, without putting the address in URLs."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:10]


def make_token(secret: str, purpose: str, subscriber_id: int, email: str) -> str:
    """`<id>.<digest>[.<time>].<signature>`: names the subscriber and binds the address, never shows it."""
    return _signer(secret, purpose).sign(f"{int(subscriber_id)}.{email_digest(email)}").decode("ascii")


def read_token(secret: str, purpose: str, token: str, *, max_age: int | None = None) -> tuple[int, str]:
    """(subscriber_id, email_digest) from a token; TokenError if forged, for another purpose, expired or garbled.

    Callers compare the digest with `email_digest(subscriber.email)`, so a token stops working if the
    row's address changes.
    """
    signer = _signer(secret, purpose)
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
        raise TokenError("this link is not valid", reason="malformed")
    if max_age is not None and purpose not in TIMED:
        raise ValueError(f"{purpose} tokens do not expire")
    try:
        raw = signer.unsign(token.strip(), max_age=max_age) if isinstance(signer, TimestampSigner) \
            else signer.unsign(token.strip())
        value = raw.decode("ascii")
    except SignatureExpired as exc:
        raise TokenError("this link has expired", reason="expired") from exc
    except BadSignature as exc:
        raise TokenError("this link is not valid", reason="invalid") from exc
    subscriber_id, _, digest = value.partition(".")
    if not subscriber_id.isdigit() or len(digest) != 10:
        raise TokenError("this link is not valid", reason="malformed")
    return int(subscriber_id), digest

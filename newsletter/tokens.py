"""Signed, compact link tokens (unsubscribe, resubscribe, confirm) naming one subscriber."""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache
from collections.abc import Mapping

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner

from newsletter.errors import ConfigError, TokenError

__all__ = ["PURPOSES", "SECRET_ENV", "MIN_SECRET_LENGTH", "HOW_TO_MAKE_A_SECRET", "check_secret", "key_id",
           "secret_from_env", "make_token", "read_token", "email_digest", "keyed_email_digest", "digest_matches"]

PURPOSES = ("unsubscribe", "resubscribe", "confirm")
SECRET_ENV = "NEWSLETTER_SECRET"
_MAX_TOKEN_LENGTH = 1024  # real tokens are ~45 characters; anything far longer is not ours
MIN_SECRET_LENGTH = 32
HOW_TO_MAKE_A_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
_KEYED_DIGEST_LENGTH = 16  # hex characters; today's unkeyed digests have 10, so the two never collide


def _classes(secret: str) -> int:
    return sum((any(c.islower() for c in secret), any(c.isupper() for c in secret),
                any(c.isdigit() for c in secret), any(not c.isalnum() for c in secret)))


def check_secret(secret: str, *, source: str = SECRET_ENV) -> str:
    """The secret if it can sign links (>= 32 characters, at least two character classes, not a
    repeated pattern); ConfigError naming `source` otherwise, never showing the secret."""
    if len(secret) < MIN_SECRET_LENGTH or _classes(secret) < 2 or len(set(secret)) < 8:
        raise ConfigError(
            f"is too weak to sign links: use at least {MIN_SECRET_LENGTH} random characters "
            f"(for example the output of `{HOW_TO_MAKE_A_SECRET}`)",
            key=source,
        )
    return secret


def key_id(secret: str) -> str:
    """A short, public name for a signing key (an HMAC of a fixed text): tells keys apart, reveals nothing."""
    return hmac.new(secret.encode("utf-8"), b"newsletter key id", hashlib.sha256).hexdigest()[:12]


def secret_from_env(env: Mapping[str, str] = os.environ, *, fallback: str | None = None) -> str:
    """NEWSLETTER_SECRET from `env` (checked by check_secret); `fallback` (the embedded demo's secret)
    if unset; else ConfigError."""
    secret = env.get(SECRET_ENV, "").strip()
    if secret:
        return check_secret(secret)
    if fallback:
        return fallback
    raise ConfigError(
        f"not set; links in emails are signed with it. Generate one with `{HOW_TO_MAKE_A_SECRET}` and export it",
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
    """The digest of the first token format: unkeyed, so a token holder could test a guessed address.
    Only read now (links already in inboxes); new tokens carry keyed_email_digest."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:10]


def keyed_email_digest(secret: str, email: str) -> str:
    """A digest binding a token to its address that only the holder of the secret can compute."""
    mac = hmac.new(secret.encode("utf-8"), b"newsletter.address\0" + email.strip().lower().encode("utf-8"),
                   hashlib.sha256)
    return mac.hexdigest()[:_KEYED_DIGEST_LENGTH]


def digest_matches(secret: str, digest: str, email: str) -> bool:
    """Does a token's digest name `email`? Keyed digests, and the unkeyed ones of links already sent."""
    expected = keyed_email_digest(secret, email) if len(digest) == _KEYED_DIGEST_LENGTH else email_digest(email)
    return hmac.compare_digest(digest, expected)


def make_token(secret: str, purpose: str, subscriber_id: int, email: str) -> str:
    """`<id>.<digest>[.<time>].<signature>`: names the subscriber and binds the address, never shows it."""
    digest = keyed_email_digest(secret, email)
    return _signer(secret, purpose).sign(f"{int(subscriber_id)}.{digest}").decode("ascii")


def read_token(secret: str, purpose: str, token: str, *, max_age: int | None = None) -> tuple[int, str]:
    """(subscriber_id, email_digest) from a token; TokenError if forged, for another purpose, expired or garbled.

    Callers check the digest with `digest_matches(secret, digest, subscriber.email)`, so a token stops
    working if the row's address changes.
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
    if not subscriber_id.isdigit() or len(digest) not in (10, _KEYED_DIGEST_LENGTH):
        raise TokenError("this link is not valid", reason="malformed")
    return int(subscriber_id), digest

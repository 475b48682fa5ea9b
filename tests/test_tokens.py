"""Signed link tokens: round trip, purpose separation, tampering, expiry, compactness, secret handling."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import ConfigError, TokenError
from newsletter.tokens import keyed_email_digest, make_token, read_token, secret_from_env

SECRET = "test-secret-0123456789abcdef-0123"


def test_round_trip() -> None:
    token = make_token(SECRET, "unsubscribe", 42, "Jane@Example.com")
    assert read_token(SECRET, "unsubscribe", token) == (42, keyed_email_digest(SECRET, "jane@example.com"))
    assert "jane" not in token.lower() and "example" not in token.lower()


def test_tokens_are_compact_and_url_safe() -> None:
    token = make_token(SECRET, "unsubscribe", 123456, "someone.with.a.long.name@university.example.ac.uk")
    assert len(token) < 60
    assert len(make_token(SECRET, "unsubscribe", 42, "jane@example.com")) < 50
    assert all(c.isalnum() or c in "-_." for c in token)


def test_purposes_do_not_mix() -> None:
    token = make_token(SECRET, "unsubscribe", 1, "a@example.com")
    with pytest.raises(TokenError) as info:
        read_token(SECRET, "confirm", token)
    assert info.value.reason == "invalid"
    with pytest.raises(ValueError):
        make_token(SECRET, "delete-everything", 1, "a@example.com")


def test_wrong_secret_and_tampering() -> None:
    token = make_token(SECRET, "unsubscribe", 7, "a@example.com")
    with pytest.raises(TokenError):
        read_token("another-secret-entirely", "unsubscribe", token)
    ident, digest, signature = token.split(".")
    # (Not the last character: its low bits are base64 padding and may not change the signature.)
    forged_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    for forged in (f"{ident}.{digest}.{forged_signature}", f"8.{digest}.{signature}", f"{ident}.{digest}",
                   f"{ident}.{'0' * 10}.{signature}", token[:-3]):
        with pytest.raises(TokenError):
            read_token(SECRET, "unsubscribe", forged)


def test_unsubscribe_tokens_are_stable_and_never_expire() -> None:
    assert make_token(SECRET, "unsubscribe", 5, "a@example.com") == make_token(SECRET, "unsubscribe", 5, "A@example.com")
    with pytest.raises(ValueError):
        read_token(SECRET, "unsubscribe", make_token(SECRET, "unsubscribe", 5, "a@example.com"), max_age=60)


def test_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_token(SECRET, "confirm", 7, "a@example.com")
    assert read_token(SECRET, "confirm", token, max_age=60) == (7, keyed_email_digest(SECRET, "a@example.com"))
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(TokenError) as info:
        read_token(SECRET, "confirm", token, max_age=60)
    assert info.value.reason == "expired"
    assert "expired" in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_garbage_is_a_token_error(garbage: str) -> None:
    with pytest.raises(TokenError) as info:
        read_token(SECRET, "unsubscribe", garbage)
    assert SECRET not in str(info.value)


def test_secret_from_env() -> None:
    assert secret_from_env({"NEWSLETTER_SECRET": " s3cret-value-of-32-characters-xyz "}) == "s3cret-value-of-32-characters-xyz"
    assert secret_from_env({}, fallback="demo") == "demo"
    with pytest.raises(ConfigError) as info:
        secret_from_env({"NEWSLETTER_SECRET": ""})
    assert info.value.key == "NEWSLETTER_SECRET"
    assert "token_urlsafe" in str(info.value)

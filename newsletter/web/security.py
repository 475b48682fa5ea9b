"""Web safety: security headers and a token-masking access log on every response, signed double-submit
CSRF fields, a per-client rate limit, and bounded form-body parsing."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .pages import PageError

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "ACCESS_LOG",
    "mask_path",
    "SecurityHeadersMiddleware",
    "Csrf",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "RateLimiter",
    "read_form",
    "FORM_LIMIT",
]

CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Token URLs must never travel to another site in a Referer header.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
ACCESS_LOG = logging.getLogger("newsletter.serve.access")
ERROR_LOG = logging.getLogger("newsletter.serve")
_TOKEN_PATH = re.compile(r"/(unsubscribe|resubscribe|confirm)/[^/?#]+")


def mask_path(path: str) -> str:
    """The path with link tokens replaced by ***: a token in a log file is a working unsubscribe link."""
    return _TOKEN_PATH.sub(r"/\1/***", path)


class SecurityHeadersMiddleware:
    """The outermost layer, so even the 500 page gets the headers; one masked access-log line per request.

    Responses that set no Cache-Control get `no-store`: token pages must not sit in shared caches.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, logged = 0, False

        def log_once() -> None:
            nonlocal logged
            if not logged:
                logged = True
                client = scope.get("client")
                ACCESS_LOG.info('%s "%s %s" %s', client[0] if client else "-", scope.get("method", "-"),
                                mask_path(scope.get("path", "")), status or 500)

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                log_once()  # before the last bytes leave, so the line exists once the client has its answer
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not logged:
                raise
            # Starlette re-raises after sending the 500 page; log it here (path masked) instead of letting
            # the server drop the connection under the answer it already has.
            ERROR_LOG.exception("error while answering %s %s", scope.get("method", "-"), mask_path(scope.get("path", "")))
        finally:
            log_once()


CSRF_COOKIE = "nl_csrf"
CSRF_FIELD = "csrf"
_NONCE = re.compile(r"[A-Za-z0-9_-]{20,64}\Z")


class Csrf:
    """Signed double submit: a random nonce in a cookie, and a form field signing that nonce and the action.

    The field is only accepted together with its own cookie (a forged cross-site POST has neither) and
    for the one action it was made for (`unsubscribe:<token>` cannot be replayed on another token).
    """

    def __init__(self, secret: str, *, max_age: int = 12 * 3600) -> None:
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret, salt="newsletter.csrf")

    @staticmethod
    def _binding(action: str) -> str:
        return hashlib.sha256(action.encode("utf-8")).hexdigest()[:24]

    def nonce(self, request: Request) -> str:
        """The browser's current nonce (so two open tabs both keep working), or a fresh one."""
        value = request.cookies.get(CSRF_COOKIE, "")
        return value if _NONCE.match(value) else secrets.token_urlsafe(24)

    def field(self, nonce: str, action: str) -> str:
        return self._serializer.dumps([nonce, self._binding(action)])

    def set_cookie(self, response: Response, nonce: str, request: Request) -> None:
        response.set_cookie(CSRF_COOKIE, nonce, max_age=self.max_age, path=request.scope.get("root_path") or "/",
                            secure=request.url.scheme == "https", httponly=True, samesite="strict")

    def check(self, request: Request, form: dict[str, str], action: str) -> None:
        """PageError 400 without a field, 403 for a forged, expired, foreign or cookie-less one."""
        value = form.get(CSRF_FIELD, "")
        if not value:
            raise PageError(400, "This form is incomplete",
                            "Please go back, reload the page and press the button again.")
        try:
            nonce, binding = self._serializer.loads(value, max_age=self.max_age)
            cookie = request.cookies.get(CSRF_COOKIE, "")
            ok = (isinstance(nonce, str) and isinstance(binding, str) and bool(cookie)
                  and hmac.compare_digest(nonce, cookie) and hmac.compare_digest(binding, self._binding(action)))
        except (BadData, ValueError, TypeError):
            ok = False
        if not ok:
            raise PageError(403, "This form has expired",
                            "Please go back, reload the page and try again. If it keeps happening, your browser "
                            "may be blocking the cookie this form needs.", retry=str(request.url.path))


class RateLimiter:
    """At most `limit` hits per `window` seconds per key (a client address), in memory, sliding window."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Record a hit: 0.0 if allowed, else the seconds until the next one would be."""
        now = self._clock()
        with self._lock:
            stamps = self._hits.setdefault(key, deque())
            while stamps and now - stamps[0] >= self.window:
                stamps.popleft()
            if len(stamps) >= self.limit:
                return max(self.window - (now - stamps[0]), 1.0)
            stamps.append(now)
            if len(self._hits) > self.max_keys:
                self._prune(now)
            return 0.0

    def _prune(self, now: float) -> None:
        self._hits = {k: v for k, v in self._hits.items() if v and now - v[-1] < self.window}
        if len(self._hits) > self.max_keys:
            # A flood from many addresses: forgetting everyone is lenient, but memory stays bounded.
            self._hits.clear()


FORM_LIMIT = 16 * 1024


def _multipart_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """Text fields of a multipart/form-data body (RFC 8058 prefers it for one-click); files are ignored."""
    try:
        head = f"Content-Type: {content_type}\r\n\r\n".encode("ascii")
    except UnicodeEncodeError:
        raise PageError(400, "This form is not valid", "Please go back and try again.") from None
    message: Any = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return []
    fields = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True) or b""
        fields.append((name, payload.decode("utf-8", "replace")))
    return fields


async def read_form(request: Request, *, limit: int = FORM_LIMIT) -> dict[str, str]:
    """The first value of each field of a urlencoded or multipart body of at most `limit` bytes (413 beyond)."""
    too_large = PageError(413, "Too much data", "This form sent more than we accept. Please go back and try again.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    content_type = request.headers.get("content-type", "")
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise PageError(400, "This form is not valid", "Please go back and try again.") from None
    elif media == "multipart/form-data":
        pairs = _multipart_fields(content_type, bytes(body))
    else:
        pairs = []
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form

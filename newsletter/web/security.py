"""Web safety: security headers and a token-masking access log on every response, signed double-submit
CSRF fields, a per-client rate limit kept in the database, and bounded form-body parsing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store import Connection, web_state
from .pages import PageError

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "ACCESS_LOG",
    "mask_path",
    "escape_controls",
    "EscapingFormatter",
    "client_key",
    "relative_slash_redirect",
    "BODY_DEADLINE",
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


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with control characters (CR, LF, NUL, ESC, ...) written as \\xNN: one log record stays one line,
    and a visitor cannot forge log lines or send escape sequences to an administrator's terminal."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                         else f"\\u{ord(m.group()):04x}", text)


class EscapingFormatter(logging.Formatter):
    """Escapes control characters in every formatted message (a traceback, added after, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


def client_key(host: str) -> str:
    """The rate-limit key of a client address: IPv6 grouped by /64 (one subscriber line gets a whole /64),
    IPv4-mapped IPv6 as its IPv4 address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def relative_slash_redirect(router: Router) -> ASGIApp:
    """The router's fallback: `/issues/x/` -> 307 to `/issues/x` when that route exists, with a relative
    Location (never built from the Host header, which a client controls); a 404 otherwise."""

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            stripped = {**scope, "path": path.rstrip("/") or "/"}
            if any(route.matches(stripped)[0] != Match.NONE for route in router.routes):
                location = stripped["path"]  # ASGI: the path already holds the root path (--root-path)
                query = scope.get("query_string", b"").decode("latin-1")
                if location.startswith("//"):  # never a network-path reference to another host
                    location = "/" + location.lstrip("/")
                await RedirectResponse(location + (f"?{query}" if query else ""), status_code=307)(scope, receive, send)
                return
        await router.not_found(scope, receive, send)

    return fallback


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
                ACCESS_LOG.info('%s "%s %s" %s', escape_controls(client[0] if client else "-"),
                                escape_controls(scope.get("method", "-")),
                                escape_controls(mask_path(scope.get("path", ""))), status or 500)

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
            ERROR_LOG.exception("error while answering %s %s", escape_controls(scope.get("method", "-")),
                                escape_controls(mask_path(scope.get("path", ""))))
        finally:
            log_once()


CSRF_COOKIE = "nl_csrf"
CSRF_FIELD = "csrf"
_NONCE = re.compile(r"[A-Za-z0-9_-]{32}\Z")


class Csrf:
    """Signed double submit: a random nonce in a cookie, and a form field signing that nonce and the action.

    The field is only accepted together with its own cookie (a forged cross-site POST has neither) and
    for the one action it was made for (`unsubscribe:<token>` cannot be replayed on another token).
    The cookie itself is `<nonce>.<mac>`: only a nonce this server minted is adopted, never a value
    someone planted in the browser (a sibling subdomain can set cookies for ours).
    """

    def __init__(self, secret: str, *, max_age: int = 12 * 3600) -> None:
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret, salt="newsletter.csrf")
        self._cookie_key = hmac.new(secret.encode("utf-8"), b"newsletter.csrf-cookie", hashlib.sha256).digest()

    @staticmethod
    def _binding(action: str) -> str:
        return hashlib.sha256(action.encode("utf-8")).hexdigest()[:24]

    def _cookie_mac(self, nonce: str) -> str:
        return hmac.new(self._cookie_key, nonce.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def _minted(self, cookie: str) -> str | None:
        """The nonce of a cookie this server minted, else None."""
        nonce, _, mac = cookie.partition(".")
        if _NONCE.match(nonce) and hmac.compare_digest(mac, self._cookie_mac(nonce)):
            return nonce
        return None

    def nonce(self, request: Request) -> str:
        """The browser's current nonce if we minted it (so two open tabs both keep working), or a fresh one."""
        return self._minted(request.cookies.get(CSRF_COOKIE, "")) or secrets.token_urlsafe(24)

    def field(self, nonce: str, action: str) -> str:
        return self._serializer.dumps([nonce, self._binding(action)])

    def set_cookie(self, response: Response, nonce: str, request: Request) -> None:
        response.set_cookie(CSRF_COOKIE, f"{nonce}.{self._cookie_mac(nonce)}", max_age=self.max_age, path=request.scope.get("root_path") or "/",
                            secure=request.url.scheme == "https", httponly=True, samesite="strict")

    def check(self, request: Request, form: dict[str, str], action: str) -> None:
        """PageError 400 without a field, 403 for a forged, expired, foreign or cookie-less one."""
        value = form.get(CSRF_FIELD, "")
        if not value:
            raise PageError(400, "This form is incomplete",
                            "Please go back, reload the page and press the button again.")
        try:
            nonce, binding = self._serializer.loads(value, max_age=self.max_age)
            cookie = self._minted(request.cookies.get(CSRF_COOKIE, "")) or ""
            ok = (isinstance(nonce, str) and isinstance(binding, str) and bool(cookie)
                  and hmac.compare_digest(nonce, cookie) and hmac.compare_digest(binding, self._binding(action)))
        except (BadData, ValueError, TypeError):
            ok = False
        if not ok:
            raise PageError(403, "This form has expired",
                            "Please go back, reload the page and try again. If it keeps happening, your browser "
                            "may be blocking the cookie this form needs.", retry=str(request.url.path))


class RateLimiter:
    """At most `limit` hits per `window` seconds per key (see client_key) under `scope`, a sliding window
    counted in the database, so every process serving the site counts together (store/web_state.py).

    Hits older than the window are pruned at most once per `prune_every` seconds per process (the only
    thing a process keeps, and only to save work: a recent hit is never pruned, so a flood of new
    addresses resets nobody's limit).
    """

    def __init__(self, limit: int, window: float, *, scope: str = "subscribe",
                 clock: Callable[[], float] = time.time, prune_every: float = 60.0) -> None:
        self.limit, self.window, self.scope, self.prune_every = limit, window, scope, prune_every
        self._clock = clock
        self._next_prune = 0.0

    def hit(self, conn: Connection, key: str) -> float:
        """Record a hit on `conn` (committed): 0.0 if allowed, else the seconds until the next one would be."""
        now = self._clock()
        wait = web_state.rate_hit(conn, self.scope, key, limit=self.limit, window=self.window, now=now)
        if now >= self._next_prune:
            self._next_prune = now + self.prune_every
            web_state.prune_rate_limits(conn, self.scope, window=self.window, now=now)
        return wait


FORM_LIMIT = 16 * 1024
#: Seconds a client may take to send a form body; a slow drip past it is answered 408.
BODY_DEADLINE = 30.0


def _multipart_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """Text fields of a multipart/form-data body (RFC 8058 prefers it for one-click); files are ignored."""
    try:
        head = f"Content-Type: {content_type}\r\n\r\n".encode("ascii")
    except UnicodeEncodeError:
        raise PageError(400, "This form is not valid", "Please go back and try again.") from None
    try:
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
    except (RecursionError, ValueError, TypeError, LookupError, AttributeError, IndexError) as exc:
        # The stdlib header parser recurses per nested comment "((((...": hostile input, not our fault.
        ERROR_LOG.info("refused a multipart body the email parser could not read: %s", type(exc).__name__)
        raise PageError(400, "This form is not valid", "Please go back and try again.") from None
    return fields


async def _read_body(request: Request, limit: int, too_large: PageError) -> bytearray:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return body


async def read_form(request: Request, *, limit: int = FORM_LIMIT, deadline: float = BODY_DEADLINE) -> dict[str, str]:
    """The first value of each field of a urlencoded or multipart body of at most `limit` bytes (413 beyond),
    sent within `deadline` seconds (408 beyond)."""
    too_large = PageError(413, "Too much data", "This form sent more than we accept. Please go back and try again.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    try:
        body = await asyncio.wait_for(_read_body(request, limit, too_large), deadline)
    except TimeoutError:
        raise PageError(408, "This took too long", "The form did not arrive in time. Please try again.",
                        headers={"Connection": "close"}) from None
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

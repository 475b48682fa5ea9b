"""The desk's shared machinery: templates, sessions, CSRF-checked forms, sign-in guards and database work."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote

import jinja2
from itsdangerous import BadData, URLSafeSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Router

from ...jobs.accounts import EditorRow, desk_db
from ...store import Connection
from ...store import desk as desk_store
from ...settings import Settings
from ..pages import PageError
from ..security import Csrf

__all__ = ["DeskCore", "Handler", "Form", "DESK_TEMPLATES", "SESSION_COOKIE", "FORM_LIMIT", "UPLOAD_LIMIT"]

DESK_TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "desk"
SESSION_COOKIE = "nl_desk"
FORM_LIMIT = 256 * 1024
UPLOAD_LIMIT = 5 * 1024 * 1024
#: How often a session's last-seen time is written: every request would make each page a database write.
TOUCH_EVERY = 60.0

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


class Form:
    """A submitted form: every value of every field, in order (the summary list repeats names)."""

    def __init__(self, pairs: list[tuple[str, str]], files: dict[str, tuple[str, bytes]] | None = None) -> None:
        self.pairs, self.files = pairs, files or {}

    def get(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.pairs if k == name), default)

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.pairs:
            out.setdefault(k, v)
        return out


def _parse_multipart(content_type: str, body: bytes) -> Form:
    try:
        head = f"Content-Type: {content_type}\r\n\r\n".encode("ascii")
    except UnicodeEncodeError:
        raise PageError(400, "This form is not valid", "Please go back and try again.") from None
    message: Any = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    pairs: list[tuple[str, str]] = []
    files: dict[str, tuple[str, bytes]] = {}
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                files[name] = (Path(filename).name, payload)
            else:
                pairs.append((name, payload.decode("utf-8", "replace")))
    return Form(pairs, files)


class DeskCore:
    """One per app: settings, the signing secret, the template environment and the session rules."""

    def __init__(self, settings: Settings, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.clock = settings, clock
        self.csrf = Csrf(secret)
        self._sessions = URLSafeSerializer(secret, salt="newsletter.desk.session")
        own = settings.path(settings.templates_dir) / "desk"
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(own))]
        if own.resolve() != DESK_TEMPLATES:
            loaders.append(jinja2.FileSystemLoader(str(DESK_TEMPLATES)))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(site_name=settings.site_name, language=settings.language)
        self.router: Router | None = None

    # --- database -------------------------------------------------------------------------------------

    async def db(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `work(conn, ...)` in a worker thread on a short connection with the desk tables in place."""
        def run() -> T:
            with desk_db(self.settings) as conn:
                return work(conn, *args, **kwargs)

        return await run_in_threadpool(run)

    async def audit(self, editor: EditorRow | None, action: str, *, issue_id: str | None = None,
                    version: str | None = None, detail: str = "") -> None:
        await self.db(desk_store.audit, editor, action, issue_id=issue_id, version=version, detail=detail)

    # --- links and pages ------------------------------------------------------------------------------

    def url(self, request: Request, route: str, /, **params: str) -> str:
        assert self.router is not None, "DeskCore.router is set by create_app"
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return root + str(self.router.url_path_for(route, **params))

    def redirect(self, request: Request, route: str, /, *, query: str = "", **params: str) -> RedirectResponse:
        return RedirectResponse(self.url(request, route, **params) + (f"?{query}" if query else ""), status_code=303)

    @staticmethod
    def redirect_to(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def render(self, request: Request, template: str, context: dict[str, Any], *, editor: EditorRow | None,
               status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
        """A desk page; every form on it gets a CSRF field bound to its action via `csrf(action)`."""
        nonce = self.csrf.nonce(request)

        def csrf(action: str) -> str:
            return self.csrf.field(nonce, f"desk:{action}")

        def url(route: str, /, **params: str) -> str:
            return self.url(request, route, **params)

        values = {"csrf": csrf, "url": url, "editor": editor, "path": request.url.path, **context}
        response = HTMLResponse(self.env.get_template(template).render(values), status_code=status,
                                headers=headers)
        self.csrf.set_cookie(response, nonce, request)
        return response

    async def form(self, request: Request, action: str, *, limit: int = FORM_LIMIT) -> Form:
        """The POSTed form, after its CSRF field was checked against `action` (403 otherwise)."""
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
        if media == "multipart/form-data":
            form = _parse_multipart(content_type, bytes(body))
        elif media == "application/x-www-form-urlencoded":
            try:
                form = Form(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000))
            except (UnicodeDecodeError, ValueError):
                raise PageError(400, "This form is not valid", "Please go back and try again.") from None
        else:
            form = Form([])
        self.csrf.check(request, form.as_dict(), f"desk:{action}")
        return form

    # --- sessions -------------------------------------------------------------------------------------

    @staticmethod
    def _hash(raw: str) -> str:
        return hashlib.sha256(raw.encode("ascii")).hexdigest()

    def _raw(self, request: Request) -> str | None:
        value = request.cookies.get(SESSION_COOKIE, "")
        if not value:
            return None
        try:
            raw = self._sessions.loads(value)
        except BadData:
            return None
        return raw if isinstance(raw, str) and raw.isascii() else None

    def start_session(self, conn: Connection, editor: EditorRow) -> str:
        """A new session id for `editor` (never one the browser brought along); returns the cookie value."""
        raw = secrets.token_urlsafe(32)
        desk_store.create_session(conn, self._hash(raw), editor.id, self.clock())
        return self._sessions.dumps(raw)

    def current(self, conn: Connection, request: Request) -> EditorRow | None:
        raw = self._raw(request)
        if raw is None:
            return None
        row = desk_store.session(conn, self._hash(raw))
        if row is None:
            return None
        now = self.clock()
        if now - row.last_seen > self.settings.desk_idle_minutes * 60:
            desk_store.delete_session(conn, self._hash(raw))
            return None
        if now - row.last_seen > TOUCH_EVERY:
            desk_store.touch_session(conn, self._hash(raw), now)
        return row.editor

    def end_session(self, conn: Connection, request: Request) -> None:
        raw = self._raw(request)
        if raw is not None:
            desk_store.delete_session(conn, self._hash(raw))

    def cookie_path(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") + "/desk/"

    def set_session_cookie(self, response: Response, value: str, request: Request) -> None:
        # Secure follows the public address, not this request: behind the proxy the app itself speaks http.
        response.set_cookie(SESSION_COOKIE, value, path=self.cookie_path(request), httponly=True, samesite="strict",
                            secure=self.settings.public_base_url.startswith("https://"))

    def clear_session_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(SESSION_COOKIE, path=self.cookie_path(request), httponly=True, samesite="strict",
                               secure=self.settings.public_base_url.startswith("https://"))

    # --- guards ---------------------------------------------------------------------------------------

    def signed_in(self, handler: Callable[[Request, EditorRow], Awaitable[Response]], *,
                  approver: bool = False) -> Handler:
        """Wrap a page: without a live session, off to the sign-in page; approver-only pages refuse editors."""
        async def guarded(request: Request) -> Response:
            editor = await self.db(self.current, request)
            if editor is None:
                target = quote(request.url.path, safe="/") if request.method == "GET" else ""
                return self.redirect(request, "desk_login", query=f"next={target}" if target else "")
            if approver and editor.role != "approver":
                raise PageError(403, "Only an approver can do this",
                                "Your account can compose, edit, preview and send proofs. Ask an approver "
                                "to approve and send the issue.")
            return await handler(request, editor)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

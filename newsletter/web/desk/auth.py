"""Signing in and out of the desk: one answer for any wrong email or password, attempts limited in the database."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...jobs.accounts import DUMMY_HASH, EditorRow, verify
from ...store import Connection
from ...store import desk as desk_store
from .core import DeskCore

__all__ = ["SignIn", "SIGNIN_WINDOW", "SIGNIN_LIMIT_ACCOUNT", "SIGNIN_LIMIT_ADDRESS"]

#: Failed attempts allowed per account and per client address within the window (seconds).
SIGNIN_WINDOW = 15 * 60
SIGNIN_LIMIT_ACCOUNT = 5
SIGNIN_LIMIT_ADDRESS = 20
WRONG = "That email and password do not match an account. Please check both and try again."
LIMITED = ("There have been too many sign-in attempts. Please wait 15 minutes and try again, "
           "or ask the person who looks after the newsletter to check your account.")


@dataclass(frozen=True)
class _Outcome:
    editor: EditorRow | None
    cookie: str | None = None
    limited: bool = False


class SignIn:
    """GET/POST /desk/login, POST /desk/logout."""

    def __init__(self, core: DeskCore) -> None:
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("/desk/login", self.login, methods=["GET", "POST"], name="desk_login"),
            Route("/desk/logout", self.core.signed_in(self.logout), methods=["POST"], name="desk_logout"),
        ]

    def _next(self, request: Request, raw: str) -> str:
        """Where to go after signing in: only a desk page of this site (never //elsewhere)."""
        home = self.core.url(request, "desk_home")
        if raw.startswith(home) and "//" not in raw and "\\" not in raw and ".." not in raw:
            return raw
        return home

    async def login(self, request: Request) -> Response:
        if await self.core.db(desk_store.count_editors) == 0:
            return self.core.render(request, "setup.html", {}, editor=None)
        next_url = self._next(request, request.query_params.get("next", ""))
        if request.method == "GET":
            return self.core.render(request, "login.html", {"email": "", "error": "", "next": next_url}, editor=None)
        form = await self.core.form(request, "login")
        email, password = form.get("email").strip()[:320], form.get("password")[:1024]
        next_url = self._next(request, form.get("next"))
        address = request.client.host if request.client else "-"
        outcome = await self.core.db(self._attempt, email, password, address, request)
        if outcome.editor is None or outcome.cookie is None:
            message = LIMITED if outcome.limited else WRONG
            return self.core.render(request, "login.html", {"email": email, "error": message, "next": next_url},
                                    editor=None, status=429 if outcome.limited else 400)
        response = self.core.redirect_to(next_url)
        self.core.set_session_cookie(response, outcome.cookie, request)
        return response

    def _attempt(self, conn: Connection, email: str, password: str, address: str,
                 request: Request) -> _Outcome:
        key = email.lower()
        now = self.core.clock()
        by_account, by_address = desk_store.failed_attempts(conn, email_key=key, address=address,
                                                            since=now - SIGNIN_WINDOW)
        if by_account >= SIGNIN_LIMIT_ACCOUNT or by_address >= SIGNIN_LIMIT_ADDRESS:
            desk_store.record_attempt(conn, key, address, ok=False, now=now, keep_seconds=SIGNIN_WINDOW * 4)
            return _Outcome(None, limited=True)
        editor = desk_store.editor_by_email(conn, key)
        # An unknown address costs one hash check too, so timing does not tell which part was wrong.
        ok = verify(editor.password_hash if editor else DUMMY_HASH, password) and editor is not None
        desk_store.record_attempt(conn, key, address, ok=ok, now=now, keep_seconds=SIGNIN_WINDOW * 4)
        if not ok or editor is None:
            return _Outcome(None)
        # Whatever session id the browser brought is dropped: sign-in always issues a fresh one.
        self.core.end_session(conn, request)
        cookie = self.core.start_session(conn, editor)
        desk_store.audit(conn, editor, "signin", detail=f"from {address}")
        return _Outcome(editor, cookie)

    async def logout(self, request: Request, editor: EditorRow) -> Response:
        await self.core.form(request, "logout")
        await self.core.db(self.core.end_session, request)
        await self.core.audit(editor, "signout")
        response = self.core.redirect(request, "desk_login")
        self.core.clear_session_cookie(response, request)
        return response

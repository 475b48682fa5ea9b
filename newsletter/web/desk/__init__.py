"""The editing desk under /desk/: its routes, and the header layer that gives desk pages their own policy.

`newsletter serve` mounts it (serve.create_app). Every route but the sign-in page and the desk's own
CSS/JS needs a signed-in editor (core.DeskCore.signed_in); approve, schedule, send and cancel need an
approver. Pages are server-rendered from templates/desk/ and work without JavaScript.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...settings import Settings
from .auth import SignIn
from .core import DeskCore
from .issues import PREVIEW_FRAME_HEADER, IssuePages
from .people import PeoplePages
from .sending import SendingPages

__all__ = ["Desk", "DeskHeaders", "DESK_CSP", "PREVIEW_CSP", "PUBLIC_ROUTES"]

#: Scripts and styles only from this site, no inline script; the preview frame only from this site.
DESK_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
#: The email in the preview frame: its inline styles and https images, no script, sandboxed, framed only by us.
PREVIEW_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'none'; "
               "frame-ancestors 'self'; base-uri 'none'; sandbox")
#: Desk routes reachable without signing in.
PUBLIC_ROUTES = frozenset({"desk_login", "desk_static"})


class Desk:
    """Builds the desk's routes over one DeskCore; `attach(router)` once the app exists."""

    def __init__(self, settings: Settings, secret: str) -> None:
        self.core = DeskCore(settings, secret)
        self._parts = (SignIn(self.core), IssuePages(self.core), SendingPages(self.core), PeoplePages(self.core))

    def routes(self) -> list[Route]:
        return [route for part in self._parts for route in part.routes()]

    def attach(self, router: Router) -> None:
        self.core.router = router


class DeskHeaders:
    """Outside the site's security headers: /desk/ pages get DESK_CSP, the preview frame PREVIEW_CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if not path.startswith("/desk"):
            await self.app(scope, receive, send)
            return

        async def send_desk(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if PREVIEW_FRAME_HEADER in headers:
                    del headers[PREVIEW_FRAME_HEADER]
                    headers["Content-Security-Policy"] = PREVIEW_CSP
                    headers["X-Frame-Options"] = "SAMEORIGIN"
                else:
                    headers["Content-Security-Policy"] = DESK_CSP
                headers["Cache-Control"] = "no-store"
                headers["Referrer-Policy"] = "same-origin"
            await send(message)

        await self.app(scope, receive, send_desk)

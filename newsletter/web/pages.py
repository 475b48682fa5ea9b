"""Web pages: templates/web rendered with autoescaping Jinja2, links under the app's root path, friendly errors."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Router

from ..settings import Settings

__all__ = ["Pages", "PageError", "BUNDLED_TEMPLATES", "CACHE_PUBLIC"]

#: The templates shipped with the project; a site's own templates/web/ overrides them file by file.
BUNDLED_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "web"
#: For pages that are the same for everyone (archive, web version, feed).
CACHE_PUBLIC = {"Cache-Control": "public, max-age=300"}

log = logging.getLogger("newsletter.serve")

_ERRORS = {
    400: ("This link or form is not valid", "Please go back and try again."),
    403: ("Not allowed", "Please go back, reload the page and try again."),
    404: ("Page not found", "There is nothing at this address. The archive lists every issue we have sent."),
    405: ("Not allowed", "This address does not accept that kind of request."),
    413: ("Too much data", "This form sent more than we accept. Please go back and try again."),
    429: ("Too many requests", "Please wait a few minutes, then try again."),
    503: ("Please try again later", "We could not finish this just now. Please try again in a few minutes."),
    500: ("Something went wrong", "Sorry, this is a problem on our side, not yours. Please try again later."),
}


class PageError(HTTPException):
    """An HTTP error shown as a friendly page: a heading, a sentence, and optionally a link to try again."""

    def __init__(self, status_code: int, title: str, message: str, *, retry: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code, detail=title, headers=headers)
        self.title, self.message, self.retry = title, message, retry


class Pages:
    """Renders templates/web/*.html; `router` (set once the app exists) names the routes for links."""

    def __init__(self, settings: Settings) -> None:
        own = settings.path(settings.templates_dir) / "web"
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(own))]
        if own.resolve() != BUNDLED_TEMPLATES:
            loaders.append(jinja2.FileSystemLoader(str(BUNDLED_TEMPLATES)))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        self.env.globals.update(site_name=settings.site_name, site_url=settings.site_url,
                                postal_address=settings.postal_address, language=settings.language)
        self.router: Router | None = None

    def link(self, request: Request, name: str, **params: str) -> str:
        """The path of a named route as the browser sees it (under a proxy's prefix, see --root-path)."""
        assert self.router is not None, "Pages.router is set by create_app"
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return root + str(self.router.url_path_for(name, **params))

    def render(self, request: Request, template: str, context: Mapping[str, Any] | None = None, *,
               status: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
        values = {"home": self.link(request, "archive"), "subscribe": self.link(request, "subscribe"),
                  "feed": self.link(request, "feed"), **(context or {})}
        html = self.env.get_template(template).render(values)
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        title, message = _ERRORS.get(exc.status_code, _ERRORS[400 if exc.status_code < 500 else 500])
        retry = None
        if isinstance(exc, PageError):
            title, message, retry = exc.title, exc.message, exc.retry
        return self._error_page(request, exc.status_code, title, message, retry=retry, headers=exc.headers)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Starlette logs the traceback; the visitor sees a calm page and no detail.
        title, message = _ERRORS[500]
        return self._error_page(request, 500, title, message)

    def _error_page(self, request: Request, status: int, title: str, message: str, *, retry: str | None = None,
                    headers: Mapping[str, str] | None = None) -> Response:
        try:
            return self.render(request, "error.html", {"title": title, "message": message, "retry": retry},
                               status=status, headers=headers)
        except (jinja2.TemplateError, AssertionError, OSError) as exc:
            log.error("cannot render the error page: %s", exc)
            return PlainTextResponse(f"{title}\n\n{message}\n", status_code=status, headers=dict(headers or {}))

    def exception_handlers(self) -> dict[Any, Any]:
        return {HTTPException: self.http_error, Exception: self.server_error}

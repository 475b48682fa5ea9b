"""`newsletter serve`: the ASGI app (Starlette) for one-click unsubscribe, the web archive and double opt-in.

It reads and writes the same database (SQLite or PostgreSQL) and issues/ folder as the CLI, and keeps
nothing between requests outside the database: any number of processes over one database serve as one
site (docs/serving.md, "Several processes"). Routes:

    GET  /                       sent issues, newest first        GET /feed.xml   the same as Atom
    GET  /issues/<id>            an issue's web version (no name, generic unsubscribe link)
    GET  /unsubscribe/<token>    a confirmation page; a GET alone never unsubscribes
    POST /unsubscribe/<token>    `List-Unsubscribe=One-Click` (RFC 8058, no CSRF field), or the page's form
    GET|POST /resubscribe/<token>, GET|POST /subscribe, GET|POST /confirm/<token>

Every form but RFC 8058's one-click body carries a signed double-submit CSRF field (web.security).
Confirming a subscription takes a button press, not just a GET: mail scanners follow links.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .store import safeguards
from .store.events import has_complained
from .errors import ComplainedError, ConfigError, DeliveryError, HeaderError, SubscriberError, TokenError
from .models import Message, Subscriber
from .settings import Settings, SigningSecret, load_settings, signing_key
from .store import Connection, open_store, subscribers, web_state
from .tokens import key_id, make_token
from .transports import transport_factory
from .web import archive, consent
from .web.desk import Desk, DeskHeaders
from .web.hooks import WebhookConfig, webhook_routes
from .web.pages import CACHE_PUBLIC, PageError, Pages
from .web.security import (Csrf, EscapingFormatter, RateLimiter, SecurityHeadersMiddleware, client_key, read_form,
                           relative_slash_redirect)
from .web.subscription import (RESUBSCRIBE_MAX_AGE, confirm_token, confirmation_message, mask_address,
                               read_confirm_link, subscriber_for_token)
from .web.writers import writer

__all__ = ["create_app", "app_from_environment", "SUBSCRIBE_LIMIT"]

#: POST /subscribe: at most this many per client address per this many seconds.
SUBSCRIBE_LIMIT = (5, 600.0)

log = logging.getLogger("newsletter.serve")
T = TypeVar("T")


class NewsletterApp(Starlette):
    """Starlette with the security headers outside everything, the 500 handler included."""

    def build_middleware_stack(self) -> ASGIApp:
        return DeskHeaders(SecurityHeadersMiddleware(super().build_middleware_stack()))


def create_app(settings: Settings, *, subscribe_limit: tuple[int, float] = SUBSCRIBE_LIMIT,
               confirmation_limit: tuple[int, float] = safeguards.CONFIRMATION_LIMIT,
               clock: Callable[[], float] = time.time, webhooks: WebhookConfig | None = None) -> Starlette:
    """The app over `settings`' database and issues; ConfigError now (not per request) without a usable secret."""
    key = signing_key(settings)
    check_signing_key(settings, key)
    with open_store(settings).connection() as conn:
        web_state.ensure_schema(conn)  # the state every process serving the site shares
    site = _Site(settings, key.value, RateLimiter(*subscribe_limit, scope="subscribe", clock=clock),
                 confirmation_limit)
    desk = Desk(settings, site.secret)
    routes = [*site.routes(), *desk.routes(), *webhook_routes(settings, site.secret, webhooks)]  # /hooks/*: web/hooks.py
    app = NewsletterApp(debug=False, routes=routes, exception_handlers=site.pages.exception_handlers())
    site.pages.router = app.router
    desk.attach(app.router)
    # Starlette's own slash redirect builds an absolute URL from the Host header; ours is relative.
    app.router.redirect_slashes = False
    app.router.default = relative_slash_redirect(app.router)
    return app


def app_from_environment() -> Starlette:
    """The app for `uvicorn --factory newsletter.serve:app_from_environment --workers 4` (docs/serving.md):
    settings from $NEWSLETTER_CONFIG (or ./newsletter.toml) and the environment, as `newsletter serve` reads them.

    Every worker builds its own app; all they share is the database, which is all they need. Uvicorn's own
    access log is silenced here (it would write token URLs, each a working unsubscribe link); ours masks them.
    """
    served = logging.getLogger("newsletter.serve")
    if not served.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        served.addHandler(handler)
        served.setLevel(logging.INFO)
        served.propagate = False
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    return create_app(load_settings())


def check_signing_key(settings: Settings, key: SigningSecret) -> None:
    """Say which secret signs links (never the secret); refuse the demo file when sent links used another key."""
    log.info("signing links with the secret from %s (key id %s)",
             "the environment (NEWSLETTER_SECRET)" if not key.from_file else key.source, key_id(key.value))
    with open_store(settings).connection() as conn:
        others = safeguards.issues_sent_under_other_keys(conn, key_id(key.value))
    if not others:
        return
    shown = ", ".join(others[:5]) + (" and more" if len(others) > 5 else "")
    if key.from_file:
        raise ConfigError(f"links in issues already sent ({shown}) were signed with another secret, so their "
                          f"unsubscribe links would fail; set NEWSLETTER_SECRET to the secret `send` used",
                          key=key.source)
    log.warning("links in issues %s were signed with another secret than NEWSLETTER_SECRET: their unsubscribe "
                "links will be refused until the old secret is set again", shown)


def _refuse_complainer(conn: Connection, who: Subscriber) -> None:
    if has_complained(conn, who.id):
        raise ComplainedError(f"{who.email} reported our email as spam; it is not resubscribed", address=who.email)


def _token_error(exc: TokenError) -> PageError:
    if exc.reason == "expired":
        return PageError(400, "This link has expired",
                         "Links like this one only work for a limited time. Nothing was changed.")
    return PageError(400, "This link is not valid",
                     "It may have been cut short when it was copied. Nothing was changed. Please use the "
                     "link in the most recent email, or copy the whole link into your browser.")


class _Site:
    """The route handlers; database work runs in a worker thread, one short connection each."""

    def __init__(self, settings: Settings, secret: str, limiter: RateLimiter,
                 confirmation_limit: tuple[int, float]) -> None:
        self.settings, self.secret, self.limiter = settings, secret, limiter
        self.confirmation_limit = confirmation_limit
        self.pages = Pages(settings)
        self.csrf = Csrf(secret)
        self._writer = writer(settings)  # SQLite: one writing thread at a time per process (web/writers.py)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.archive, name="archive"),
            Route("/feed.xml", self.feed, name="feed"),
            Route("/issues/{issue_id}", self.issue, name="issue"),
            Route("/unsubscribe", self.unsubscribe_help, name="unsubscribe_help"),
            Route("/unsubscribe/{token}", self.unsubscribe, methods=["GET", "POST"], name="unsubscribe"),
            Route("/resubscribe/{token}", self.resubscribe, methods=["GET", "POST"], name="resubscribe"),
            Route("/subscribe", self.subscribe, methods=["GET", "POST"], name="subscribe"),
            Route("/confirm/{token}", self.confirm, methods=["GET", "POST"], name="confirm"),
        ]

    async def _db(self, work: Callable[..., T], *args: Any, writes: bool = False, **kwargs: Any) -> T:
        """`work(conn, ...)` in a worker thread; `writes=True` when it writes (see _writer)."""
        def run() -> T:
            with open_store(self.settings).connection() as conn, self._writer if writes else contextlib.nullcontext():
                return work(conn, *args, **kwargs)

        try:
            return await run_in_threadpool(run)
        except TokenError as exc:
            raise _token_error(exc) from None
        except ComplainedError:
            raise PageError(403, "We cannot sign this address up again",
                            "This address reported one of our emails as spam, so we stopped writing to it "
                            "for good. If that was a mistake, please write to us and we will help.") from None

    def _with_form(self, request: Request, template: str, context: dict[str, Any], route: str, token: str = "",
                   *, status: int = 200) -> HTMLResponse:
        """Render a page holding a POST form to `route`, with its CSRF field and cookie."""
        nonce = self.csrf.nonce(request)
        params = {"token": token} if token else {}
        form = {"action": self.pages.link(request, route, **params), "csrf": self.csrf.field(nonce, f"{route}:{token}")}
        response = self.pages.render(request, template, {**context, "form": form}, status=status)
        self.csrf.set_cookie(response, nonce, request)
        return response

    # --- archive ---------------------------------------------------------------------------------

    async def archive(self, request: Request) -> Response:
        issues = await self._db(archive.sent_issues, self.settings)
        listed = [{"subject": i.subject, "preheader": i.preheader, "date_label": i.date_label,
                   "url": self.pages.link(request, "issue", issue_id=i.id)} for i in issues]
        return self.pages.render(request, "archive.html", {"issues": listed}, headers=CACHE_PUBLIC)

    async def feed(self, request: Request) -> Response:
        issues = await self._db(archive.sent_issues, self.settings)
        return Response(archive.atom_feed(self.settings, issues), media_type="application/atom+xml; charset=utf-8",
                        headers=CACHE_PUBLIC)

    async def issue(self, request: Request) -> Response:
        issue_id = request.path_params["issue_id"]
        if not archive.valid_issue_id(issue_id):
            raise HTTPException(404)
        try:
            found = await self._db(archive.sent_issue, self.settings, issue_id)
            html = await run_in_threadpool(archive.web_version, self.settings, found) if found else None
        except (OSError, ValueError) as exc:  # damaged, or changed since approval: never serve the edit
            log.warning("archive: not serving issue %s: %s", issue_id, exc)
            raise PageError(404, "This issue is not available",
                            "It cannot be shown right now. The archive lists every issue we can show.") from None
        if html is None:
            raise HTTPException(404)
        return HTMLResponse(html, headers=CACHE_PUBLIC)

    # --- unsubscribe / resubscribe ---------------------------------------------------------------

    async def unsubscribe_help(self, request: Request) -> Response:
        return self.pages.render(request, "unsubscribe_help.html", {"mailto": self.settings.unsubscribe_mailto,
                                                                    "proof": request.query_params.get("proof") == "1"})

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method != "POST":  # GET or HEAD: show, never change
            who = await self._db(subscriber_for_token, self.secret, "unsubscribe", token)
            if who.status == "unsubscribed":
                return self._unsubscribed(request, who, already=True)
            return self._with_form(request, "unsubscribe.html", {"address": mask_address(who.email)},
                                   "unsubscribe", token)
        form = await read_form(request)
        if form.get("List-Unsubscribe") == "One-Click":
            # RFC 8058: the mail provider POSTs this body on the reader's behalf; the token is the authority.
            await self._db(consent.unsubscribe, self.secret, token, "one-click", writes=True)
            return self.pages.render(request, "unsubscribed.html", {"address": "", "already": False, "form": None})
        self.csrf.check(request, form, f"unsubscribe:{token}")
        who = await self._db(consent.unsubscribe, self.secret, token, "web", writes=True)
        return self._unsubscribed(request, who, already=False)

    def _unsubscribed(self, request: Request, who: Subscriber, *, already: bool) -> HTMLResponse:
        if who.status == "bounced":  # nothing to offer: a link never reactivates a bounced address
            return self.pages.render(request, "unsubscribed.html",
                                     {"address": mask_address(who.email), "already": already, "form": None})
        resubscribe = make_token(self.secret, "resubscribe", who.id, who.email)
        return self._with_form(request, "unsubscribed.html", {"address": mask_address(who.email), "already": already},
                               "resubscribe", resubscribe)

    async def resubscribe(self, request: Request) -> Response:
        """A resubscribe link only asks for a confirmation email: whoever holds an old link is not
        necessarily the owner of the mailbox."""
        token = request.path_params["token"]
        if request.method == "POST":
            self.csrf.check(request, await read_form(request), f"resubscribe:{token}")
        who = await self._db(subscriber_for_token, self.secret, "resubscribe", token, max_age=RESUBSCRIBE_MAX_AGE)
        if who.status == "subscribed":
            return self.pages.render(request, "subscribed.html", {"address": mask_address(who.email)})
        if who.status == "bounced":
            raise consent.BOUNCED
        if request.method != "POST":  # GET or HEAD: show, never change
            return self._with_form(request, "resubscribe.html", {"address": mask_address(who.email)},
                                   "resubscribe", token)
        await self._db(_refuse_complainer, who)  # no confirmation mail to an address that reported spam
        await self._send_confirmation(who.email, who.name)
        return self.pages.render(request, "subscribe_sent.html", {"address": mask_address(who.email)})

    # --- subscribe (double opt-in) ---------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        if request.method != "POST":  # GET or HEAD: show, never change
            return self._with_form(request, "subscribe.html", {"error": None, "email": "", "name": ""}, "subscribe")
        wait = await self._db(self.limiter.hit, client_key(request.client.host if request.client else "-"),
                              writes=True)
        if wait:
            raise PageError(429, "Too many requests", "Please wait a few minutes, then try again.",
                            headers={"Retry-After": str(int(wait) + 1)})
        form = await read_form(request)
        self.csrf.check(request, form, "subscribe:")
        raw, name = form.get("email", "").strip(), subscribers.clean_name(form.get("name", ""))
        try:
            address = subscribers.normalise_address(raw)
            self._confirmation(address, name)  # a bad To header shows here, before any limit is used up
        except (SubscriberError, HeaderError):
            error = "Please enter an email address like name@example.org."
            return self._with_form(request, "subscribe.html", {"error": error, "email": raw[:254], "name": name},
                                   "subscribe", status=400)
        # Known or not, the same email and the same page: the form must not reveal who is on the list.
        await self._send_confirmation(address, name)
        return self.pages.render(request, "subscribe_sent.html")

    def _confirmation(self, address: str, name: str) -> Message:
        token = confirm_token(self.secret, address, name)
        base = self.settings.public_base_url.rstrip("/")
        return confirmation_message(self.settings, address, f"{base}/confirm/{token}")

    async def _send_confirmation(self, address: str, name: str) -> None:
        """Email a confirm link to `address`, at most CONFIRMATION_LIMIT times a day (kept in the database,
        so neither a restart nor many client addresses can turn the form into a mail bomb)."""
        message = self._confirmation(address, name)
        allowed = await self._db(safeguards.allow_confirmation, self.secret, address, limit=self.confirmation_limit,
                                 writes=True)
        if not allowed:
            log.warning("confirmation email to a %s address not sent: daily limit for that address reached",
                        address.rpartition("@")[2])
            raise PageError(429, "We have already sent several emails to this address",
                            "Please look for them in your inbox and spam folder, or try again tomorrow.",
                            headers={"Retry-After": "3600"})
        try:
            await run_in_threadpool(self._send, message)
        except DeliveryError as exc:
            log.warning("confirmation email to a %s address not sent: %s", address.rpartition("@")[2], exc.reason)
            raise PageError(503, "We could not send the email",
                            "Something went wrong while sending the confirmation email. "
                            "Please try again in a few minutes.") from None

    def _send(self, message: Message) -> None:
        transport = transport_factory(self.settings)()
        try:
            transport.send(message)
        finally:
            transport.close()

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "POST":
            self.csrf.check(request, await read_form(request), f"confirm:{token}")
        try:
            address, name, issued = read_confirm_link(self.secret, token)
        except TokenError as exc:
            raise _token_error(exc) from None
        if request.method != "POST":  # GET or HEAD: show, never change
            return self._with_form(request, "confirm.html", {"address": address, "name": name}, "confirm", token)
        await self._db(consent.confirm, token, address, name, issued, writes=True)
        return self.pages.render(request, "subscribed.html", {"address": mask_address(address)})

"""Provider webhooks on `newsletter serve`: POST /hooks/ses, /hooks/postmark, /hooks/mailgun, /hooks/sendgrid.

A request that fails verification gets 401 (403 for another SNS topic, 400 for a body the provider
never sends, 413 when too large) and changes nothing; each refusal is one log line. A verified event
about someone we never mailed is logged and skipped; the rest of the batch still counts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.bounces.intake import Matcher, Refused
from newsletter.bounces.parse import Verdict
from newsletter.bounces.providers import (ProviderEvent, WebhookRefused, mailgun_events, postmark_events,
                                          sendgrid_events, ses_events)
from newsletter.bounces.service import policy_for
from newsletter.bounces.sns import CertificateSource, HttpsCertificates, SnsError, confirm_subscription, verify_sns
from newsletter.store.events import Event
from newsletter.bounces.suppression import record
from newsletter.settings import Settings
from newsletter.web.writers import writer

__all__ = ["WebhookConfig", "webhook_routes", "MAX_BODY"]

MAX_BODY = 1024 * 1024
log = logging.getLogger("newsletter.serve.hooks")


@dataclass(frozen=True)
class WebhookConfig:
    """What the hooks need from outside: where SNS certificates come from, how a subscription is confirmed."""

    certificates: CertificateSource = field(default_factory=HttpsCertificates)
    confirm: Callable[[str], None] = confirm_subscription
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


class _Hooks:
    def __init__(self, settings: Settings, secret: str, config: WebhookConfig) -> None:
        self.settings, self.secret, self.config = settings, secret, config
        self.keys = dict(settings.webhook_keys)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_BODY:
            raise WebhookRefused("the body is missing a length or larger than 1 MB", 413)
        body = await request.body()
        if len(body) > MAX_BODY:
            raise WebhookRefused("the body is larger than 1 MB", 413)
        return body

    def _key(self, provider: str) -> str:
        key = self.keys.get(provider)
        if not key:
            raise WebhookRefused(f"not configured (set NEWSLETTER_{provider.upper()}_WEBHOOK_KEY)", 404)
        return key

    async def handle(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        try:
            body = await self._body(request)
            if provider == "ses":
                return await self._ses(body)
            if provider == "postmark":
                events = postmark_events(body, request.headers.get("authorization"), key=self._key(provider))
            elif provider == "mailgun":
                events = mailgun_events(body, key=self._key(provider), now=self.config.clock())
            elif provider == "sendgrid":
                events = sendgrid_events(body, request.headers, key=self._key(provider), now=self.config.clock())
            else:
                return PlainTextResponse("no such webhook\n", status_code=404)
        except (WebhookRefused, SnsError) as exc:
            log.warning("/hooks/%s refused (%d): %s", provider, exc.status, exc)
            return PlainTextResponse(f"refused: {exc}\n", status_code=exc.status)
        return JSONResponse(await run_in_threadpool(self._apply, provider, events))

    async def _ses(self, body: bytes) -> Response:
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WebhookRefused("the body is not an SNS message (not JSON)", 400) from None
        if not isinstance(message, dict):
            raise WebhookRefused("the body is not an SNS message", 400)
        kind = await run_in_threadpool(verify_sns, message, topic_arn=self.settings.ses_topic_arn,
                                       certificates=self.config.certificates, now=self.config.clock())
        if kind == "SubscriptionConfirmation":
            await run_in_threadpool(self.config.confirm, str(message.get("SubscribeURL")))
            log.info("/hooks/ses: confirmed the subscription to %s", message.get("TopicArn"))
            return JSONResponse({"subscribed": True})
        if kind == "UnsubscribeConfirmation":
            log.warning("/hooks/ses: the topic %s unsubscribed this endpoint", message.get("TopicArn"))
            return JSONResponse({"unsubscribed": True})
        events = ses_events(str(message.get("Message")), str(message.get("MessageId")))
        return JSONResponse(await run_in_threadpool(self._apply, "ses", events))

    def _apply(self, provider: str, events: list[ProviderEvent]) -> dict[str, int]:
        from newsletter.store import open_store

        counts = {"recorded": 0, "duplicates": 0, "skipped": 0}
        policy = policy_for(self.settings)
        with open_store(self.settings).connection() as conn, writer(self.settings):  # one SQLite writer per process
            matcher = Matcher(conn, secret=self.secret, verp=None)
            for event in events:
                verdict = Verdict(event.kind, (event.address.lower(),) if event.address else (),
                                  original_message_id=event.message_id)
                try:
                    matches = matcher.matches(verdict)
                except Refused as exc:
                    log.warning("/hooks/%s: %s skipped: %s", provider, event.kind, exc)
                    counts["skipped"] += 1
                    continue
                for match in matches:
                    outcome = record(conn, Event(match.subscriber_id, event.kind, provider, issue_id=match.issue_id,
                                                 code=event.code, diagnostic=event.diagnostic, ref=event.ref),
                                     policy=policy)
                    counts["duplicates" if outcome.duplicate else "recorded"] += 1
        return counts


def webhook_routes(settings: Settings, secret: str, config: WebhookConfig | None = None) -> list[Route]:
    hooks = _Hooks(settings, secret, config or WebhookConfig())
    return [Route("/hooks/{provider}", hooks.handle, methods=["POST"], name="hook")]

"""The bounce jobs as the CLI, the scheduler and `serve` call them: Settings in, reports out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from newsletter.store import subscribers
from newsletter.bounces.intake import IntakeReport, ItemResult, Matcher, fetch
from newsletter.bounces.mailbox import open_mailbox
from newsletter.store.events import IssueRates, StoredEvent, events_for, has_complained, issue_rates
from newsletter.bounces.suppression import Policy
from newsletter.bounces.verp import Verp
from newsletter.errors import ConfigError, SubscriberError
from newsletter.models import Subscriber
from newsletter.settings import Settings, signing_secret

__all__ = ["policy_for", "verp_for", "fetch_bounces", "SubscriberHistory", "history", "rates"]


def policy_for(settings: Settings) -> Policy:
    return Policy(threshold=settings.soft_bounce_threshold)


def verp_for(settings: Settings) -> Verp | None:
    """The VERP encoder/reader when `verp_address` is set (off by default: some providers rewrite it)."""
    if not settings.verp_address:
        return None
    return Verp(signing_secret(settings), settings.verp_address)


def fetch_bounces(settings: Settings, *, report: Callable[[ItemResult], None] | None = None,
                  limit: int | None = None) -> IntakeReport:
    """Read the bounce mailbox once: record what it says, move what was read."""
    from newsletter.store import open_store

    if not settings.bounce_mailbox:
        raise ConfigError("not set: where do bounces arrive? e.g. bounce_mailbox = \"imaps://bounces@mail.example.org/INBOX\"",
                          key="bounce_mailbox")
    mailbox = open_mailbox(settings.bounce_mailbox, root=settings.root, password=settings.bounce_password)
    try:
        with open_store(settings).connection() as conn:
            matcher = Matcher(conn, secret=signing_secret(settings), verp=verp_for(settings))
            return fetch(conn, mailbox, matcher, policy=policy_for(settings), report=report, limit=limit)
    finally:
        mailbox.close()


@dataclass(frozen=True)
class SubscriberHistory:
    subscriber: Subscriber
    complained: bool
    events: tuple[StoredEvent, ...]


def history(settings: Settings, address: str) -> SubscriberHistory:
    from newsletter.store import open_store

    with open_store(settings).connection() as conn:
        who = subscribers.find(conn, address)
        if who is None:
            raise SubscriberError(f"{address} is not on the list", address=address)
        return SubscriberHistory(who, has_complained(conn, who.id), tuple(events_for(conn, who.id)))


def rates(settings: Settings, issue_id: str) -> IssueRates:
    from newsletter.store import open_store

    with open_store(settings).connection() as conn:
        return issue_rates(conn, issue_id)

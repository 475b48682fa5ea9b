"""Suppression and scoring: an Event -> stored row -> the subscriber suppressed, unsubscribed or scored.

After Mailman and listmonk: a hard bounce suppresses at once; a soft bounce adds `soft_score` (one per
UTC day at most), each day's score fading to nothing over `decay_days`, and past `threshold` the
subscriber is suppressed; a complaint unsubscribes at once, and the complaint row keeps them from
being resubscribed by a link or an import.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from newsletter.store import Connection
from newsletter.store import subscribers
from newsletter.store.dbapi import log_event, transaction
from newsletter.errors import SubscriberError
from newsletter.store.events import Event, has_complained, insert_event, soft_days

__all__ = ["Policy", "Outcome", "record", "soft_score", "complained"]


@dataclass(frozen=True)
class Policy:
    soft_score: float = 0.5
    decay_days: int = 30
    threshold: float = 1.0  # three soft-bounce days in a row within a fortnight pass it; two do not


@dataclass(frozen=True)
class Outcome:
    """What recording one event did: `duplicate` (seen before, nothing changed) or an action."""

    duplicate: bool
    action: str  # suppressed | unsubscribed | scored | none
    score: float = 0.0
    status: str = ""  # the subscriber's status afterwards


def soft_score(conn: Connection, subscriber_id: int, policy: Policy, now: dt.datetime) -> float:
    """Sum over the days with a soft bounce of soft_score x (1 - age / decay_days)."""
    today = now.astimezone(dt.UTC).date()
    since = now - dt.timedelta(days=policy.decay_days)
    total = 0.0
    for day in soft_days(conn, subscriber_id, since):
        age = (today - day).days
        total += policy.soft_score * max(0.0, 1.0 - age / policy.decay_days)
    return round(total, 4)


def record(conn: Connection, event: Event, *, policy: Policy = Policy(),
           now: dt.datetime | None = None) -> Outcome:
    """Store the event and apply its consequence, in one transaction (joins the caller's if open)."""
    now = now or event.at or dt.datetime.now(dt.UTC)
    with transaction(conn):
        who = subscribers.get(conn, event.subscriber_id)
        if who is None:
            raise SubscriberError(f"no subscriber with id {event.subscriber_id}")
        if not insert_event(conn, event):
            return Outcome(duplicate=True, action="none", status=who.status)
        where = f"subscriber {who.id} ({event.source}{', ' + event.issue_id if event.issue_id else ''})"
        if event.kind == "complaint":
            if who.status != "unsubscribed":
                subscribers.unsubscribe(conn, who.id, commit=False)
                log_event(conn, "complaint.unsubscribe", issue_id=event.issue_id, detail=where)
                return Outcome(False, "unsubscribed", status="unsubscribed")
            return Outcome(False, "none", status=who.status)
        if event.kind == "hard":
            if who.status == "subscribed":
                subscribers.mark_bounced(conn, who.id, commit=False)
                log_event(conn, "bounce.suppress", issue_id=event.issue_id, detail=f"{where}: hard {event.code}")
                return Outcome(False, "suppressed", status="bounced")
            return Outcome(False, "none", status=who.status)
        score = soft_score(conn, who.id, policy, now)
        if who.status == "subscribed" and score >= policy.threshold:
            subscribers.mark_bounced(conn, who.id, commit=False)
            log_event(conn, "bounce.suppress", issue_id=event.issue_id,
                      detail=f"{where}: soft-bounce score {score:.2f} >= {policy.threshold}")
            return Outcome(False, "suppressed", score, status="bounced")
        return Outcome(False, "scored", score, status=who.status)


def complained(conn: Connection, subscriber_id: int) -> bool:
    """True once a complaint was recorded: such a subscriber is never resubscribed by a link or an import."""
    return has_complained(conn, subscriber_id)

"""Intake: each message of a bounce mailbox -> Verdict -> the subscribers it is about -> events; then moved.

A message is matched by its VERP address first, then by the original Message-ID (both signed by us,
so both prove which issue and subscriber it is about), then by the failed address alone. Whatever
cannot be used (malformed, about someone we never mailed, forged, too large) gets one line and is
moved to a folder a person can look at; nothing is ever deleted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from newsletter.store import Connection, ledger, subscribers
from newsletter.bounces.mailbox import MailItem, Mailbox
from newsletter.bounces.parse import BounceParseError, Verdict, classify
from newsletter.store.events import Event, latest_issue_for
from newsletter.bounces.suppression import Policy, record
from newsletter.bounces.verp import ForgedVerp, Verp
from newsletter.errors import SubscriberError
from newsletter.personalise import message_id_for

__all__ = ["PROCESSED_FOLDER", "REVIEW_FOLDER", "Refused", "Match", "Matcher", "ItemResult", "IntakeReport",
           "process_message", "fetch"]

PROCESSED_FOLDER = "newsletter-processed"
REVIEW_FOLDER = "newsletter-unrecognised"
_OUR_MESSAGE_ID = re.compile(r"^(?P<issue>\d{4}-\d{2}-\d{2}(?:-[a-z0-9-]+)?)\.(?P<sid>\d{1,12})\.[0-9a-f]{20}@(?P<domain>.+)$")


class Refused(Exception):
    """This message cannot be used; the text says why in one line."""


@dataclass(frozen=True)
class Match:
    subscriber_id: int
    issue_id: str | None
    address: str
    how: str  # verp | message-id | address


class Matcher:
    """Finds the subscribers a verdict is about, trusting only what we signed or what we mailed."""

    def __init__(self, conn: Connection, *, secret: str, verp: Verp | None) -> None:
        self.conn, self.secret, self.verp = conn, secret, verp

    def matches(self, verdict: Verdict) -> list[Match]:
        if self.verp is not None:
            for address in verdict.addressed_to:
                try:
                    target = self.verp.read(address)
                except ForgedVerp as exc:
                    raise Refused(str(exc)) from None
                if target is not None:
                    return [self._known(target.subscriber_id, target.issue_id, "verp")]
        if verdict.original_message_id:
            found = _OUR_MESSAGE_ID.match(verdict.original_message_id)
            if found:
                issue_id, sid = found.group("issue"), int(found.group("sid"))
                if message_id_for(self.secret, issue_id, sid, found.group("domain")) != verdict.original_message_id:
                    raise Refused(f"Message-ID <{verdict.original_message_id}> looks like ours but its signature "
                                  "does not match (forged)")
                return [self._known(sid, issue_id, "message-id")]
        if not verdict.recipients:
            raise Refused("it names no recipient we can match (no VERP address, Message-ID or address)")
        return [self._by_address(address) for address in verdict.recipients]

    def _known(self, subscriber_id: int, issue_id: str, how: str) -> Match:
        who = subscribers.get(self.conn, subscriber_id)
        if who is None or not ledger.has_row(self.conn, issue_id, subscriber_id):
            raise Refused(f"it is about subscriber {subscriber_id} and issue {issue_id}, which we never mailed")
        return Match(who.id, issue_id, who.email, how)

    def _by_address(self, address: str) -> Match:
        try:
            who = subscribers.find(self.conn, address)
        except SubscriberError:
            who = None
        if who is None:
            raise Refused(f"{address} is not on the list (a bounce for an address we never mailed)")
        issue_id = latest_issue_for(self.conn, who.id)
        if issue_id is None:
            raise Refused(f"{address} is on the list but was never sent an issue")
        return Match(who.id, issue_id, who.email, "address")


@dataclass(frozen=True)
class ItemResult:
    key: str
    line: str  # one line for the operator
    folder: str  # where the message was moved
    kind: str  # the verdict's kind, or "refused"
    counted: int = 0  # events recorded (new ones)


@dataclass(frozen=True)
class IntakeReport:
    items: tuple[ItemResult, ...]

    def count(self, kind: str) -> int:
        return sum(item.kind == kind for item in self.items)


def process_message(conn: Connection, item: MailItem, matcher: Matcher, *, policy: Policy,
                    source: str = "mailbox") -> ItemResult:
    """Classify and record one message; never raises for bad input (a database error does raise)."""
    if item.data is None:
        return ItemResult(item.key, f"{item.key}: {item.size / 1e6:.1f} MB is larger than a bounce can be; "
                          "not read", REVIEW_FOLDER, "refused")
    try:
        verdict = classify(item.data)
    except BounceParseError as exc:
        return ItemResult(item.key, f"{item.key}: not understood: {exc}", REVIEW_FOLDER, "refused")
    if not verdict.counted:
        if verdict.kind == "ignored" and verdict.reason.startswith("not a bounce"):
            return ItemResult(item.key, f"{item.key}: {verdict.reason}; left for a person", REVIEW_FOLDER, "ignored")
        return ItemResult(item.key, f"{item.key}: {verdict.kind}: {verdict.reason}; not counted", PROCESSED_FOLDER,
                          verdict.kind)
    try:
        matches = matcher.matches(verdict)
    except Refused as exc:
        return ItemResult(item.key, f"{item.key}: {verdict.kind} refused: {exc}", REVIEW_FOLDER, "refused")
    digest = hashlib.sha256(item.data).hexdigest()[:32]
    done, counted = [], 0
    for match in matches:
        outcome = record(conn, Event(match.subscriber_id, verdict.kind, source, issue_id=match.issue_id,
                                     code=verdict.status, diagnostic=verdict.diagnostic,
                                     ref=f"{digest}:{match.subscriber_id}"), policy=policy)
        counted += not outcome.duplicate
        what = "already recorded" if outcome.duplicate else outcome.action
        score = f" (score {outcome.score:.2f})" if verdict.kind == "soft" and not outcome.duplicate else ""
        done.append(f"{match.address} [{match.how}]: {what}{score}")
    code = f" {verdict.status}" if verdict.status else ""
    return ItemResult(item.key, f"{item.key}: {verdict.kind}{code}: " + "; ".join(done), PROCESSED_FOLDER,
                      verdict.kind, counted)


def fetch(conn: Connection, mailbox: Mailbox, matcher: Matcher, *, policy: Policy = Policy(),
          report: Callable[[ItemResult], None] | None = None, limit: int | None = None) -> IntakeReport:
    """Process every message in the mailbox, moving each once its result is committed."""
    results: list[ItemResult] = []
    items: Iterable[MailItem] = mailbox.messages()
    for index, item in enumerate(items):
        if limit is not None and index >= limit:
            break
        result = process_message(conn, item, matcher, policy=policy)
        conn.commit()  # the events are durable before the message leaves the inbox
        mailbox.move(item.key, result.folder)
        results.append(result)
        if report:
            report(result)
    return IntakeReport(tuple(results))

"""Fault injection for delivery tests: an aiosmtpd server that refuses, defers, drops or half-accepts mail.

Built on tests/smtp_servers.py (a real server on 127.0.0.1, never a mock of smtplib). A `Rule` picks
transactions by recipient pattern or by message number (the n-th MAIL command the server has seen,
retries and reconnects included) and says what goes wrong:

* a reply code: 421 (the reply is sent, then the connection is really closed), 450/451/452/454,
  550/551/553/554 — at RCPT time (the default) or after the message data (`stage="data"`);
* "530": authentication required, answered to MAIL FROM (a rule without a pattern hits everyone);
* "drop": the connection is closed in the middle of DATA, after the first line, with no reply;
* "accept-then-drop": the message is accepted and recorded, then the connection is closed before the
  250 reply — the RFC 1047 window, where the client cannot know the message got through.

The handler records every message it accepted (with its Message-ID), counts the faults it injected
per kind, and can be slowed down (`delay` for every message, `slow` for chosen recipients) so a
crash test can kill a client mid-run. With a tls_context it can also refuse STARTTLS itself
(`starttls_reply`, e.g. "454 4.7.0 TLS not available").

The second half holds small helpers to prepare a sample project for sending (compose, build,
approve, N subscribers) shared by the fault, crash-loop, storage and secrets tests.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import re
import shutil
import time
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, syntax
from smtp_servers import RecordingHandler, Server, _EphemeralController, smtp_server

__all__ = [
    "REPLIES",
    "KINDS",
    "Rule",
    "Injection",
    "FaultInjectingHandler",
    "fault_server",
    "REPO",
    "copy_sample_project",
    "write_subscribers_csv",
    "PreparedIssue",
    "prepare_issue",
]

#: The reply each code-kind answers with. Texts avoid the words that make the client stop the whole
#: run ("relay denied"); enhanced codes follow RFC 3463, so 550/551/553 are bounces and 554 5.7.1 is not.
REPLIES: dict[str, str] = {
    "421": "421 4.3.2 Service shutting down, closing transmission channel",
    "450": "450 4.2.1 Mailbox temporarily unavailable, try again later",
    "451": "451 4.3.0 Local error in processing, try again later",
    "452": "452 4.2.2 Insufficient system storage",
    "454": "454 4.7.0 Temporary authentication failure",
    "550": "550 5.1.1 Recipient address rejected: no such user",
    "551": "551 5.1.6 User not local; the mailbox has moved",
    "553": "553 5.1.3 Mailbox name not allowed",
    "554": "554 5.7.1 Message rejected as spam",
    "530": "530 5.7.0 Authentication required",
}
KINDS = (*REPLIES, "drop", "accept-then-drop")
_CLOSE_WAIT = 30.0  # connection_lost cancels the session long before this; it only bounds a hang


@dataclass
class Rule:
    """Inject `kind` into transactions for a recipient matching `recipient` (regex) and/or numbered `messages`.

    With neither, every transaction matches. `times` bounds how often the rule fires (None: always).
    `stage` ("rcpt" or "data") says when a reply-code fault answers; 421 closes the connection after it.
    """

    kind: str
    recipient: str | None = None
    messages: Collection[int] | None = None
    times: int | None = None
    stage: str = "rcpt"
    used: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if self.stage not in ("rcpt", "data"):
            raise ValueError("stage must be 'rcpt' or 'data'")

    @property
    def when(self) -> str:
        """The protocol step at which this rule acts: mail, rcpt, data-start (mid-DATA) or data (after it)."""
        if self.kind == "530":
            return "mail"
        if self.kind == "drop":
            return "data-start"
        if self.kind == "accept-then-drop":
            return "data"
        return self.stage

    def matches(self, when: str, address: str | None, number: int) -> bool:
        if self.when != when or (self.times is not None and self.used >= self.times):
            return False
        if self.messages is not None and number not in self.messages:
            return False
        return self.recipient is None or (address is not None and re.search(self.recipient, address) is not None)


@dataclass(frozen=True)
class Injection:
    """One fault the server injected: what, to whom, in which transaction, when."""

    kind: str
    recipient: str | None
    number: int
    at: float


class FaultInjectingHandler(RecordingHandler):
    """Records accepted messages (see RecordingHandler) and injects the faults its rules describe."""

    def __init__(self, rules: list[Rule] | None = None, *, delay: float = 0.0, slow: dict[str, float] | None = None,
                 starttls_reply: str | None = None) -> None:
        super().__init__()
        self.rules = list(rules or [])
        self.delay = delay
        self.slow = dict(slow or {})  # recipient regex -> extra seconds before answering DATA
        self.starttls_reply = starttls_reply
        self.injected: Counter[str] = Counter()
        self.injections: list[Injection] = []
        self.transactions = 0
        self.rcpt_attempts: Counter[str] = Counter()
        self.rcpt_times: dict[str, list[float]] = {}

    # -- bookkeeping -------------------------------------------------------------------------

    def accepted_ids(self) -> Counter[str]:
        """How many times each Message-ID was accepted (more than once = a duplicate delivery)."""
        return Counter(m.message_id for m in self.messages if m.message_id)

    def take(self, when: str, address: str | None, number: int) -> Rule | None:
        """The first rule that fires now (and count it), or None."""
        with self._lock:
            for rule in self.rules:
                if rule.matches(when, address, number):
                    rule.used += 1
                    self.injected[rule.kind] += 1
                    self.injections.append(Injection(rule.kind, address, number, time.monotonic()))
                    return rule
        return None

    @staticmethod
    async def hang_up(server: SMTP) -> None:
        """Close the connection and wait to be cancelled: the session ends without another reply."""
        assert server.transport is not None
        server.transport.close()
        # connection_lost() cancels the session task that is awaiting this; nothing after it runs.
        await asyncio.sleep(_CLOSE_WAIT)

    # -- SMTP hooks --------------------------------------------------------------------------

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        with self._lock:
            self.transactions += 1
            envelope.number = self.transactions
        rule = self.take("mail", None, envelope.number)
        if rule is not None:
            return REPLIES[rule.kind]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        with self._lock:
            self.rcpt_attempts[address] += 1
            self.rcpt_times.setdefault(address, []).append(time.monotonic())
        rule = self.take("rcpt", address, getattr(envelope, "number", 0))
        if rule is not None:
            if rule.kind == "421":
                await server.push(REPLIES["421"])
                await self.hang_up(server)
            return REPLIES[rule.kind]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        address = envelope.rcpt_tos[0] if envelope.rcpt_tos else None
        pause = self.delay + sum(seconds for pattern, seconds in self.slow.items()
                                 if address is not None and re.search(pattern, address))
        if pause:
            await asyncio.sleep(pause)
        rule = self.take("data", address, getattr(envelope, "number", 0))
        if rule is None:
            return await super().handle_DATA(server, session, envelope)
        if rule.kind == "accept-then-drop":
            await super().handle_DATA(server, session, envelope)  # recorded: the message got through
            await self.hang_up(server)
        if rule.kind == "421":
            await server.push(REPLIES["421"])
            await self.hang_up(server)
        return REPLIES[rule.kind]

    def drop_mid_data(self, envelope: Any) -> bool:
        address = envelope.rcpt_tos[0] if envelope.rcpt_tos else None
        return self.take("data-start", address, getattr(envelope, "number", 0)) is not None


class _FaultySMTP(SMTP):
    """aiosmtpd's SMTP, able to hang up in the middle of the message data and to refuse STARTTLS
    (no handler hook exists for either)."""

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        reply = getattr(self.event_handler, "starttls_reply", None)
        if reply and not arg:
            await self.push(reply)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_DATA(self, arg: str) -> None:
        handler = self.event_handler
        ready = self.envelope is not None and self.envelope.rcpt_tos and not arg and self.session.host_name
        if ready and isinstance(handler, FaultInjectingHandler) and handler.drop_mid_data(self.envelope):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")  # the first line of the message arrives; then the line goes dead
            await handler.hang_up(self)
            return
        await super().smtp_DATA(arg)


class _FaultController(_EphemeralController):
    def factory(self) -> SMTP:
        return _FaultySMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def fault_server(handler: FaultInjectingHandler | None = None, **smtp_kwargs: Any) -> Iterator[Server]:
    """A plain SMTP server on 127.0.0.1 (ephemeral port) driven by `handler`; kwargs go to aiosmtpd.SMTP."""
    with smtp_server(handler or FaultInjectingHandler(), controller_class=_FaultController, **smtp_kwargs) as server:
        yield server


# --- a sample project ready to send ---------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def copy_sample_project(root: Path) -> Path:
    """The bundled content, templates and settings in `root` (created), with no issues yet."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "content", root / "content")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    (root / "issues").mkdir(exist_ok=True)
    return root


def write_subscribers_csv(path: Path, count: int, *, domain: str = "example.org") -> list[str]:
    """A CSV of `count` subscribers r0001@domain... with names; returns the addresses in order."""
    addresses = [f"r{i:04d}@{domain}" for i in range(1, count + 1)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        for i, address in enumerate(addresses, start=1):
            writer.writerow([address, f"Reader {i}"])
    return addresses


@dataclass(frozen=True)
class PreparedIssue:
    folder: Path
    addresses: tuple[str, ...] = field(default=())


def prepare_issue(settings: Any, *, date: dt.date = dt.date(2026, 11, 25), subscribers_csv: Path | None = None,
                  limit: int | None = None, approve_it: bool = True) -> PreparedIssue:
    """Compose + build (+ approve) the issue for `date` and import subscribers (the sample list by default)."""
    from newsletter.store import sqlite as db, subscribers
    from newsletter.approval import approve
    from newsletter.jobs.issues import build, compose

    issue = compose(settings, date=date, limit=limit)
    build(settings, issue.folder)
    if approve_it:
        approve(issue.folder)
    csv_path = subscribers_csv or settings.root / "content" / "subscribers.csv"
    conn = db.connect(settings.path(settings.database))
    try:
        report = subscribers.import_csv(conn, csv_path)
        assert report.ok, report.errors
        addresses = tuple(s.email for s in subscribers.list_subscribers(conn))
    finally:
        conn.close()
    return PreparedIssue(issue.folder, addresses)


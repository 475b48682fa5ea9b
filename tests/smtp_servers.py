"""Real aiosmtpd servers on 127.0.0.1 (ephemeral ports) for tests: recording, STARTTLS, fault-injecting."""

from __future__ import annotations

import re
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.headers import encode_header, format_address
from newsletter.models import Message, Subscriber

__all__ = [
    "Received",
    "RecordingHandler",
    "Fault",
    "FaultHandler",
    "Server",
    "smtp_server",
    "starttls_server",
    "smtps_server",
    "simple_message",
]

SENDER = "news@example.com"


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None
    peer: tuple[str, int] | None = None  # the client's address: one per connection


class RecordingHandler:
    """Accepts everything and records every message (thread-safe reads via `messages`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Received] = []

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    @property
    def message_ids(self) -> list[str | None]:
        return [m.message_id for m in self.messages]

    def recipients(self) -> Counter[str]:
        """How many times each recipient was delivered to."""
        return Counter(r for m in self.messages for r in m.rcpt_tos)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        headers = BytesHeaderParser().parsebytes(data)
        message_id = headers.get("Message-ID")
        with self._lock:
            self._messages.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=data,
                    message_id=message_id.strip().strip("<>") if message_id else None,
                    peer=tuple(session.peer[:2]) if session.peer else None,
                )
            )
        return "250 2.0.0 OK queued"


@dataclass
class Fault:
    """Answer `reply` to RCPT for recipients matching `pattern` (regex), the first `times` times (None: always)."""

    pattern: str
    reply: str
    times: int | None = None
    used: int = field(default=0)

    def applies(self, address: str) -> bool:
        if not re.search(self.pattern, address):
            return False
        return self.times is None or self.used < self.times


class FaultHandler(RecordingHandler):
    """A recording server that refuses chosen recipients (RCPT faults) or every sender (`mail_reply`)."""

    def __init__(self, faults: list[Fault] | None = None, *, mail_reply: str | None = None) -> None:
        super().__init__()
        self.faults = list(faults or [])
        self.mail_reply = mail_reply
        self.rcpt_attempts: Counter[str] = Counter()
        self.mail_attempts = 0

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        with self._lock:
            self.mail_attempts += 1
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        with self._lock:
            self.rcpt_attempts[address] += 1
            for fault in self.faults:
                if fault.applies(address):
                    fault.used += 1
                    return fault.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"


class _EphemeralController(Controller):
    """A Controller bound to port 0: the real port is read back before the startup probe."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    handler: RecordingHandler
    ca_path: Path | None = None

    def url(self, scheme: str = "smtp", query: str = "", user: str | None = None) -> str:
        who = f"{user}@" if user else ""
        return f"{scheme}://{who}{self.host}:{self.port}" + (f"?{query}" if query else "")


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        # handled=False lets aiosmtpd answer "535 5.7.8 Authentication credentials invalid" itself.
        return AuthResult(success=self.users.get(login) == password, handled=False)


@contextmanager
def smtp_server(handler: RecordingHandler | None = None, *, controller_class: type[Controller] | None = None,
                **smtp_kwargs: Any) -> Iterator[Server]:
    """A plain SMTP server (no STARTTLS) recording what it accepts; extra kwargs go to aiosmtpd.SMTP."""
    handler = handler or RecordingHandler()
    controller = (controller_class or _EphemeralController)(
        handler, hostname="127.0.0.1", port=0, server_hostname="localhost", ready_timeout=5.0, **smtp_kwargs
    )
    controller.start()
    try:
        yield Server("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


def _tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return context, ca_path


@contextmanager
def starttls_server(
    tmp_path: Path,
    handler: RecordingHandler | None = None,
    *,
    users: dict[str, str] | None = None,
    **smtp_kwargs: Any,
) -> Iterator[Server]:
    """A server offering STARTTLS with a cert from a fresh test CA; `server.ca_path` is the CA PEM."""
    context, ca_path = _tls(tmp_path)
    if users is not None:
        smtp_kwargs["authenticator"] = _Authenticator(users)
    with smtp_server(handler, tls_context=context, require_starttls=True, **smtp_kwargs) as server:
        yield Server(server.host, server.port, server.handler, ca_path)


@contextmanager
def smtps_server(tmp_path: Path, handler: RecordingHandler | None = None) -> Iterator[Server]:
    """An implicit-TLS (smtps) server with a cert from a fresh test CA."""
    context, ca_path = _tls(tmp_path)
    handler = handler or RecordingHandler()
    controller = _EphemeralController(
        handler, hostname="127.0.0.1", port=0, server_hostname="localhost", ready_timeout=5.0, ssl_context=context
    )
    controller.start()
    try:
        yield Server("127.0.0.1", controller.port, handler, ca_path)
    finally:
        controller.stop()


def simple_message(issue_id: str, subscriber: Subscriber, *, sender: str = SENDER) -> Message:
    """A small valid RFC 5322 message (CRLF) with a deterministic Message-ID per (issue, subscriber)."""
    message_id = f"{issue_id}.{subscriber.id}@newsletter.test"
    lines = [
        f"From: {format_address('Newsletter', sender, header='From')}",
        f"To: {format_address(subscriber.name, subscriber.email, header='To', smtputf8=True)}",
        f"Subject: {encode_header('Subject', f'Issue {issue_id} for {subscriber.name or subscriber.email}')}",
        f"Message-ID: <{message_id}>",
        "Date: Mon, 06 May 2024 12:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"Hello {subscriber.name or 'reader'},",
        "",
        ".a line starting with a dot",
        "Bye.",
        "",
    ]
    return Message(
        issue_id=issue_id,
        recipient=subscriber.email,
        sender=sender,
        message_id=message_id,
        data="\r\n".join(lines).encode("utf-8"),
    )

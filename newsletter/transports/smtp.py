"""An SMTP transport (smtp:// with required STARTTLS, smtps://): one reused, verified connection."""

from __future__ import annotations

import base64
import ipaddress
import re
import smtplib
import socket
import ssl
from typing import Literal

from newsletter.errors import (
    ConfigError,
    ConnectionRefusedForAll,
    DeliveryError,
    PermanentDeliveryError,
    RecipientBounced,
    TransientDeliveryError,
)
from newsletter.models import Message
from newsletter.transports import TransportBase, register
from newsletter.transports.smtp_replies import is_bounce
from newsletter.transports.smtp_url import PASSWORD_ENV, parse_smtp_url
from newsletter.transports.smtp_wire import send_message

__all__ = ["SMTPTransport", "PASSWORD_ENV"]

TLSMode = Literal["starttls", "implicit", "off"]

# Replies that mean "nothing you send will get through": stop the run instead of failing every subscriber.
_REFUSE_ALL_CODES = frozenset({530, 534, 535, 538})
_RELAY_DENIED = re.compile(r"relay(?:ing)?\b.{0,20}\b(?:denied|not permitted|prohibited|not allowed)", re.IGNORECASE)


class _Reconnect(Exception):
    """The connection dropped (or the server said 421): worth one reconnect."""

    def __init__(self, code: int | None, text: str) -> None:
        self.code = code
        self.text = text
        super().__init__(text)


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


class _NoDelay:
    """An smtplib session on a socket with Nagle's algorithm off."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        # Over TLS a message leaves as several records, the last one small; with Nagle on, the kernel
        # holds it until the server ACKs the one before, which Linux delays by 40 ms (issue 19).
        # STARTTLS wraps this same descriptor later, so the option holds for the whole session.
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class _SMTP(_NoDelay, smtplib.SMTP):
    pass


class _SMTP_SSL(_NoDelay, smtplib.SMTP_SSL):
    pass


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SMTPTransport(TransportBase):
    """Sends each message with its own envelope (one recipient) over one connection, opened lazily."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: TLSMode = "starttls",
        user: str | None = None,
        password: str | None = None,
        cafile: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if user and not password:
            raise ConfigError(f"SMTP user {user!r} is set but the password is not", key=PASSWORD_ENV)
        if user and tls == "off" and not _is_loopback(host):
            raise ConfigError("refusing to send the SMTP password in clear text (remove ?starttls=off)",
                              key="transport")
        self.host, self.port, self.tls, self.user = host, port, tls, user
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._password = password
        self._context = ssl_context
        if tls != "off" and ssl_context is None:
            try:
                self._context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load CA file {cafile}: {exc}", key="cafile") from exc
        self._smtp: smtplib.SMTP | None = None

    def __repr__(self) -> str:  # never the password
        return f"SMTPTransport({self.host}:{self.port}, tls={self.tls}, user={self.user!r})"

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Open, secure and authenticate the connection now (send() does it on first use)."""
        if self._smtp is None:
            self._smtp = self._open()

    def _refused(self, what: str) -> ConnectionRefusedForAll:
        return ConnectionRefusedForAll(f"{self.host}:{self.port}: {what}")

    def _cert_error(self, exc: ssl.SSLCertVerificationError) -> ConnectionRefusedForAll:
        detail = exc.verify_message or exc.reason or str(exc)
        return ConnectionRefusedForAll(
            f"certificate verify failed for {self.host}: {detail} (use ?cafile= to trust a private CA)"
        )

    def _open(self) -> smtplib.SMTP:
        try:
            if self.tls == "implicit":
                smtp: smtplib.SMTP = _SMTP_SSL(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout,
                    context=self._context,
                )
            else:
                smtp = _SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
        except ssl.SSLCertVerificationError as exc:
            raise self._cert_error(exc) from exc
        except ssl.SSLError as exc:
            raise self._refused(f"TLS handshake failed: {exc}") from exc
        except smtplib.SMTPConnectError as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError(f"server busy: {_text(exc.smtp_error)}", code=exc.smtp_code) from exc
            raise self._refused(f"connection refused: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self._refused(f"cannot connect: {getattr(exc, 'strerror', None) or exc}") from exc
        try:
            self._start_session(smtp)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _start_session(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise self._refused(
                        "server does not offer STARTTLS; refusing to send in clear text (add ?starttls=off to allow)"
                    )
                smtp.starttls(context=self._context)
                smtp.ehlo()
            if self.user:
                if not smtp.has_extn("auth"):
                    raise self._refused("server does not offer AUTH (check the port and TLS settings)")
                self._login(smtp)
        except ssl.SSLCertVerificationError as exc:
            raise self._cert_error(exc) from exc
        except ssl.SSLError as exc:
            raise self._refused(f"TLS handshake failed: {exc}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise self._refused(
                f"authentication failed for user {self.user!r}: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError(_text(exc.smtp_error), code=exc.smtp_code) from exc
            raise self._refused(f"{exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self._refused(f"session setup failed: {exc}") from exc

    def _login(self, smtp: smtplib.SMTP) -> None:
        """AUTH; smtplib encodes credentials as ASCII (a UnicodeEncodeError that shows a character of the
        password and its position), so non-ASCII ones go as UTF-8 with AUTH PLAIN, which RFC 4616 allows."""
        user, password = self.user or "", self._password or ""
        if (user + password).isascii():
            smtp.login(user, password)
            return
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if "PLAIN" not in offered:
            raise self._refused("the SMTP user name or password has non-ASCII characters, which only AUTH PLAIN "
                                f"can carry, and the server offers {' '.join(offered) or 'no mechanism'}")
        response = base64.b64encode(b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")).decode("ascii")
        code, reply = smtp.docmd("AUTH", "PLAIN " + response)
        if code == 334:  # a server that wants the response on its own line
            code, reply = smtp.docmd(response)
        if code not in (235, 503):
            raise smtplib.SMTPAuthenticationError(code, reply)

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            # QUIT is a courtesy; the socket is closed either way.
            smtp.close()

    # -- sending ------------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Deliver one message; reconnects once if the connection dropped or the server said 421."""
        for attempt in (1, 2):
            self.connect()
            assert self._smtp is not None
            try:
                self._transaction(self._smtp, message)
                return
            except _Reconnect as exc:
                self._drop()
                if attempt == 2:
                    raise TransientDeliveryError(exc.text, code=exc.code, recipient=message.recipient) from exc

    def _transaction(self, smtp: smtplib.SMTP, message: Message) -> None:
        options: list[str] = []
        if not (message.sender + message.recipient).isascii():
            if not smtp.has_extn("smtputf8"):
                raise PermanentDeliveryError(
                    "server does not support SMTPUTF8 (needed for this address)", recipient=message.recipient
                )
            options.append("SMTPUTF8")
        if not message.data.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        limit = smtp.esmtp_features.get("size", "")
        if limit.isdigit() and 0 < int(limit) < len(message.data):  # RFC 1870: SIZE 0 means no limit
            raise PermanentDeliveryError(
                f"message is {len(message.data):,} bytes; the server accepts at most {int(limit):,} (SIZE)",
                recipient=message.recipient,
            )
        try:
            send_message(smtp, message.sender, message.recipient, message.data, options,
                         pipelining=smtp.has_extn("pipelining"), payload=message.payload)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (0, b"recipient refused"))
            raise self._reply_error(code, _text(reply), message.recipient) from exc
        except smtplib.SMTPSenderRefused as exc:
            error = self._reply_error(exc.smtp_code, _text(exc.smtp_error), message.recipient)
            # 552 to MAIL FROM ... SIZE=n is about this message's size (RFC 1870), not the sender.
            if isinstance(error, PermanentDeliveryError) and exc.smtp_code != 552:
                # A refused envelope sender is refused for every recipient.
                error = self._refused(f"server refuses the sender {message.sender}: {error.reason}")
            raise error from exc
        except smtplib.SMTPResponseException as exc:  # SMTPDataError and friends
            text = _text(exc.smtp_error)
            if exc.smtp_code == 552:  # servers word it differently ("message file too big"): give the size too
                text += f" (message of {len(message.data):,} bytes)"
            raise self._reply_error(exc.smtp_code, text, message.recipient) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Reconnect(None, f"connection to {self.host}:{self.port} lost: {exc}") from exc
        except smtplib.SMTPException as exc:
            # Nothing final is known about this recipient: leave it for the next run.
            raise TransientDeliveryError(str(exc), recipient=message.recipient) from exc

    def _reply_error(self, code: int, text: str, recipient: str) -> DeliveryError | _Reconnect:
        if code == 421:
            return _Reconnect(code, text)
        if code in _REFUSE_ALL_CODES or (code >= 500 and _RELAY_DENIED.search(text)):
            return self._refused(f"{code} {text}")
        if 400 <= code < 500:
            return TransientDeliveryError(text, code=code, recipient=recipient)
        if 500 <= code < 600:
            kind = RecipientBounced if is_bounce(code, text) else PermanentDeliveryError
            return kind(text, code=code, recipient=recipient)
        return TransientDeliveryError(f"unexpected reply: {text}", code=code, recipient=recipient)


@register("smtp")
@register("smtps")
def _open(
    url: str,
    *,
    password: str | None = None,
    timeout: float | None = None,
    local_hostname: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> SMTPTransport:
    kwargs = parse_smtp_url(url)
    if timeout is not None:
        kwargs["timeout"] = timeout
    return SMTPTransport(
        **kwargs,  # type: ignore[arg-type]
        password=password,
        local_hostname=local_hostname,
        ssl_context=ssl_context,
    )

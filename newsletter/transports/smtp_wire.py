"""One message's SMTP exchange, written and read with little Python per message.

The session (connect, EHLO, STARTTLS, AUTH, QUIT) stays smtplib's: it happens once per connection.
What happens for every message (MAIL, RCPT, DATA, the body, their replies) is done here on the same
socket and the same buffered reader smtplib uses, with the same exceptions smtplib.sendmail raises,
so the transport maps replies to typed errors as before. Per message this skips smtplib's address
parser (`quoteaddr` runs the RFC 2822 parser on both addresses), its per-command formatting and
reply bookkeeping, and `bytes.replace` for dot-stuffing (two passes over a 50 KB body); see
benchmarks/README.md for the figures.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Sequence

__all__ = ["quote_address", "payload_parts", "send_message"]

_MAXLINE = 8192  # smtplib's bound on a reply line
_IOV_MAX = 1000  # pieces per sendmsg (Linux allows 1024); a body with more dotted lines is joined instead
_LEADING_DOT = re.compile(rb"\n\.")
# A bare addr-spec whose local part and domain are dot-atoms of ASCII atext: smtplib.quoteaddr gives
# "<address>" for these, so the parser is skipped. Anything else (a display name, quotes, comments,
# brackets, non-ASCII) still goes through smtplib.quoteaddr.
_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_BARE_ADDRESS = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}")


def quote_address(address: str) -> str:
    """What smtplib.quoteaddr(address) returns, without running the address parser for a bare address."""
    if _BARE_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _write(smtp: smtplib.SMTP, data: bytes) -> None:
    """smtplib.SMTP.send for bytes: the same errors, none of its per-call formatting."""
    sock = smtp.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("please run connect() first")
    try:
        sock.sendall(data)
    except OSError:
        smtp.close()
        raise smtplib.SMTPServerDisconnected("Server not connected") from None


def _reply(smtp: smtplib.SMTP) -> tuple[int, bytes]:
    """smtplib.SMTP.getreply (same result and errors) on the same buffered reader, so no byte is lost
    between this and smtplib's own commands (RSET, QUIT)."""
    file = smtp.file
    if file is None:
        if smtp.sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        file = smtp.file = smtp.sock.makefile("rb")
    lines = []
    while True:
        try:
            line = file.readline(_MAXLINE + 1)
        except OSError as exc:
            smtp.close()
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed: " + str(exc)) from None
        if not line:
            smtp.close()
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        if len(line) > _MAXLINE:
            smtp.close()
            raise smtplib.SMTPResponseException(500, "Line too long.")
        lines.append(line[4:].strip(b" \t\r\n"))
        try:
            code = int(line[:3])
        except ValueError:
            return -1, b"\n".join(lines)
        if line[3:4] != b"-":
            return code, b"\n".join(lines)


def _rset(smtp: smtplib.SMTP) -> None:
    try:
        smtp.rset()
    except smtplib.SMTPServerDisconnected:
        pass  # the next send reconnects


def _refuse(smtp: smtplib.SMTP, code: int, error: smtplib.SMTPException) -> smtplib.SMTPException:
    """Leave the session clean after a refusal (421: the server is closing), and return the error to raise."""
    if code == 421:
        smtp.close()
    else:
        _rset(smtp)
    return error


def send_message(smtp: smtplib.SMTP, sender: str, recipient: str, data: bytes, options: Sequence[str], *,
                 pipelining: bool, payload: Sequence[bytes] | None = None) -> None:
    """Send one message to one recipient; raise what smtplib.sendmail raises for the same replies.

    With `pipelining` (only when the server offers PIPELINING, RFC 2920) MAIL, RCPT and DATA leave in
    one write and their three replies are read in order: on any refusal the body is not sent (or, if
    the server said 354 anyway, an empty one ends the data) and RSET leaves the session clean. Without
    it each command waits for its reply, as smtplib.sendmail does (which also RSETs after a refused
    DATA, so the next message starts from a clean session).

    `payload`: `data` already dot-stuffed, with the end-of-data line (models.Message.payload, made once per
    issue by the personaliser); without it the body is scanned here (payload_parts).
    """
    for address in (sender, recipient):
        if "\r" in address or "\n" in address:
            raise ValueError("address contains CR or LF")
    if smtp.has_extn("size"):
        options = [*options, f"SIZE={len(data)}"]
    encoding = "ascii"
    if "SMTPUTF8" in options:
        smtp.command_encoding = encoding = "utf-8"  # as smtplib's mail() does
    mail = f"MAIL FROM:{quote_address(sender)}{''.join(' ' + option for option in options)}\r\n".encode(encoding)
    rcpt = f"RCPT TO:{quote_address(recipient)}\r\n".encode(encoding)
    if pipelining:
        _write(smtp, mail + rcpt + b"DATA\r\n")
        parts = list(payload) if payload is not None else payload_parts(data)  # while the server reads the envelope
        _pipelined_replies(smtp, sender, recipient)
    else:
        _write(smtp, mail)
        code, reply = _reply(smtp)
        if code != 250:
            raise _refuse(smtp, code, smtplib.SMTPSenderRefused(code, reply, sender))
        _write(smtp, rcpt)
        code, reply = _reply(smtp)
        if code not in (250, 251):
            raise _refuse(smtp, code, smtplib.SMTPRecipientsRefused({recipient: (code, reply)}))
        _write(smtp, b"DATA\r\n")
        parts = list(payload) if payload is not None else payload_parts(data)
        code, reply = _reply(smtp)
        if code != 354:
            raise _refuse(smtp, code, smtplib.SMTPDataError(code, reply))
    _write_parts(smtp, parts)
    code, reply = _reply(smtp)
    if code != 250:
        raise _refuse(smtp, code, smtplib.SMTPDataError(code, reply))


def payload_parts(data: bytes) -> list[bytes | memoryview]:
    """The dot-stuffed body and the end-of-data line: slices of `data` (no copy of the body) with the doubled
    dots and the terminator between them. Joined, they are what smtplib sends: `re.sub(rb"(?m)^\\.", b"..", data)`
    + CRLF.CRLF (just `.CRLF` after a body ending in CRLF). Written with one `sendmsg`, this spares the two
    copies of the ~57 KB body that `re.sub` and the terminator's `+` made. The scan's pattern starts with a
    literal LF, which lets the regex engine skip from LF to LF (`bytes.replace(b"\\n.", ...)` scans the body
    twice at ~1 ns a byte: ~100 µs for 57 KB against ~20 µs). Built after the command before it has left, so
    the scan overlaps the server's work."""
    view = memoryview(data)
    parts: list[bytes | memoryview] = [b"."] if data[:1] == b"." else []
    start = 0
    for match in _LEADING_DOT.finditer(data):
        cut = match.start() + 1  # after the LF: the dot that starts the line is doubled
        parts += (view[start:cut], b".")
        start = cut
    parts.append(view[start:])
    parts.append(b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")
    return parts


def _write_parts(smtp: smtplib.SMTP, parts: list[bytes] | list[bytes | memoryview]) -> None:
    """`_write` of the pieces joined: gathered by sendmsg on a plain socket, joined once over TLS."""
    sock = smtp.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("please run connect() first")
    try:
        if isinstance(sock, ssl.SSLSocket) or len(parts) > _IOV_MAX:
            sock.sendall(b"".join(parts))
            return
        while True:
            sent = sock.sendmsg(parts)  # on a socket with a timeout: waits until writable, may send less
            while parts and sent >= len(parts[0]):
                sent -= len(parts[0])
                del parts[0]
            if not parts:
                return
            parts[0] = memoryview(parts[0])[sent:]
    except OSError:
        smtp.close()
        raise smtplib.SMTPServerDisconnected("Server not connected") from None


def _pipelined_replies(smtp: smtplib.SMTP, sender: str, recipient: str) -> None:
    """The replies to MAIL, RCPT and DATA, in order; a refusal raised once the session is clean again."""
    refusals = (
        lambda code, reply: smtplib.SMTPSenderRefused(code, reply, sender),
        lambda code, reply: smtplib.SMTPRecipientsRefused({recipient: (code, reply)}),
        lambda code, reply: smtplib.SMTPDataError(code, reply),
    )
    refused: smtplib.SMTPException | None = None
    code = 0
    for wanted, refusal in zip(((250,), (250, 251), (354,)), refusals):
        code, reply = _reply(smtp)
        if code == 421:  # the server is closing: the replies after this one will never come
            smtp.close()
            raise refusal(code, reply)
        if refused is None and code not in wanted:
            refused = refusal(code, reply)
    if refused is not None:
        if code == 354:  # DATA accepted after a refused MAIL or RCPT: end it with nothing in it
            _write(smtp, b".\r\n")
            _reply(smtp)
        _rset(smtp)
        raise refused

"""The pieces of the DATA payload (newsletter.transports.smtp_wire.payload_parts) against smtplib's own
dot-stuffing, and written by sendmsg to a real socket, including writes the kernel takes only in part."""

from __future__ import annotations

import random
import re
import smtplib
import socket
import threading

from newsletter.transports.smtp_wire import _write_parts, payload_parts


def _smtplib_payload(data: bytes) -> bytes:
    """What smtplib.SMTP.data sends for `data` after the DATA command's 354."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    return body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n")


def test_payload_parts_join_to_smtplibs_payload() -> None:
    rng = random.Random(7)
    samples = [bytes(rng.choice(b".\r\na") for _ in range(rng.randint(0, 40))) for _ in range(5000)]
    samples += [b"", b".", b"..", b"\n.", b"\r\n", b".\r\n.\r\n", b"a\r\n.\r\n.b\r\n", b"x\n.\n.\n."]
    for data in samples:
        assert b"".join(payload_parts(data)) == _smtplib_payload(data), data


class _Session:
    """Enough of smtplib.SMTP for _write_parts: a socket, and close()."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def test_write_parts_sends_every_byte_even_when_the_kernel_takes_part() -> None:
    # A small send buffer and a slow reader: sendmsg returns having sent part of a piece, many times over.
    body = b"".join((b"." if n % 7 == 0 else b"") + b"line %d of the body\r\n" % n for n in range(40_000))
    parts = payload_parts(body)
    assert len(parts) > 1000  # more pieces than one sendmsg takes: joined instead
    few = payload_parts(body[:60_000])
    assert len(few) < 1000
    for pieces in (parts, few):
        wanted = b"".join(pieces)
        left, right = socket.socketpair()
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        left.settimeout(5.0)  # as smtplib's sockets: a timeout, so sendmsg may send part and return
        got = bytearray()

        def read() -> None:
            while chunk := right.recv(1500):
                got.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        session = _Session(left)
        _write_parts(session, list(pieces))  # type: ignore[arg-type]
        left.shutdown(socket.SHUT_WR)
        reader.join(timeout=10)
        left.close()
        right.close()
        assert bytes(got) == wanted


def test_write_parts_on_a_closed_connection_is_smtplibs_disconnect() -> None:
    left, right = socket.socketpair()
    right.close()
    session = _Session(left)
    try:
        for _ in range(50):  # the peer is gone: EPIPE on a write (or ECONNRESET)
            _write_parts(session, payload_parts(b"x" * 100_000))  # type: ignore[arg-type]
    except smtplib.SMTPServerDisconnected:
        assert session.sock is None
    else:
        raise AssertionError("writing to a closed peer did not fail")

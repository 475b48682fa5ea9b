"""The lean per-message SMTP path (newsletter/transports/smtp_wire.py) against Postfix's smtp-sink on 127.0.0.1.

smtp-sink offers PIPELINING unless told to refuse a command (-f hard, -r soft: those imply no PIPELINING,
so they exercise the command-by-command path); -q (drop the connection without a reply) keeps
PIPELINING, so the drop at each pipelined step is tested here. Refusals at each *pipelined* step are in
tests/test_pipelining.py (a scripted server), and the same path against aiosmtpd in tests/test_transports.py.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from smtp_servers import simple_message

from newsletter.errors import (
    ConnectionRefusedForAll,
    PermanentDeliveryError,
    RecipientBounced,
    TransientDeliveryError,
)
from newsletter.models import Subscriber
from newsletter.transports import open_transport
from newsletter.transports.smtp_wire import quote_address

ISSUE = "2026-12-04"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
needs_sink = pytest.mark.skipif(not Path(SMTP_SINK).exists(),
                                reason="Postfix's smtp-sink is not installed (apt-get install postfix)")


# -- the pieces, against what smtplib does ----------------------------------------------------------


def test_quote_address_is_smtplibs_quoteaddr() -> None:
    atext = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
    rng = random.Random(7)
    generated = [
        ".".join("".join(rng.choice(atext) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3)))
        + "@" + ".".join("".join(rng.choice(atext) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3)))
        for _ in range(2000)
    ]
    odd = ["reader@example.org", "Zoë <zoe@example.org>", "<a@b.example>", '"quoted local"@example.org',
           "a..b@example.org", ".a@example.org", "a.@example.org", "a@[192.0.2.1]", "a b@example.org",
           "a(comment)@example.org", "zoë@exämple.org", "@example.org", "a@", "", "a@b@c", "a,b@example.org",
           "a;b@example.org", "a:b@example.org", "a\\b@example.org", " a@example.org", "a@example.org "]
    for address in generated + odd:
        assert quote_address(address) == smtplib.quoteaddr(address), address


# -- against smtp-sink -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sink(tmp_path: Path, *options: str) -> Iterator[tuple[int, Path]]:
    """smtp-sink on 127.0.0.1:<free port>, dumping each message into a folder; stopped by its pid."""
    port, dumps = _free_port(), tmp_path / f"dump-{len(list(tmp_path.iterdir()))}"
    dumps.mkdir()
    argv = [SMTP_SINK, "-u", "root", "-d", f"{dumps}/%H%M%S.", *options, f"127.0.0.1:{port}", "10"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"smtp-sink did not start: {proc.stderr.read() if proc.stderr else ''}")
                time.sleep(0.05)
        yield port, dumps
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def _message(n: int, email_address: str | None = None):
    return simple_message(ISSUE, Subscriber(id=n, email=email_address or f"reader{n}@example.com", name=f"Reader {n}"))


def _transport(port: int):
    return open_transport(f"smtp://127.0.0.1:{port}?starttls=off", timeout=5.0)


def _dumped(dumps: Path, count: int) -> list[bytes]:
    deadline = time.monotonic() + 5
    while len(files := sorted(dumps.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [f.read_bytes() for f in files]


@needs_sink
def test_pipelined_messages_arrive_byte_for_byte(tmp_path: Path) -> None:
    dots = dataclasses.replace(_message(3), data=b".first line is a dot\r\n" + _message(3).data + b".\r\n..\r\nend")
    messages = [_message(1), _message(2), dots]
    with sink(tmp_path) as (port, dumps):
        transport = _transport(port)
        transport.connect()  # type: ignore[attr-defined]
        assert transport._smtp.has_extn("pipelining")  # type: ignore[attr-defined]
        for message in messages:
            transport.send(message)
        transport.close()
        got = _dumped(dumps, 3)
    assert len(got) == 3
    for message in messages:
        wanted = message.data.replace(b"\r\n", b"\n")
        if not wanted.endswith(b"\n"):
            wanted += b"\n"  # the client ends the data with CRLF . CRLF
        assert any(d.endswith(wanted + b"\n") and f"X-Rcpt-Args: <{message.recipient}>".encode() in d
                   for d in got), message.recipient


@needs_sink
def test_a_personalised_payload_arrives_byte_for_byte(tmp_path: Path) -> None:
    """The DATA payload the personaliser stuffed once per issue (models.Message.payload), not the transport's
    scan, is what goes out: lines starting with dots in the issue and in a recipient's greeting arrive intact."""
    from newsletter.models import RenderedEmail
    from newsletter.personalise import Personaliser
    from newsletter.render import PLACEHOLDERS

    g, u = PLACEHOLDERS["greeting"], PLACEHOLDERS["unsubscribe_url"]
    issue = RenderedEmail(ISSUE, "Dots", "", html=f"<p>{g}</p>\n.<a href=\"{u}\">leave</a>\n..\n.",
                          text=f"{g}\n.one dot\n..two\n{u}\n.")
    personaliser = Personaliser(issue, sender_name="MS Research", sender_email="news@example.org",
                                list_id="news.example.org", public_base_url="https://example.org/nl", secret="k")
    messages = [personaliser.message(Subscriber(id=n, email=f"reader{n}@example.com", first_name=first))
                for n, first in ((1, "Ann"), (2, ". " * 60))]
    assert all(m.payload is not None for m in messages)
    with sink(tmp_path) as (port, dumps):
        transport = _transport(port)
        for message in messages:
            transport.send(message)
        transport.close()
        got = _dumped(dumps, 2)
    for message in messages:
        assert any(d.endswith(message.data.replace(b"\r\n", b"\n") + b"\n") for d in got), message.recipient


@needs_sink
@pytest.mark.parametrize("step", ["mail", "rcpt", "data", "."])
def test_dropped_connection_at_each_pipelined_step_is_transient(tmp_path: Path, step: str) -> None:
    with sink(tmp_path, "-q", step) as (port, dumps):
        transport = _transport(port)
        transport.connect()  # type: ignore[attr-defined]
        assert transport._smtp.has_extn("pipelining")  # type: ignore[attr-defined]
        for n in (1, 2):  # reconnects once per message, and the next message starts afresh
            with pytest.raises(TransientDeliveryError, match="connection to 127.0.0.1:.* lost") as info:
                transport.send(_message(n))
            assert info.value.recipient == f"reader{n}@example.com"
        transport.close()
        if step != ".":  # before the end of the data, no body reached the server
            assert not any(b"Hello Reader" in dump for dump in _dumped(dumps, 0))


# (smtp-sink option, the command refused, its reply, the error the transport raises)
REFUSALS = [
    ("-f", "rcpt", "550 5.1.1 <reader1@example.com>: Recipient address rejected: User unknown", RecipientBounced),
    ("-f", "rcpt", "554 5.7.1 <reader1@example.com>: Relay access denied", ConnectionRefusedForAll),
    ("-r", "rcpt", "450 4.2.0 <reader1@example.com>: Recipient address rejected: Greylisted", TransientDeliveryError),
    ("-r", "mail", "451 4.3.0 Error: queue file write error", TransientDeliveryError),
    ("-f", "mail", "553 5.7.1 <newsletter@example.com>: Sender address rejected", ConnectionRefusedForAll),
    ("-f", "data", "554 5.5.1 Error: no valid recipients", PermanentDeliveryError),
    ("-f", ".", "554 5.7.1 Message content rejected", PermanentDeliveryError),
    ("-r", ".", "452 4.3.1 Insufficient system storage", TransientDeliveryError),
    ("-r", "rcpt", "421 4.3.2 Service shutting down", TransientDeliveryError),
]


@needs_sink
@pytest.mark.parametrize(("option", "command", "reply", "error"), REFUSALS)
def test_refusal_at_each_step_without_pipelining(tmp_path: Path, option: str, command: str, reply: str,
                                                 error: type) -> None:
    """-f / -r switch PIPELINING off: the command-by-command path, with the server's code and text kept."""
    with sink(tmp_path, option, command, "-B" if option == "-f" else "-b", reply) as (port, dumps):
        transport = _transport(port)
        transport.connect()  # type: ignore[attr-defined]
        assert not transport._smtp.has_extn("pipelining")  # type: ignore[attr-defined]
        for _ in (1, 2):  # the same answer the second time: the session stayed in step (RSET, or a reconnect)
            with pytest.raises(error) as info:
                transport.send(_message(1))
            assert reply.split(" ", 2)[2].split(": ")[-1] in str(info.value)
            if error is not ConnectionRefusedForAll:
                assert info.value.recipient == "reader1@example.com"
                assert info.value.code == int(reply[:3])
            assert type(info.value) is error
        transport.close()
        if command != ".":  # refused before the data: the body was never sent
            assert not any(b"Hello Reader" in dump for dump in _dumped(dumps, 0))

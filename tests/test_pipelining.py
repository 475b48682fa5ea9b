"""SMTP PIPELINING (RFC 2920): one write for MAIL, RCPT and DATA, and a refusal at each step handled in order.

A small scripted SMTP server on 127.0.0.1 offers PIPELINING and answers chosen commands with chosen replies
(aiosmtpd does not offer PIPELINING, and smtp-sink stops offering it when told to refuse commands).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from smtp_servers import simple_message

from newsletter.errors import ConnectionRefusedForAll, PermanentDeliveryError, RecipientBounced, TransientDeliveryError
from newsletter.models import Subscriber
from newsletter.transports import open_transport

ISSUE = "2026-11-25"


@dataclass
class Script:
    """Replies for the first uses of a command ("MAIL", "RCPT", "DATA", "." for end of data); then 250/354."""

    replies: dict[str, list[str]] = field(default_factory=dict)
    pipelining: bool = True
    reads: list[list[str]] = field(default_factory=list)  # the commands each recv() brought in
    messages: list[tuple[str, bytes]] = field(default_factory=list)  # (RCPT line, data)
    connections: int = 0

    def reply(self, command: str, default: str) -> str:
        queue = self.replies.get(command)
        return queue.pop(0) if queue else default


def _serve(conn: socket.socket, script: Script) -> None:
    buffer = b""

    def line() -> bytes:
        nonlocal buffer
        while b"\r\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError
            buffer += chunk
            script.reads.append([x.split(b" ")[0].decode() for x in chunk.split(b"\r\n") if x[:4].isalpha()])
        head, _, buffer = buffer.partition(b"\r\n")
        return head

    def say(reply: str) -> bool:
        conn.sendall(reply.encode() + b"\r\n")
        return not reply.startswith("421")

    conn.sendall(b"220 scripted ESMTP\r\n")
    rcpt = ""
    while True:
        command = line().decode("utf-8")
        verb = command.split(" ", 1)[0].upper()
        if verb == "EHLO":
            say("250-scripted\r\n" + ("250-PIPELINING\r\n" if script.pipelining else "") + "250 8BITMIME")
        elif verb == "QUIT":
            say("221 bye")
            return
        elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
            rcpt = command if verb == "RCPT" else rcpt
            if not say(script.reply(verb, "250 OK")):
                return
        elif verb == "DATA":
            reply = script.reply("DATA", "354 go ahead")
            if not say(reply):
                return
            if reply.startswith("354"):
                data = b""
                while (text := line()) != b".":
                    data += (text[1:] if text.startswith(b".") else text) + b"\r\n"  # undo dot-stuffing
                end = script.reply(".", "250 queued")
                if end.startswith("250"):
                    script.messages.append((rcpt, data))
                if not say(end):
                    return
        else:
            say("502 not here")


@contextmanager
def scripted_server(script: Script) -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # shut down by the test's end (below): stop at once, not at the next timeout
                if stop.is_set():
                    return
                raise
            script.connections += 1
            with conn:
                conn.settimeout(10)
                try:
                    _serve(conn, script)
                except (EOFError, OSError):
                    pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that waits
        thread.join(timeout=5)
        listener.close()


def _message(n: int):
    return simple_message(ISSUE, Subscriber(id=n, email=f"reader{n}@example.com", name=f"Reader {n}"))


def test_mail_rcpt_and_data_leave_in_one_write() -> None:
    script = Script()
    with scripted_server(script) as port:
        transport = open_transport(f"smtp://127.0.0.1:{port}?starttls=off")
        transport.send(_message(1))
        transport.send(_message(2))
        transport.close()
    assert ["MAIL", "RCPT", "DATA"] in script.reads
    assert [rcpt for rcpt, _ in script.messages] == ["RCPT TO:<reader1@example.com>", "RCPT TO:<reader2@example.com>"]
    assert b"\r\n.a line starting with a dot\r\n" in script.messages[0][1]  # stuffed, and unstuffed by the server
    assert script.connections == 1


def test_without_pipelining_offered_commands_wait_for_replies() -> None:
    script = Script(pipelining=False)
    with scripted_server(script) as port:
        transport = open_transport(f"smtp://127.0.0.1:{port}?starttls=off")
        transport.send(_message(1))
        transport.close()
    assert ["MAIL", "RCPT", "DATA"] not in script.reads and len(script.messages) == 1


# (step, reply, the error the first message gets, replies the server sends for the later, unsent steps)
STEPS = [
    ("RCPT", "550 5.1.1 no such user", PermanentDeliveryError, {"DATA": ["554 5.5.1 no valid recipients"]}),
    ("RCPT", "450 4.2.0 mailbox busy", TransientDeliveryError, {"DATA": ["554 5.5.1 no valid recipients"]}),
    ("MAIL", "552 5.3.4 message too big for this server", PermanentDeliveryError,
     {"RCPT": ["503 5.5.1 need MAIL"], "DATA": ["503 5.5.1 need RCPT"]}),
    ("MAIL", "451 4.3.0 try again later", TransientDeliveryError,
     {"RCPT": ["503 5.5.1 need MAIL"], "DATA": ["503 5.5.1 need RCPT"]}),
    ("DATA", "554 5.7.1 not now", PermanentDeliveryError, {}),
    (".", "554 5.7.1 content refused", PermanentDeliveryError, {}),
    (".", "451 4.3.0 queue full", TransientDeliveryError, {}),
    # A lax server that says 354 although the recipient was refused: the data is ended empty, nothing delivered.
    ("RCPT", "550 5.1.1 no such user", PermanentDeliveryError, {"DATA": ["354 go ahead anyway"],
                                                                ".": ["554 5.5.1 no valid recipients"]}),
]


@pytest.mark.parametrize(("step", "reply", "error", "later"), STEPS)
def test_refusal_at_each_pipelined_step_fails_that_message_only(step: str, reply: str, error: type,
                                                                later: dict[str, list[str]]) -> None:
    script = Script({step: [reply], **later})
    with scripted_server(script) as port:
        transport = open_transport(f"smtp://127.0.0.1:{port}?starttls=off")
        with pytest.raises(error) as info:
            transport.send(_message(1))
        assert not isinstance(info.value, ConnectionRefusedForAll)
        assert reply.split(" ", 1)[1] in str(info.value) and info.value.recipient == "reader1@example.com"
        transport.send(_message(2))  # the replies stayed in step: the next message goes through
        transport.close()
    assert [rcpt for rcpt, _ in script.messages] == ["RCPT TO:<reader2@example.com>"]
    assert script.connections == 1


def test_refused_sender_still_stops_the_run() -> None:
    script = Script({"MAIL": ["553 5.7.1 sender not allowed"], "RCPT": ["503 need MAIL"], "DATA": ["503 need RCPT"]})
    with scripted_server(script) as port:
        transport = open_transport(f"smtp://127.0.0.1:{port}?starttls=off")
        with pytest.raises(ConnectionRefusedForAll, match="server refuses the sender"):
            transport.send(_message(1))
        transport.close()


@pytest.mark.parametrize("step", ["MAIL", "RCPT", "DATA", "."])
def test_421_at_any_pipelined_step_reconnects_once(step: str) -> None:
    script = Script({step: ["421 4.3.2 shutting down"]})
    with scripted_server(script) as port:
        transport = open_transport(f"smtp://127.0.0.1:{port}?starttls=off")
        transport.send(_message(1))  # the second connection takes it
        transport.close()
    assert [rcpt for rcpt, _ in script.messages] == ["RCPT TO:<reader1@example.com>"]
    assert script.connections == 2


def test_multiline_refusal_keeps_every_line_and_the_session_in_step() -> None:
    script = Script({"RCPT": ["550-5.1.1 <reader1@example.com>: the mailbox\r\n550 5.1.1 does not exist here"],
                     "DATA": ["554-5.5.1 no valid\r\n554 5.5.1 recipients"]})
    with scripted_server(script) as port:
        transport = open_transport(f"smtp://127.0.0.1:{port}?starttls=off")
        with pytest.raises(RecipientBounced) as info:
            transport.send(_message(1))
        assert info.value.code == 550 and "the mailbox 5.1.1 does not exist here" in str(info.value)
        transport.send(_message(2))  # the DATA reply's two lines were both read: the next replies line up
        transport.close()
    assert [rcpt for rcpt, _ in script.messages] == ["RCPT TO:<reader2@example.com>"]

"""Transports against real things: Maildir read back with mailbox, SMTP against aiosmtpd on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import mailbox
import socket
import ssl
import time
from pathlib import Path

import pytest
from smtp_servers import (
    Fault,
    FaultHandler,
    simple_message,
    smtp_server,
    smtps_server,
    starttls_server,
)

from newsletter.errors import (
    ConfigError,
    ConnectionRefusedForAll,
    PermanentDeliveryError,
    StopRun,
    TransientDeliveryError,
)
from newsletter.models import Subscriber
from newsletter.transports import Transport, mask_url, open_transport
from newsletter.transports.memory import MemoryTransport, outbox
from newsletter.transports.smtp import SMTPTransport

ISSUE = "2024-05-06"
PASSWORD = "hunter2-very-secret"


def person(i: int, email_address: str | None = None, name: str = "") -> Subscriber:
    return Subscriber(id=i, email=email_address or f"reader{i}@example.com", name=name or f"Reader {i}")


def smtp(url: str, **options: object) -> Transport:
    return open_transport(url, local_hostname="client.test", timeout=5.0, **options)


# -- registry and URLs -------------------------------------------------------------------------


def test_unknown_scheme_masks_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        open_transport(f"ftp://editor:{PASSWORD}@mail.example.com")
    text = str(info.value)
    assert "editor:***@mail.example.com" in text and PASSWORD not in text
    assert "smtp:" in text and "maildir:" in text


def test_mask_url() -> None:
    assert mask_url(f"smtp://me:{PASSWORD}@h:587?starttls=off") == "smtp://me:***@h:587?starttls=off"
    assert mask_url("smtp://me@h:587") == "smtp://me@h:587"
    assert mask_url(f"smtp://h?password={PASSWORD}") == "smtp://h?password=***"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"smtp://me:{PASSWORD}@127.0.0.1:25", "NEWSLETTER_SMTP_PASSWORD"),
        ("smtp://127.0.0.1:25?starttls=maybe", "starttls"),
        ("smtp://127.0.0.1:25?tls=on", "unknown option"),
        ("smtps://127.0.0.1:465?starttls=off", "unknown option"),
        ("smtp://127.0.0.1:notaport", "port must be a number"),
        ("smtp://:25", "no host"),
        ("smtp://127.0.0.1:25?timeout=-1", "positive"),
        ("smtp://127.0.0.1:25?cafile=/does/not/exist.pem", "CA file"),
        ("maildir:", "no Maildir folder"),
        ("smtp://me@127.0.0.1:25", "password is not"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        open_transport(url)
    assert PASSWORD not in str(info.value)


def test_clear_text_password_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="clear text"):
        open_transport("smtp://me@mail.example.com:25?starttls=off", password=PASSWORD)


# -- memory and maildir ------------------------------------------------------------------------


def test_memory_transport() -> None:
    named = open_transport("memory://outbox-a")
    assert isinstance(named, MemoryTransport)
    named.send(simple_message(ISSUE, person(1)))
    assert [m.recipient for m in outbox("outbox-a")] == ["reader1@example.com"]
    assert open_transport("memory://").messages is not outbox("outbox-a")  # type: ignore[attr-defined]


@pytest.mark.parametrize("absolute", [True, False])
def test_maildir_is_readable_with_mailbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, absolute: bool) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"maildir://{tmp_path}/out" if absolute else "maildir:out"
    transport = open_transport(url)
    sent = [simple_message(ISSUE, person(i, name=n)) for i, n in enumerate(["Ann", "Bé Ünïcode", "Cy"], 1)]
    for message in sent:
        transport.send(message)
    transport.close()
    box = mailbox.Maildir(tmp_path / "out", create=False)
    assert len(box) == 3
    assert not list((tmp_path / "out" / "tmp").iterdir())
    by_id = {m["Message-ID"].strip("<>"): m for m in box}
    assert set(by_id) == {m.message_id for m in sent}
    for message in sent:
        stored = box.get_bytes(next(k for k, m in box.iteritems() if m["Message-ID"] == f"<{message.message_id}>"))
        assert stored == message.data.replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(stored, policy=email.policy.default)
        assert parsed["To"].addresses[0].addr_spec == message.recipient


def test_maildir_storage_problems_stop_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(StopRun, match="not-a-folder") as refused:  # a full or missing disk is no refused connection
        open_transport(f"maildir:{blocker}")
    assert type(refused.value) is StopRun
    transport = open_transport(f"maildir:{tmp_path / 'box'}")
    (tmp_path / "box" / "new").rmdir()
    (tmp_path / "box" / "new").write_text("")  # rename into new/ now fails
    with pytest.raises(StopRun, match="cannot write to Maildir .*box") as refused:
        transport.send(simple_message(ISSUE, person(1)))
    assert type(refused.value) is StopRun
    assert not list((tmp_path / "box" / "tmp").iterdir())


# -- SMTP --------------------------------------------------------------------------------------


def test_plain_smtp_with_starttls_off_reuses_one_connection() -> None:
    with smtp_server() as server:
        transport = smtp(server.url(query="starttls=off"))
        messages = [simple_message(ISSUE, person(i)) for i in range(1, 4)]
        for message in messages:
            transport.send(message)
        transport.close()
        received = server.handler.messages
    assert [r.message_id for r in received] == [m.message_id for m in messages]
    assert [r.rcpt_tos for r in received] == [(m.recipient,) for m in messages]
    assert all(r.mail_from == "news@example.com" for r in received)
    # Dot-stuffing round trip: the line starting with "." arrives intact.
    assert b"\r\n.a line starting with a dot\r\n" in received[0].data
    assert len({r.peer for r in received}) == 1


def test_reconnects_after_the_server_dropped_an_idle_connection() -> None:
    with smtp_server(timeout=0.3) as server:  # aiosmtpd closes connections idle for 0.3 s
        transport = smtp(server.url(query="starttls=off"))
        transport.send(simple_message(ISSUE, person(1)))
        time.sleep(0.6)
        transport.send(simple_message(ISSUE, person(2)))
        transport.close()
        received = server.handler.messages
    assert [r.rcpt_tos for r in received] == [("reader1@example.com",), ("reader2@example.com",)]
    assert len({r.peer for r in received}) == 2


def test_smtputf8_recipient() -> None:
    with smtp_server() as server:
        transport = smtp(server.url(query="starttls=off"))
        transport.send(simple_message(ISSUE, person(1, "用户@例子.广告", "李")))
        transport.close()
        assert server.handler.messages[0].rcpt_tos == ("用户@例子.广告",)


def test_starttls_verified_with_the_test_ca(tmp_path: Path) -> None:
    with starttls_server(tmp_path) as server:
        transport = smtp(server.url(query=f"cafile={server.ca_path}"))
        transport.send(simple_message(ISSUE, person(1)))
        transport.close()
        assert server.handler.message_ids == [f"{ISSUE}.1@newsletter.test"]


def test_starttls_without_the_ca_is_refused_for_all(tmp_path: Path) -> None:
    with starttls_server(tmp_path) as server:
        transport = smtp(server.url())
        with pytest.raises(ConnectionRefusedForAll) as info:
            transport.send(simple_message(ISSUE, person(1)))
        assert "certificate verify failed for 127.0.0.1" in str(info.value)
        assert "?cafile=" in str(info.value)
        assert server.handler.messages == []


def test_server_without_starttls_is_refused_when_required() -> None:
    with smtp_server() as server:
        transport = smtp(server.url())
        with pytest.raises(ConnectionRefusedForAll, match="does not offer STARTTLS; refusing to send in clear text"):
            transport.send(simple_message(ISSUE, person(1)))
        assert server.handler.messages == []


def test_smtps_implicit_tls(tmp_path: Path) -> None:
    with smtps_server(tmp_path) as server:
        transport = smtp(server.url("smtps", query=f"cafile={server.ca_path}"))
        transport.send(simple_message(ISSUE, person(1)))
        transport.close()
        assert len(server.handler.messages) == 1
        with pytest.raises(ConnectionRefusedForAll, match="certificate verify failed"):
            smtp(server.url("smtps")).send(simple_message(ISSUE, person(2)))


def test_auth_over_starttls(tmp_path: Path) -> None:
    with starttls_server(tmp_path, users={"editor": PASSWORD}) as server:
        url = server.url(query=f"cafile={server.ca_path}", user="editor")
        good = smtp(url, password=PASSWORD)
        good.send(simple_message(ISSUE, person(1)))
        good.close()
        assert len(server.handler.messages) == 1
        bad = smtp(url, password=PASSWORD + "-wrong")
        with pytest.raises(ConnectionRefusedForAll, match="authentication failed for user 'editor'") as info:
            bad.send(simple_message(ISSUE, person(2)))
        assert PASSWORD not in str(info.value) and PASSWORD not in repr(bad)
        assert len(server.handler.messages) == 1


@pytest.mark.parametrize("mode", ["plain", "starttls", "smtps"])
def test_every_smtp_socket_has_nagle_off(tmp_path: Path, mode: str) -> None:
    """With Nagle on, the last small TLS record of a message waits ~40 ms for a delayed ACK (issue 19)."""
    servers = {
        "plain": lambda: smtp_server(),
        "starttls": lambda: starttls_server(tmp_path),
        "smtps": lambda: smtps_server(tmp_path),
    }
    with servers[mode]() as server:
        if mode == "plain":
            url = server.url(query="starttls=off")
        else:
            url = server.url("smtps" if mode == "smtps" else "smtp", query=f"cafile={server.ca_path}")
        transport = smtp(url)
        assert isinstance(transport, SMTPTransport)
        transport.send(simple_message(ISSUE, person(1)))
        sock = transport._smtp.sock  # the live connection, after STARTTLS where there is one
        assert (mode != "plain") == isinstance(sock, ssl.SSLSocket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        transport.close()
        assert len(server.handler.messages) == 1


def test_connection_refused_is_refused_for_all() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = smtp(f"smtp://127.0.0.1:{port}?starttls=off")
    with pytest.raises(ConnectionRefusedForAll, match=f"127.0.0.1:{port}: cannot connect"):
        transport.send(simple_message(ISSUE, person(1)))


def test_replies_map_to_errors() -> None:
    handler = FaultHandler(
        [
            Fault(r"^nouser@", "550 5.1.1 <nouser@example.com>: no such user"),
            Fault(r"^flaky@", "451 4.7.1 greylisted, try again later"),
            Fault(r"^dropped@", "421 4.3.2 closing connection", times=1),
        ]
    )
    with smtp_server(handler) as server:
        transport = smtp(server.url(query="starttls=off"))
        with pytest.raises(PermanentDeliveryError) as permanent:
            transport.send(simple_message(ISSUE, person(1, "nouser@example.com")))
        assert permanent.value.code == 550 and "no such user" in permanent.value.reason
        with pytest.raises(TransientDeliveryError) as transient:
            transport.send(simple_message(ISSUE, person(2, "flaky@example.com")))
        assert transient.value.code == 451
        # 421 closes the connection: the transport reconnects once and the message goes through.
        transport.send(simple_message(ISSUE, person(3, "dropped@example.com")))
        transport.send(simple_message(ISSUE, person(4, "fine@example.com")))
        transport.close()
        assert [r.rcpt_tos for r in server.handler.messages] == [("dropped@example.com",), ("fine@example.com",)]
        assert handler.rcpt_attempts["dropped@example.com"] == 2


def test_auth_required_reply_is_refused_for_all() -> None:
    handler = FaultHandler(mail_reply="530 5.7.0 Authentication required")
    with smtp_server(handler) as server:
        transport = smtp(server.url(query="starttls=off"))
        with pytest.raises(ConnectionRefusedForAll, match="530"):
            transport.send(simple_message(ISSUE, person(1)))
        transport.close()


def test_relay_denied_is_refused_for_all() -> None:
    handler = FaultHandler([Fault(".", "554 5.7.1 <x@example.com>: Relay access denied")])
    with smtp_server(handler) as server, pytest.raises(ConnectionRefusedForAll, match="Relay access denied"):
        smtp(server.url(query="starttls=off")).send(simple_message(ISSUE, person(1)))


def test_size_refusal_of_mail_from_fails_that_message_only() -> None:
    """552 to MAIL FROM (RFC 1870: the SIZE= given is too large) is about the message, not the sender."""
    handler = FaultHandler(mail_reply="552 5.3.4 Message size exceeds fixed limit")
    with smtp_server(handler) as server:
        transport = smtp(server.url(query="starttls=off"))
        with pytest.raises(PermanentDeliveryError, match="552 5.3.4 Message size exceeds fixed limit") as info:
            transport.send(simple_message(ISSUE, person(1)))
        assert not isinstance(info.value, ConnectionRefusedForAll)
        assert info.value.recipient == "reader1@example.com"
        transport.close()


def test_transport_repr_hides_password() -> None:
    transport = SMTPTransport("mail.example.com", 587, user="editor", password=PASSWORD)
    assert PASSWORD not in repr(transport) and PASSWORD not in str(transport)


def test_transports_are_context_managers_and_declare_demo_use(tmp_path: Path) -> None:
    from newsletter.transports import allows_demo_subscribers

    with open_transport("memory://ctx") as transport:
        transport.send(simple_message(ISSUE, person(1)))
    assert transport.closed  # type: ignore[attr-defined]
    assert allows_demo_subscribers(f"maildir:{tmp_path}") and allows_demo_subscribers("memory://")
    assert not allows_demo_subscribers("smtp://127.0.0.1:25") and not allows_demo_subscribers("smtps://h:465")

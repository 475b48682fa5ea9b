"""Delivery through a real Postfix 3.x (a private instance: STARTTLS, a Maildir), read back from the Maildir.

Without Postfix or root these tests skip, unless NEWSLETTER_REQUIRE_POSTFIX=1 (CI), when they fail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import os
import re
import ssl
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from postfix_server import PostfixInstance, PostfixUnavailable, postfix_instance
from smtp_servers import simple_message

from newsletter.store import sqlite as db, subscribers
from newsletter.approval import approve
from newsletter.jobs.delivery import personaliser_for, send_full
from newsletter.errors import ConnectionRefusedForAll, PermanentDeliveryError
from newsletter.models import Subscriber
from newsletter.jobs.issues import build, compose
from newsletter.settings import Settings
from newsletter.transports import open_transport
from newsletter.transports.smtp import SMTPTransport

pytestmark = pytest.mark.postfix

DATE = dt.date(2026, 11, 25)
SIZE_LIMIT = 200_000  # the sample issue is ~40 KB


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixInstance]:
    try:
        with postfix_instance(size_limit=SIZE_LIMIT) as instance:
            yield instance
    except PostfixUnavailable as exc:
        if os.environ.get("NEWSLETTER_REQUIRE_POSTFIX") == "1":
            pytest.fail(f"{exc} (NEWSLETTER_REQUIRE_POSTFIX=1)", pytrace=False)
        pytest.skip(f"no private Postfix: {exc}")


@pytest.fixture
def inbox(postfix: PostfixInstance) -> PostfixInstance:
    postfix.clear_maildir()
    return postfix


def _read(path: Path) -> EmailMessage:
    # As text: message_from_bytes keeps raw UTF-8 headers (SMTPUTF8) as surrogate escapes.
    text = path.read_bytes().decode("utf-8")
    return email.message_from_string(text, policy=email.policy.default)  # type: ignore[return-value]


def _person(n: int, address: str, name: str = "") -> Subscriber:
    return Subscriber(id=n, email=address, name=name)


def test_issue_through_postfix_with_verified_starttls(settings: Settings, inbox: PostfixInstance) -> None:
    issue = compose(settings, date=DATE)
    build(settings, issue.folder)
    conn = db.connect(settings.path(settings.database))
    subscribers.import_csv(conn, settings.root / "content" / "subscribers.csv")
    subscribers.add(conn, "jörg.groß@example.net", "Jörg Groß")  # needs SMTPUTF8 all the way to the Maildir
    everyone = {s.email: s for s in subscribers.list_subscribers(conn, status="subscribed")}
    conn.close()
    approve(issue.folder)

    smtp = dataclasses.replace(settings, transport=inbox.url())
    report = send_full(smtp, issue.folder, connections=2)
    assert (report.sent, report.failed, report.stopped_early) == (len(everyone), 0, None), inbox.log_tail()
    files = inbox.wait_delivered(len(everyone))

    delivered = {path: _read(path) for path in files}
    assert Counter(m["Delivered-To"] for m in delivered.values()) == Counter(list(everyone))
    expected = personaliser_for(settings, issue.folder)
    for path, got in delivered.items():
        subscriber = everyone[got["Delivered-To"]]
        want = expected.message(subscriber)
        # Postfix received it over TLS (ESMTPS, or UTF8SMTPS for the SMTPUTF8 one) from our verified session.
        assert re.search(r"with (ESMTPS|UTF8SMTPS) ", " ".join(got["Received"].split())), got["Received"]
        assert got["Message-ID"] == f"<{want.message_id}>"
        assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert got["List-Unsubscribe"] == email.message_from_bytes(want.data, policy=email.policy.default)[
            "List-Unsubscribe"]
        to = got["To"].addresses[0]
        assert (to.display_name, to.addr_spec) == (subscriber.name, subscriber.email)
        # From our To: header on, the bytes are ours (Postfix only prepends its trace headers; LF in a Maildir).
        ours = want.data[want.data.index(b"\r\nTo: ") + 2:].replace(b"\r\n", b"\n")
        assert path.read_bytes().endswith(ours)
        for kind in ("plain", "html"):
            mine = email.message_from_bytes(want.data, policy=email.policy.default).get_body((kind,))
            # Decoded, the same text (line ends aside: a Maildir stores LF, our quoted-printable has CRLF).
            assert got.get_body((kind,)).get_content() == mine.get_content().replace("\r\n", "\n")  # type: ignore
    names = {m["To"].addresses[0].display_name for m in delivered.values()}
    assert {"Zoë Müller", "Doe, Jane", "Seán O'Brien", "Jörg Groß"} <= names


def test_postfix_advertises_smtputf8_8bitmime_and_its_size_limit(inbox: PostfixInstance) -> None:
    transport = open_transport(inbox.url())
    assert isinstance(transport, SMTPTransport)
    transport.connect()
    session = transport._smtp
    assert session is not None and isinstance(session.sock, ssl.SSLSocket)  # the features after STARTTLS
    features = session.esmtp_features
    assert {"smtputf8", "8bitmime"} <= set(features) and features["size"] == str(SIZE_LIMIT)
    # A raw UTF-8 body goes out with BODY=8BITMIME and arrives byte for byte.
    message = simple_message("2026-11-25", _person(1, "reader1@example.com"))
    eight_bit = dataclasses.replace(message, data=message.data.replace(b"Hello", "Grüße, café".encode()))
    assert not eight_bit.data.isascii()
    transport.send(eight_bit)
    transport.close()
    [path] = inbox.wait_delivered(1)
    assert path.read_bytes().endswith(eight_bit.data.replace(b"\r\n", b"\n"))
    body = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # an 8bit body: bytes
    assert "Grüße, café" in body.get_content()  # type: ignore[attr-defined]


def test_too_large_for_postfix_fails_that_message_only(inbox: PostfixInstance) -> None:
    transport = open_transport(inbox.url())
    small = simple_message("2026-11-25", _person(1, "reader1@example.com"))
    pad = b"X-Padding: " + b"x" * 70 + b"\r\n"
    # Over the advertised SIZE: refused before it is sent, with the sizes in the message.
    huge = dataclasses.replace(simple_message("2026-11-25", _person(2, "reader2@example.com")),
                               data=pad * (SIZE_LIMIT // len(pad) + 10) + small.data)
    # Just under SIZE, over the limit once Postfix adds its Received header: Postfix's own 552 after DATA.
    edge_data = pad * ((SIZE_LIMIT - len(small.data)) // len(pad)) + small.data
    edge_data = b"X-Fill: " + b"y" * (SIZE_LIMIT - len(edge_data) - 10 - len(b"X-Fill: \r\n")) + b"\r\n" + edge_data
    edge = dataclasses.replace(simple_message("2026-11-25", _person(3, "reader3@example.com")), data=edge_data)
    assert len(huge.data) > SIZE_LIMIT and SIZE_LIMIT - 20 < len(edge.data) <= SIZE_LIMIT

    transport.send(small)
    with pytest.raises(PermanentDeliveryError, match=r"at most 200,000 \(SIZE\)") as too_big:
        transport.send(huge)
    with pytest.raises(PermanentDeliveryError, match=r"552 5\.3\.4 .*too big.*message of 199,99\d bytes") as at_edge:
        transport.send(edge)
    for info, who in ((too_big, "reader2@example.com"), (at_edge, "reader3@example.com")):
        assert not isinstance(info.value, ConnectionRefusedForAll) and info.value.recipient == who
    transport.send(dataclasses.replace(small, recipient="reader4@example.com"))  # the same session goes on
    transport.close()
    files = inbox.wait_delivered(2)
    assert sorted(_read(p)["Delivered-To"] for p in files) == ["reader1@example.com", "reader4@example.com"]


def test_slot_registration_keeps_what_main_cf_lists() -> None:
    """alternate_config_directories is merged, never overwritten, and not repeated on the next run."""
    from postfix_server import _config_dirs_line

    assert _config_dirs_line("/srv/a, /srv/b", ["/srv/b", "/x/0"]) == "/srv/a /srv/b /x/0"
    assert _config_dirs_line("", ["/x/0", "/x/1"]) == "/x/0 /x/1"
    once = _config_dirs_line("/srv/a", ["/x/0"])
    assert _config_dirs_line(once, ["/x/0"]) == once

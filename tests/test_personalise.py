"""Personalise: the spliced fast path gives the same message the slow EmailMessage path builds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from newsletter.models import RenderedEmail, Subscriber
from newsletter.personalise import Personaliser, greeting
from newsletter.jobs.issues import build, compose
from newsletter.render import PLACEHOLDERS, fill_placeholders
from newsletter.tokens import keyed_email_digest, read_token

WHEN = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> RenderedEmail:
    import shutil
    from pathlib import Path

    from newsletter.settings import load_settings

    repo = Path(__file__).resolve().parent.parent
    root = tmp_path_factory.mktemp("p")
    for name in ("content", "templates"):
        shutil.copytree(repo / name, root / name)
    shutil.copy(repo / "newsletter.toml", root / "newsletter.toml")
    s = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": "x"})
    issue = compose(s, date=dt.date(2026, 11, 25))
    return build(s, issue.folder, write=False).email


def make(rendered: RenderedEmail, **kw: object) -> Personaliser:
    return Personaliser(rendered, sender_name="MS Research", sender_email="news@ms-research.example.org",
                        list_id="news.ms-research.example.org", public_base_url="https://ms-research.example.org/nl",
                        secret="k", unsubscribe_mailto="unsub@ms-research.example.org", date=WHEN, **kw)  # type: ignore[arg-type]


def slow_path(p: Personaliser, rendered: RenderedEmail, sub: Subscriber) -> EmailMessage:
    values = p.values(sub)
    msg = EmailMessage()
    msg.set_content(fill_placeholders(rendered.text, values, html=False))
    msg.add_alternative(fill_placeholders(rendered.html, values, html=True), subtype="html")
    return msg


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_headers_and_parts(rendered: RenderedEmail) -> None:
    p = make(rendered)
    m = p.message(Subscriber(id=3, email="zoe@example.org", name="Zoë Müller"))
    msg = parse(m.data)
    assert msg["To"].addresses[0].display_name == "Zoë Müller"
    assert msg["To"].addresses[0].addr_spec == "zoe@example.org"
    assert msg["Subject"] == rendered.subject
    assert msg["Message-ID"] == f"<{m.message_id}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = msg["List-Unsubscribe"]
    assert unsub.startswith("<https://ms-research.example.org/nl/unsubscribe/") and "<mailto:" in unsub
    token = unsub.split("/unsubscribe/")[1].split(">")[0]
    assert read_token("k", "unsubscribe", token) == (3, keyed_email_digest("k", "zoe@example.org"))
    assert msg.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(len(line) <= 998 for line in m.data.split(b"\r\n"))
    assert b"\n" not in m.data.replace(b"\r\n", b"")  # CRLF only


def test_message_id_is_deterministic(rendered: RenderedEmail) -> None:
    sub = Subscriber(id=9, email="a@example.org")
    assert make(rendered).message(sub).message_id == make(rendered).message(sub).message_id
    assert make(rendered).message(sub).message_id != make(rendered).message(Subscriber(id=10, email="b@example.org")).message_id


def test_test_prefix(rendered: RenderedEmail) -> None:
    msg = parse(make(rendered, test=True).message(Subscriber(id=1, email="a@example.org")).data)
    assert msg["Subject"].startswith("[TEST] ")


names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names)
def test_spliced_equals_slow_path(rendered: RenderedEmail, name: str) -> None:
    p = make(rendered)
    sub = Subscriber(id=42, email="reader@example.org", name=name)
    fast = parse(p.message(sub).data)
    slow = slow_path(p, rendered, sub)
    for kind in ("plain", "html"):
        # On the wire every line break is CRLF; the parsed slow path shows them as LF.
        got = fast.get_body((kind,)).get_content().replace("\r\n", "\n")
        assert got == slow.get_body((kind,)).get_content()
    assert set(fast.keys()) == {"From", "Subject", "Date", "MIME-Version", "List-Id", "To", "Message-ID",
                                "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Type"}
    for part in fast.iter_parts():
        raw = part.as_bytes()
        assert max(len(line) for line in raw.split(b"\n")) <= 78


def test_hostile_name_never_makes_a_header(rendered: RenderedEmail) -> None:
    for name in ["Eve\r\nBcc: victim@example.org", "=?utf-8?q?=0ABcc:_x@y.org?=", "Eve\u2028Bcc: x@y.org",
                 "A\x00B", "x" * 5000]:
        msg = parse(make(rendered).message(Subscriber(id=1, email="e@example.org", name=name)).data)
        assert msg["Bcc"] is None
        assert "\n" not in str(msg["To"]) and "\r" not in str(msg["To"])


def test_greeting() -> None:
    assert greeting("") == "Hello,"
    assert greeting(" Ann\r\n") == "Hello Ann,"


# -- the SMTP DATA payload, dot-stuffed once per issue ------------------------------------------------


def _smtp_payload(data: bytes) -> bytes:
    """What smtplib.SMTP.data sends after the 354 for `data` (ending in CRLF): every leading dot doubled, then
    the end-of-data line."""
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"


def _dotted(rendered: RenderedEmail) -> RenderedEmail:
    """The issue with lines that start with a dot in both parts, placeholders among them and right after a dot."""
    g, u, w = (PLACEHOLDERS[k] for k in ("greeting", "unsubscribe_url", "web_url"))
    return dataclasses.replace(
        rendered,
        text=f".{g}\n..two dots\n{u}\n.\n" + rendered.text + f"\n.{w}\n.end",
        html=f".<p>{g}</p>\n." + rendered.html.replace("<body", f"\n.<a href=\"{u}\">.x</a>\n<body", 1) + "\n.",
    )


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.text(alphabet=". aé=\u00a0", max_size=200), dotted=st.booleans(), proof=st.booleans(),
       mailto=st.booleans())
def test_the_payload_is_the_dot_stuffed_message(rendered: RenderedEmail, first: str, dotted: bool, proof: bool,
                                                mailto: bool) -> None:
    """Joined, the payload the personaliser makes once per issue is exactly what smtplib would send for the
    message's bytes, with leading dots in the issue's pieces, in a recipient's values (a long greeting wrapped by
    quoted-printable so a line starts with a dot) and in the web address."""
    email_ = _dotted(rendered) if dotted else rendered
    p = Personaliser(email_, sender_name="MS Research", sender_email="news@ms-research.example.org",
                     list_id="news.ms-research.example.org", public_base_url="https://x." + "." * 70 + "example.org/nl",
                     secret="k", unsubscribe_mailto="unsub@ms-research.example.org" if mailto else None, date=WHEN,
                     test=proof)
    message = p.message(Subscriber(id=7, email="reader@example.org", name="Reader", first_name=first))
    assert message.payload is not None
    assert b"".join(message.payload) == _smtp_payload(message.data)
    if dotted:
        assert b"\r\n.." in b"".join(message.payload)


def test_a_signer_that_prepends_keeps_the_payload_and_any_other_drops_it(rendered: RenderedEmail) -> None:
    sub = Subscriber(id=7, email="reader@example.org", name="Reader", first_name="Ann")
    prepended = make(_dotted(rendered), signer=lambda data: b".X-Signed: yes\r\n" + data).message(sub)
    assert prepended.data.startswith(b".X-Signed: yes\r\n")
    assert prepended.payload is not None and b"".join(prepended.payload) == _smtp_payload(prepended.data)
    changed = make(_dotted(rendered), signer=lambda data: data.replace(b"Hello", b"Hi")).message(sub)
    assert changed.payload is None  # the transport stuffs what it is given
    # dataclasses.replace makes a new message from its fields: a payload for the old bytes never follows.
    assert dataclasses.replace(prepended, data=b"other\r\n").payload is None

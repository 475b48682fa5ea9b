"""Personalise: RenderedEmail + Subscriber -> Message; the MIME skeleton is built once, values spliced in.

The HTML and text parts are quoted-printable encoded once per issue, cut at the per-subscriber
placeholders. Each static piece ends in a QP soft line break, so a recipient's values (encoded on
their own) can be spliced between the pieces: the decoded body is exactly the template with the
values filled in, every encoded line stays within 76 characters, and no value can reach a header.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.utils
import hashlib
import hmac
import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from .errors import HeaderError
from .headers import encode_header, envelope_address, format_address, strip_controls
from .models import Message, RenderedEmail, Subscriber
from .render import PLACEHOLDERS
from .tokens import make_token

__all__ = ["Personaliser", "prepare", "greeting", "message_id_for", "PROOF_GREETING"]

_TOKEN_RE = re.compile("(" + "|".join(re.escape(t) for t in PLACEHOLDERS.values()) + ")")
_KEY_BY_TOKEN = {token: key for key, token in PLACEHOLDERS.items()}
# What urllib.parse.quote never escapes: a token made only of these is its own quoted form.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]+")


def _list_id(name: str, list_id: str) -> str:
    """RFC 2919: `phrase <list-id>`; the phrase is optional, so a non-ASCII name is left out, not encoded."""
    ident = encode_header("List-Id", list_id)
    if not re.fullmatch(r"[A-Za-z0-9.-]+", ident):
        raise HeaderError("List-Id", f"{list_id!r} must be a dot-separated name like news.example.org")
    phrase = strip_controls(name).replace('"', "").replace("\\", "")
    return f'"{phrase}" <{ident}>' if phrase and phrase.isascii() else f"<{ident}>"


#: The greeting line of a proof copy: whoever reads it should know at once what it is.
PROOF_GREETING = ("PROOF COPY for checking, not sent to subscribers: its unsubscribe link is inactive "
                  "(each subscriber's copy has their own). Hello,")


def greeting(name: str) -> str:
    name = strip_controls(name)
    return f"Hello {name}," if name else "Hello,"


def message_id_for(secret: str, issue_id: str, subscriber_id: int, domain: str) -> str:
    """Deterministic per (issue, subscriber), so a re-send after a crash can be recognised downstream."""
    return _message_id(hmac.new(secret.encode(), digestmod=hashlib.sha256), issue_id, subscriber_id, domain)


def _message_id(keyed: hmac.HMAC, issue_id: str, subscriber_id: int, domain: str) -> str:
    mac = keyed.copy()  # the key schedule is done once per issue, not per message
    mac.update(f"{issue_id}\0{subscriber_id}".encode())
    return f"{issue_id}.{subscriber_id}.{mac.hexdigest()[:20]}@{domain}"


def _qp(text: str) -> bytes:
    """Quoted-printable for one piece, CRLF line ends."""
    return binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


def _pieces(template: str) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    """Split at the placeholders: n+1 encoded static pieces and the n keys between them."""
    template = template.replace("\r\n", "\n")
    if not template.endswith("\n"):
        template += "\n"  # a part ends with a line break, as EmailMessage.set_content writes it
    parts = _TOKEN_RE.split(template)
    statics, keys = [], []
    for index, part in enumerate(parts):
        if index % 2:
            keys.append(_KEY_BY_TOKEN[part])
            continue
        encoded = _qp(part)
        if encoded and not encoded.endswith(b"\r\n"):
            encoded += b"=\r\n"  # soft break: the next piece starts a fresh line
        statics.append(encoded)
    return tuple(statics), tuple(keys)


def _stuffed(piece: bytes) -> bytes:
    """`piece`, which starts at the start of a line, with each line's leading dot doubled (SMTP's dot-stuffing,
    RFC 5321 4.5.2). Pieces that each end with a line break can be stuffed one by one: joined, they are the
    stuffed whole."""
    piece = piece.replace(b"\n.", b"\n..")
    return b"." + piece if piece[:1] == b"." else piece


@dataclass(frozen=True)
class _Part:
    statics: tuple[bytes, ...]
    keys: tuple[str, ...]
    html: bool

    def render(self, encoded_values: dict[str, bytes], statics: tuple[bytes, ...] | None = None) -> list[bytes]:
        statics = statics or self.statics
        out = [statics[0]]
        for key, static in zip(self.keys, statics[1:]):
            out.append(encoded_values[key])
            out.append(static)
        return out

    def stuffed(self) -> tuple[bytes, ...]:
        return tuple(_stuffed(piece) for piece in self.statics)


def _encode_value(value: str, *, html: bool) -> bytes:
    if not value:
        return b""
    text = html_lib.escape(value, quote=True) if html else value
    encoded = _qp(text)
    return encoded if encoded.endswith(b"\r\n") else encoded + b"=\r\n"


class Personaliser:
    """Holds the once-per-issue work; `message(subscriber)` is the cheap per-recipient step."""

    def __init__(self, email_: RenderedEmail, *, sender_name: str, sender_email: str, list_id: str,
                 public_base_url: str, secret: str, unsubscribe_mailto: str | None = None,
                 reply_to: str | None = None, test: bool = False, date: dt.datetime | None = None,
                 smtputf8: bool = False, signer: Callable[[bytes], bytes] | None = None,
                 envelope_sender: Callable[[str, int], str] | None = None) -> None:
        self.issue_id = email_.issue_id
        self._envelope = None if test else envelope_sender  # VERP (newsletter.bounces.verp); proofs go plain
        self.sender_email = sender_email
        self._secret = secret
        self._test = test
        self._smtputf8 = smtputf8
        self._signer = signer  # DKIM: signs the finished bytes, once per message (newsletter/dkim.py)
        self._base = public_base_url.rstrip("/")
        self._mailto = unsubscribe_mailto
        self._domain = sender_email.rpartition("@")[2]
        subject = ("[TEST] " if test else "") + email_.subject
        when = date or dt.datetime.now(dt.timezone.utc)
        boundary = "nl-" + hashlib.sha256((email_.html + email_.text).encode("utf-8")).hexdigest()[:32]
        head = [
            f"From: {format_address(sender_name, sender_email, header='From')}\r\n",
            f"Subject: {encode_header('Subject', subject)}\r\n",
            f"Date: {email.utils.format_datetime(when)}\r\n",
            "MIME-Version: 1.0\r\n",
            f"List-Id: {_list_id(sender_name, list_id)}\r\n",
        ]
        if reply_to:
            head.append(f"Reply-To: {format_address('', reply_to, header='Reply-To')}\r\n")
        self._head_static = "".join(head).encode("ascii")
        self._body_head = (
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode("ascii")
        self._between = (
            f"\r\n--{boundary}\r\n"
            'Content-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode("ascii")
        self._tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        self._text = _Part(*_pieces(email_.text), html=False)
        self._html = _Part(*_pieces(email_.html), html=True)
        for piece in self._text.statics + self._html.statics:
            if boundary.encode() in piece:
                raise HeaderError("Content-Type", "MIME boundary collides with the content")
        # SMTP's DATA payload is built from pieces dot-stuffed here, once per issue, so no transport scans
        # every ~57 KB message for lines that start with a dot (newsletter.transports.smtp_wire). Every piece
        # ends with a line break (or is empty), so each starts a line and can be stuffed on its own.
        statics = (self._head_static, self._body_head, self._between, self._tail,
                   *self._text.statics, *self._html.statics)
        self._wire = all(piece.endswith(b"\n") for piece in statics if piece)  # else: the transport stuffs
        self._wire_text, self._wire_html = self._text.stuffed(), self._html.stuffed()
        self._wire_head_static, self._wire_body_head, self._wire_between, self._wire_tail = (
            _stuffed(piece) for piece in statics[:4])
        self.web_url = f"{self._base}/issues/{self.issue_id}"
        # Per issue, not per recipient: the message-id key and the encoded web address.
        self._message_id_key = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self._web_text = _encode_value(self.web_url, html=False)
        self._web_html = _encode_value(self.web_url, html=True)

    def values(self, subscriber: Subscriber) -> dict[str, str]:
        if self._test:  # a proof names no subscriber: say so, and send its unsubscribe link to a page that says so
            return {"greeting": PROOF_GREETING, "unsubscribe_url": f"{self._base}/unsubscribe?proof=1",
                    "web_url": self.web_url}
        token = make_token(self._secret, "unsubscribe", subscriber.id, subscriber.email)
        return {"greeting": greeting(subscriber.first_name),
                "unsubscribe_url": f"{self._base}/unsubscribe/{token}",
                "web_url": self.web_url}

    def message(self, subscriber: Subscriber) -> Message:
        values = self.values(subscriber)
        unsubscribe = values["unsubscribe_url"]
        if self._test:  # proofs: a fresh id each time, or mail clients hide the second proof as a duplicate
            message_id = email.utils.make_msgid(idstring=f"proof.{self.issue_id}", domain=self._domain)[1:-1]
        else:
            message_id = _message_id(self._message_id_key, self.issue_id, subscriber.id, self._domain)
        # A non-ASCII local part (jörg@…) can only travel with SMTPUTF8 (RFC 6531): a UTF-8 To header
        # here, the SMTPUTF8 option in the transport, and a clear per-recipient failure where it is missing.
        utf8 = self._smtputf8 or not subscriber.email.rpartition("@")[0].isascii()
        list_unsub = f"<{unsubscribe}>"
        if self._mailto and not self._test:
            token = unsubscribe.rsplit("/", 1)[1]
            subject = "unsubscribe%20" + token if _URL_SAFE.fullmatch(token) else quote("unsubscribe " + token)
            list_unsub += f",\r\n <mailto:{self._mailto}?subject={subject}>"
        head = (
            f"To: {format_address(subscriber.name, subscriber.email, smtputf8=utf8)}\r\n"
            f"Message-ID: <{message_id}>\r\n"
            f"List-Unsubscribe: {list_unsub}\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        ).encode("utf-8" if utf8 else "ascii")
        text_values = {k: self._web_text if k == "web_url" else _encode_value(v, html=False) for k, v in values.items()}
        html_values = {k: self._web_html if k == "web_url" else _encode_value(v, html=True) for k, v in values.items()}
        data = b"".join([self._head_static, head, self._body_head, *self._text.render(text_values),
                         self._between, *self._html.render(html_values), self._tail])
        # The same pieces dot-stuffed: the issue's once (in __init__), this recipient's few hundred bytes here.
        payload: list[bytes] | None = None
        if self._wire:
            payload = [self._wire_head_static, _stuffed(head), self._wire_body_head,
                       *self._text.render({k: _stuffed(v) for k, v in text_values.items()}, self._wire_text),
                       self._wire_between,
                       *self._html.render({k: _stuffed(v) for k, v in html_values.items()}, self._wire_html),
                       self._wire_tail, b".\r\n"]
        if self._signer is not None:
            signed = self._signer(data)
            prefix = signed[:len(signed) - len(data)]
            # A signer that puts its header in front (DKIM does) keeps the payload; any other change drops it.
            if payload is not None and signed.endswith(data) and (not prefix or prefix.endswith(b"\n")):
                payload.insert(0, _stuffed(prefix))
            else:
                payload = None
            data = signed
        sender = self._envelope(self.issue_id, subscriber.id) if self._envelope else self.sender_email
        return Message.with_payload(tuple(payload) if payload is not None else None, issue_id=self.issue_id,
                                    recipient=envelope_address(subscriber.email), sender=sender,
                                    message_id=message_id, data=data)


def prepare(email_: RenderedEmail, settings: object, *, secret: str, test: bool = False,
            date: dt.datetime | None = None, signer: Callable[[bytes], bytes] | None = None) -> Personaliser:
    """Build the per-issue skeleton from Settings (sender, list id, base URL, VERP bounce address)."""
    s = settings
    verp = getattr(s, "verp_address", None)
    envelope = None
    if verp:
        from .bounces.verp import Verp

        envelope = Verp(secret, verp).address
    return Personaliser(email_, sender_name=s.sender_name, sender_email=s.sender_email,  # type: ignore[attr-defined]
                        list_id=s.list_id, public_base_url=s.public_base_url,  # type: ignore[attr-defined]
                        unsubscribe_mailto=s.unsubscribe_mailto, reply_to=s.reply_to,  # type: ignore[attr-defined]
                        secret=secret, test=test, date=date, signer=signer, envelope_sender=envelope)


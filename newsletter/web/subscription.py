"""Subscription links: who an unsubscribe/resubscribe token names, signed confirm links, the confirmation email.

A confirm link signs the address itself (URLSafeTimedSerializer, salt "newsletter.confirm-email"):
the subscribers table has no 'pending' status, and a row must not exist before the address is
confirmed, so there is no subscriber id to put in a token yet.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import html
from email.message import EmailMessage

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from ..errors import SubscriberError, TokenError
from ..headers import envelope_address, format_address, header_line
from ..models import Message, Subscriber
from ..settings import Settings
from ..store import Connection
from ..store.subscribers import clean_name, get, normalise_address
from ..tokens import digest_matches, read_token

__all__ = [
    "RESUBSCRIBE_MAX_AGE",
    "CONFIRM_MAX_AGE",
    "CONFIRM_SALT",
    "subscriber_for_token",
    "confirm_token",
    "read_confirm_token",
    "read_confirm_link",
    "mask_address",
    "confirmation_message",
]

#: Unsubscribe links carry no expiry (old emails must keep working); the others do.
RESUBSCRIBE_MAX_AGE = 30 * 24 * 3600
CONFIRM_MAX_AGE = 2 * 24 * 3600
CONFIRM_SALT = "newsletter.confirm-email"
_MAX_CONFIRM_TOKEN = 2048


def subscriber_for_token(conn: Connection, secret: str, purpose: str, token: str, *,
                         max_age: int | None = None) -> Subscriber:
    """The subscriber a token names; TokenError if it is forged, expired, or made for another address."""
    subscriber_id, digest = read_token(secret, purpose, token, max_age=max_age)
    subscriber = get(conn, subscriber_id)
    if subscriber is None or not digest_matches(secret, digest, subscriber.email):
        raise TokenError("this link is not valid", reason="invalid")
    return subscriber


def _confirm_serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=CONFIRM_SALT)


def confirm_token(secret: str, address: str, name: str = "") -> str:
    """A link token that subscribes `address` (with `name`) once followed, within CONFIRM_MAX_AGE."""
    return _confirm_serializer(secret).dumps({"email": address, "name": name})


def read_confirm_token(secret: str, token: str) -> tuple[str, str]:
    """(address, name) from a confirm token; TokenError if forged, expired or garbled."""
    address, name, _ = read_confirm_link(secret, token)
    return address, name


def read_confirm_link(secret: str, token: str) -> tuple[str, str, dt.datetime]:
    """(address, name, when the link was made) from a confirm token; TokenError if forged, expired or garbled."""
    if not token or len(token) > _MAX_CONFIRM_TOKEN or not token.isascii():
        raise TokenError("this link is not valid", reason="malformed")
    try:
        data, issued = _confirm_serializer(secret).loads(token, max_age=CONFIRM_MAX_AGE, return_timestamp=True)
    except SignatureExpired as exc:
        raise TokenError("this link has expired", reason="expired") from exc
    except BadData as exc:
        raise TokenError("this link is not valid", reason="invalid") from exc
    if not isinstance(data, dict) or not isinstance(data.get("email"), str) or not isinstance(data.get("name", ""), str):
        raise TokenError("this link is not valid", reason="malformed")
    try:
        return normalise_address(data["email"]), clean_name(data.get("name", "")), issued
    except SubscriberError as exc:
        raise TokenError("this link is not valid", reason="malformed") from exc


def mask_address(address: str) -> str:
    """`a•••@example.org`: enough for someone with several addresses to recognise which one."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}" if local else address


def _texts(settings: Settings, confirm_url: str) -> tuple[str, str, str]:
    subject = f"Please confirm your subscription to {settings.site_name}"
    days = CONFIRM_MAX_AGE // 86400
    text = (
        "Hello,\n\n"
        f"Someone, hopefully you, asked to receive {settings.site_name} at this address.\n"
        "To confirm, open this link and press the button on the page:\n\n"
        f"{confirm_url}\n\n"
        f"The link works for {days} days. If you did not ask for this, ignore this email:\n"
        "you will not be subscribed and we will not write again.\n\n"
        f"-- \n{settings.site_name}\n{settings.postal_address}\n"
    )
    e = html.escape
    font = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
    page = (
        f'<!doctype html>\n<html lang="{e(settings.language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(subject)}</title></head>\n"
        f'<body style="margin:0;padding:24px 16px;background:#eef1f4;font-family:{e(font)};color:#1f2933;">\n'
        '<div style="max-width:560px;margin:0 auto;background:#ffffff;border-radius:8px;padding:24px;'
        'font-size:17px;line-height:1.6;">\n'
        f'<p style="margin:0 0 16px;color:#0b5f5a;font-size:14px;font-weight:700;letter-spacing:0.04em;'
        f'text-transform:uppercase;">{e(settings.site_name)}</p>\n'
        "<p>Hello,</p>\n"
        f"<p>Someone, hopefully you, asked to receive {e(settings.site_name)} at this address. "
        "To confirm, follow the link below and press the button on the page it opens.</p>\n"
        f'<p><a href="{e(confirm_url)}" style="display:inline-block;background:#0b5f5a;color:#ffffff;'
        'font-weight:700;text-decoration:none;padding:14px 24px;border-radius:6px;">Confirm my subscription</a></p>\n'
        f'<p style="font-size:14px;color:#52606d;">Or copy this link into your browser: '
        f'<a href="{e(confirm_url)}" style="color:#0b5f5a;word-break:break-all;">{e(confirm_url)}</a></p>\n'
        f"<p>The link works for {days} days. If you did not ask for this, ignore this email: you will not be "
        "subscribed and we will not write again.</p>\n"
        f'<p style="font-size:14px;color:#52606d;margin:24px 0 0;">{e(settings.postal_address)}</p>\n'
        "</div>\n</body></html>\n"
    )
    return subject, text, page


def confirmation_message(settings: Settings, address: str, confirm_url: str, *,
                         when: dt.datetime | None = None) -> Message:
    """The double opt-in email; HeaderError if `address` cannot be written in a To header."""
    subject, text, page = _texts(settings, confirm_url)
    body = EmailMessage(policy=email.policy.SMTP)
    body.set_content(text, cte="quoted-printable")
    body.add_alternative(page, subtype="html", cte="quoted-printable")
    domain = settings.sender_email.rpartition("@")[2]
    message_id = email.utils.make_msgid(idstring="confirm", domain=domain)[1:-1]
    head = [
        f"From: {format_address(settings.sender_name, settings.sender_email, header='From')}\r\n",
        f"To: {format_address('', address)}\r\n",
        header_line("Subject", subject),
        f"Date: {email.utils.format_datetime(when or dt.datetime.now(dt.UTC))}\r\n",
        f"Message-ID: <{message_id}>\r\n",
        "Auto-Submitted: auto-generated\r\n",
    ]
    if settings.reply_to:
        head.append(f"Reply-To: {format_address('', settings.reply_to, header='Reply-To')}\r\n")
    data = "".join(head).encode("ascii") + body.as_bytes()
    return Message(issue_id="subscribe-confirmation", recipient=envelope_address(address), sender=settings.sender_email,
                   message_id=message_id, data=data)

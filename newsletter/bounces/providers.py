"""Provider webhooks: verify each provider's scheme, then turn its payload into ProviderEvents.

Schemes, as each provider documents them:
  Postmark  HTTP basic auth credentials set on the webhook (key "user:password").
  Mailgun   signature.signature = hex HMAC-SHA256(signing key, timestamp + token).
  SendGrid  X-Twilio-Email-Event-Webhook-Signature: base64 ECDSA P-256/SHA-256 over timestamp + body,
            checked with the verification (public) key SendGrid shows, base64 DER.
  SES       via SNS (newsletter.bounces.sns); Message holds the SES notification JSON.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.bounces.parse import severity

__all__ = ["WebhookRefused", "ProviderEvent", "REPLAY_WINDOW", "postmark_events", "mailgun_events",
           "sendgrid_events", "ses_events"]

REPLAY_WINDOW = dt.timedelta(minutes=10)


class WebhookRefused(ValueError):
    """Verification failed (401) or the body is not what the provider sends (400)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ProviderEvent:
    kind: str  # hard | soft | complaint
    address: str
    ref: str  # the provider's id for this event: a retried delivery is recognised
    code: str = ""
    diagnostic: str = ""
    message_id: str | None = None  # our Message-ID when the provider passes it on


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRefused(f"the body is not JSON ({exc})", 400) from None


def _fresh(timestamp: object, now: dt.datetime) -> None:
    try:
        moment = dt.datetime.fromtimestamp(int(str(timestamp)), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise WebhookRefused("the timestamp is missing or not a number") from None
    if abs(now - moment) > REPLAY_WINDOW:
        raise WebhookRefused(f"the timestamp {moment.isoformat()} is more than {REPLAY_WINDOW} away (a replay?)")


def _msgid(value: object) -> str | None:
    text = str(value or "").strip().strip("<>")
    return text or None


# --- Postmark -----------------------------------------------------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked", "Undeliverable"}


def postmark_events(body: bytes, authorization: str | None, *, key: str) -> list[ProviderEvent]:
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        given = base64.b64decode(encoded, validate=True) if scheme.lower() == "basic" else b""
    except binascii.Error:
        given = b""
    if not given or not hmac.compare_digest(given, key.encode("utf-8")):
        raise WebhookRefused("wrong or missing basic-auth credentials")
    data = _json(body)
    if not isinstance(data, dict):
        raise WebhookRefused("expected one JSON object", 400)
    record, kind, address = data.get("RecordType"), data.get("Type"), str(data.get("Email") or "")
    ref = f"{record}:{data.get('ID')}"
    if record == "SpamComplaint" or kind == "SpamComplaint":
        return [ProviderEvent("complaint", address, ref, "", "spam complaint", _msgid(data.get("MessageID")))]
    if record != "Bounce" or kind not in _POSTMARK_HARD | _POSTMARK_SOFT:
        return []  # deliveries, opens, auto-responders: not ours to count
    details = f"{data.get('Description') or ''} {data.get('Details') or ''}".strip()
    return [ProviderEvent("hard" if kind in _POSTMARK_HARD else "soft", address, ref, str(kind), details[:500])]


# --- Mailgun ------------------------------------------------------------------------------------------


def mailgun_events(body: bytes, *, key: str, now: dt.datetime) -> list[ProviderEvent]:
    data = _json(body)
    signature = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(signature, dict):
        raise WebhookRefused("no signature object")
    timestamp, token, given = (str(signature.get(k) or "") for k in ("timestamp", "token", "signature"))
    expected = hmac.new(key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise WebhookRefused("the Mailgun signature does not match")
    _fresh(timestamp, now)
    event = data.get("event-data")
    if not isinstance(event, dict):
        raise WebhookRefused("no event-data object", 400)
    name, address, ref = event.get("event"), str(event.get("recipient") or ""), f"mailgun:{event.get('id')}"
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    message_id = _msgid(headers.get("message-id"))
    if name == "complained":
        return [ProviderEvent("complaint", address, ref, "", "spam complaint", message_id)]
    if name != "failed" or event.get("severity") != "permanent":
        return []  # temporary failures are retried by Mailgun: not a bounce yet
    status = event.get("delivery-status") if isinstance(event.get("delivery-status"), dict) else {}
    code = str(status.get("enhanced-code") or status.get("code") or "")
    words = f"{status.get('code') or ''} {status.get('message') or ''} {status.get('description') or ''}".strip()
    return [ProviderEvent(severity(code, words, permanent=True), address, ref, code, words[:500], message_id)]


# --- SendGrid -----------------------------------------------------------------------------------------


def sendgrid_events(body: bytes, headers: Mapping[str, str], *, key: str, now: dt.datetime) -> list[ProviderEvent]:
    signature = headers.get("x-twilio-email-event-webhook-signature", "")
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp", "")
    try:
        public = serialization.load_der_public_key(base64.b64decode(key))
        raw_signature = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise WebhookRefused("missing or malformed signature (or a bad verification key)") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise WebhookRefused("the SendGrid verification key is not an ECDSA key")
    try:
        public.verify(raw_signature, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise WebhookRefused("the SendGrid signature does not match") from None
    _fresh(timestamp, now)
    data = _json(body)
    if not isinstance(data, list):
        raise WebhookRefused("expected a JSON list of events", 400)
    out = []
    for event in data:
        if not isinstance(event, dict):
            continue
        name, address = event.get("event"), str(event.get("email") or "")
        ref, message_id = f"sendgrid:{event.get('sg_event_id')}", _msgid(event.get("smtp-id"))
        if name == "spamreport":
            out.append(ProviderEvent("complaint", address, ref, "", "spam report", message_id))
        elif name == "bounce":
            code, words = str(event.get("status") or ""), str(event.get("reason") or "")
            kind = "soft" if event.get("type") == "blocked" else severity(code, words, permanent=True)
            out.append(ProviderEvent(kind, address, ref, code, words[:500], message_id))
    return out


# --- Amazon SES (inside an SNS notification) ----------------------------------------------------------


def ses_events(message: str, sns_message_id: str) -> list[ProviderEvent]:
    try:
        data = json.loads(message)
    except json.JSONDecodeError:
        raise WebhookRefused("the SNS Message is not an SES notification (not JSON)", 400) from None
    if not isinstance(data, dict):
        raise WebhookRefused("the SNS Message is not an SES notification", 400)
    kind = data.get("notificationType") or data.get("eventType")
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    message_id = _msgid(common.get("messageId"))
    if kind == "Complaint":
        complaint = data.get("complaint") if isinstance(data.get("complaint"), dict) else {}
        ref = str(complaint.get("feedbackId") or sns_message_id)
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        return [ProviderEvent("complaint", str(r.get("emailAddress") or ""), f"{ref}:{i}", "", f"complaint: {feedback}",
                              message_id)
                for i, r in enumerate(complaint.get("complainedRecipients") or []) if isinstance(r, dict)]
    if kind != "Bounce":
        return []
    bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
    permanent = bounce.get("bounceType") == "Permanent"
    ref = str(bounce.get("feedbackId") or sns_message_id)
    out = []
    for i, r in enumerate(bounce.get("bouncedRecipients") or []):
        if not isinstance(r, dict):
            continue
        code, words = str(r.get("status") or ""), str(r.get("diagnosticCode") or bounce.get("bounceSubType") or "")
        grade = severity(code, words, permanent=True) if permanent else "soft"
        out.append(ProviderEvent(grade, str(r.get("emailAddress") or ""), f"{ref}:{i}", code, words[:500], message_id))
    return out

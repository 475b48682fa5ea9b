"""Bounce parsing: raw message bytes -> Verdict (hard/soft bounce, complaint, auto-reply, or nothing of ours).

Detection of which recipients failed is flufl.bounce's (Mailman's detectors, RFC 3464 DSNs and the
common non-standard shapes); this module adds what flufl.bounce does not give: the status code and
diagnostic text, hard versus soft, ARF complaints (RFC 5965), RFC 3834 auto-replies, the original
Message-ID and the addresses the report was sent to (where a VERP token lives).
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
import re
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

__all__ = ["Verdict", "KINDS", "classify", "severity", "BounceParseError"]

#: hard/soft: a bounce; complaint: an ARF report; auto-reply and ignored: never counted.
KINDS = ("hard", "soft", "complaint", "auto-reply", "ignored")

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC_CODE = re.compile(r"\b([45]\d\d)[ -]")
_MESSAGE_ID_LINE = re.compile(r"^\s*Message-ID:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)
# Wording used only to grade a failure whose code says nothing (x.0.0 or none): not for detection.
_NO_SUCH_USER = re.compile(
    r"no such (user|mailbox|recipient)|user unknown|unknown user|does not exist|doesn.t exist|"
    r"doesn.t have an? |not found|unrouteable|invalid (recipient|mailbox|address)|no mailbox|"
    r"mailbox unavailable|address rejected|(account|mailbox) (is )?(disabled|inactive)|recipient not found",
    re.IGNORECASE)
_TRANSIENT_WORDS = re.compile(
    r"quota|mailbox (is )?full|over ?quota|insufficient (system )?storage|retry time|timed? ?out|temporar|"
    r"try again later|greylist", re.IGNORECASE)
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|auto:|vacation|"
    r"away from (my|the) (desk|office)|abwesenheit|réponse automatique)", re.IGNORECASE)
_COMPLAINT_TYPES = frozenset({"abuse", "fraud", "other", "virus"})
_ENVELOPE_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")


class BounceParseError(ValueError):
    """A message claims to be a report but cannot be read as one (a malformed DSN or ARF)."""


@dataclass(frozen=True)
class Verdict:
    """What one message means for us; `addressed_to` holds where a VERP token may be."""

    kind: str
    recipients: tuple[str, ...] = ()  # the original recipients the report names (lower-cased)
    status: str = ""  # enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's words, one line
    original_message_id: str | None = None
    addressed_to: tuple[str, ...] = ()
    feedback_type: str = ""  # ARF Feedback-Type
    reason: str = ""  # why it was ignored, for the log

    @property
    def counted(self) -> bool:
        return self.kind in ("hard", "soft", "complaint")


def severity(status: str, diagnostic: str, *, permanent: bool) -> str:
    """hard or soft: only a permanent failure about the address itself (5.1.x, 5.2.1, 5.4.1, 5.4.4, or
    another 5.x.x whose words say the mailbox does not exist) suppresses at once; quotas, policy and
    spam blocks (5.7.x) are about the moment or the sender, so they only add to the score."""
    match = _STATUS.search(status or "") or _STATUS.search(diagnostic or "")
    specific = False
    if match:
        klass, subject, detail = match.group(1), int(match.group(2)), int(match.group(3))
        if klass != "5":
            return "soft"
        if subject == 1 or (subject, detail) in ((2, 1), (4, 1), (4, 4)):
            return "hard"
        if subject == 7:  # policy, spam, authentication: about the sender, not the address
            return "soft"
        specific = (subject, detail) != (0, 0)
    if _TRANSIENT_WORDS.search(diagnostic or ""):
        return "soft"
    if _NO_SUCH_USER.search(diagnostic or ""):
        return "hard" if permanent else "soft"
    if specific:  # 5.2.2, 5.3.4, 5.5.x ... without words saying the address is gone
        return "soft"
    basic = _BASIC_CODE.search(diagnostic or "")
    if basic:
        return "hard" if basic.group(1) in ("550", "551", "553") and permanent else "soft"
    return "hard" if permanent else "soft"


def _one_line(text: str, limit: int = 500) -> str:
    return " ".join(str(text).split())[:limit]


def _report_type(msg: email.message.Message) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "", header="content-type") or "").lower()


def _original_headers(msg: email.message.Message) -> email.message.Message | None:
    """The returned message's headers: a message/rfc822 part, or text/rfc822-headers."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global") and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, email.message.Message):
                return inner
        if ctype in ("text/rfc822-headers", "text/rfc822-header"):
            payload = part.get_payload(decode=True) or b""
            return email.parser.BytesHeaderParser().parsebytes(payload)
    return None


def _original_message_id(msg: email.message.Message, original: email.message.Message | None) -> str | None:
    if original is not None and original.get("message-id"):
        found = re.search(r"<([^<>\s]+)>", str(original["message-id"]))
        if found:
            return found.group(1)
    # Non-DSN bounces (qmail, Exim) quote the original headers inline in the text.
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True) or b""
            found = _MESSAGE_ID_LINE.search(payload.decode("utf-8", "replace"))
            if found:
                return found.group(1)
    return None


def _addressed_to(msg: email.message.Message, original: email.message.Message | None) -> tuple[str, ...]:
    seen: list[str] = []
    values = [str(v) for name in _ENVELOPE_HEADERS for v in msg.get_all(name, [])]
    if original is not None:
        values += [str(v) for v in original.get_all("return-path", [])]
    for _, address in getaddresses(values):
        address = address.strip().lower()
        if "@" in address and address not in seen:
            seen.append(address)
    return tuple(seen)


def _text(msg: email.message.Message) -> str:
    """The human-readable part of a bounce, for codes and wording (first text/plain, else the body)."""
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            charset = part.get_content_charset() or "utf-8"
            try:
                return payload.decode(charset, "replace")
            except LookupError:
                return payload.decode("utf-8", "replace")
    return ""


def _dsn(msg: email.message.Message, base: dict[str, object]) -> Verdict:
    """RFC 3464: the per-recipient blocks carry Action, Status and Diagnostic-Code."""
    blocks = []
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            payload = part.get_payload()
            if isinstance(payload, list):
                blocks.extend(b for b in payload[1:] if isinstance(b, email.message.Message))
    failed = [b for b in blocks if str(b.get("action", "")).strip().lower().startswith(("failed", "error"))]
    delayed = [b for b in blocks if str(b.get("action", "")).strip().lower().startswith("delayed")]
    if not blocks or not any(b.get("final-recipient") or b.get("original-recipient") for b in blocks):
        raise BounceParseError("a delivery-status report without a Final-Recipient field")
    if not failed:
        why = "a delay warning (the server is still trying)" if delayed else "a success or relay notice"
        return Verdict("ignored", reason=why, **base)  # type: ignore[arg-type]
    recipients, worst = [], ""
    first = failed[0]
    for block in failed:
        raw = str(block.get("original-recipient") or block.get("final-recipient") or "")
        address = parseaddr(raw.partition(";")[2].strip() or raw)[1].strip().lower()
        if address and address not in recipients:
            recipients.append(address)
    status = _one_line(first.get("status", ""), 20)
    diagnostic = _one_line(str(first.get("diagnostic-code", "")).partition(";")[2] or first.get("diagnostic-code", ""))
    kinds = {severity(_one_line(b.get("status", ""), 20), str(b.get("diagnostic-code", "")), permanent=True)
             for b in failed}
    worst = "hard" if "hard" in kinds else "soft"
    if not recipients:
        raise BounceParseError("a failed delivery-status block names no recipient address")
    return Verdict(worst, tuple(recipients), status, diagnostic, **base)  # type: ignore[arg-type]


def _arf(msg: email.message.Message, base: dict[str, object], original: email.message.Message | None) -> Verdict:
    """RFC 5965: message/feedback-report holds Feedback-Type and, when not redacted, Original-Rcpt-To."""
    report = None
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
                report = payload[0]
            elif isinstance(payload, str):
                report = email.parser.HeaderParser().parsestr(payload)
    if report is None or not report.get("feedback-type"):
        raise BounceParseError("a feedback report without a Feedback-Type field")
    feedback = _one_line(report["feedback-type"], 40).lower()
    if feedback not in _COMPLAINT_TYPES:
        return Verdict("ignored", feedback_type=feedback, reason=f"feedback type {feedback!r} is not a complaint",
                       **base)  # type: ignore[arg-type]
    raw = [str(v) for v in report.get_all("original-rcpt-to", []) + report.get_all("removal-recipient", [])]
    if not raw and original is not None:
        raw = [str(v) for v in original.get_all("to", [])]
    recipients = tuple(dict.fromkeys(a.lower() for _, a in getaddresses(raw) if "@" in a))
    return Verdict("complaint", recipients, "", f"feedback report: {feedback}"
                   + (f" from {_one_line(report['reported-domain'], 80)}" if report.get("reported-domain") else ""),
                   feedback_type=feedback, **base)  # type: ignore[arg-type]


def _is_auto_reply(msg: email.message.Message) -> str:
    auto = str(msg.get("auto-submitted", "")).strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for header in ("x-autoreply", "x-autorespond", "x-auto-response-suppress", "x-autoresponse"):
        if msg.get(header):
            return f"{header} header"
    if str(msg.get("precedence", "")).strip().lower() in ("auto_reply", "auto-reply"):
        return "Precedence: auto_reply"
    if _AUTO_SUBJECT.match(str(msg.get("subject", ""))):
        return "an out-of-office subject"
    return ""


def classify(data: bytes) -> Verdict:
    """Read one message; BounceParseError for a report that cannot be read (DSN or ARF)."""
    msg = email.message_from_bytes(data)  # compat32, as flufl.bounce expects
    original = _original_headers(msg)
    base: dict[str, object] = {"original_message_id": _original_message_id(msg, original),
                               "addressed_to": _addressed_to(msg, original)}
    report_type = _report_type(msg)
    if msg.get_content_type() == "multipart/report" and not msg.is_multipart():
        raise BounceParseError("a multipart/report whose parts cannot be found (missing or wrong boundary)")
    if report_type == "feedback-report":
        return _arf(msg, base, original)
    if report_type == "delivery-status":
        return _dsn(msg, base)
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # a detector choking on a strange message is "not understood", never a crash
        raise BounceParseError(f"the bounce detectors could not read it ({type(exc).__name__}: {exc})") from exc
    if permanent or temporary:
        text = _text(msg)
        recipients = tuple(sorted({a.decode("ascii", "replace").strip().lower() for a in permanent | temporary}))
        status_match = _STATUS.search(text)
        status = ".".join(status_match.groups()) if status_match else ""
        diagnostic = _diagnostic_line(text, recipients)
        kind = severity(status, diagnostic or text, permanent=bool(permanent))
        return Verdict(kind, recipients, status, diagnostic, **base)  # type: ignore[arg-type]
    why = _is_auto_reply(msg)
    if why:
        return Verdict("auto-reply", reason=why, **base)  # type: ignore[arg-type]
    return Verdict("ignored", reason="not a bounce, complaint or auto-reply", **base)  # type: ignore[arg-type]


def _diagnostic_line(text: str, recipients: tuple[str, ...]) -> str:
    """The lines after the failed address in a non-DSN bounce (where servers put the reason)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if any(r in line.lower() for r in recipients):
            tail = " ".join(lines[index: index + 4])
            return _one_line(tail)
    return _one_line(" ".join(lines[:6]))

"""Header values that cannot inject headers: cleaned text, RFC 2047 encoded words, safe addresses."""

from __future__ import annotations

import base64
import re
from email.utils import formataddr

import idna

from newsletter.errors import HeaderError

__all__ = [
    "MAX_LINE",
    "strip_controls",
    "clean_header_value",
    "encode_header",
    "header_line",
    "format_address",
    "envelope_address",
]

#: RFC 5322's recommended line length; encoded headers are folded to stay within it.
MAX_LINE = 78

# Everything a mail reader, the email package or a terminal may treat as a line break.
_LINE_BREAKS = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")
# The remaining C0 and C1 controls, DEL, bidi embeddings/overrides/isolates (display spoofing) and
# lone surrogates (not encodable as UTF-8).
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_BLANKS = re.compile("[ \t]+")
# RFC 5322 ftext: printable ASCII except the colon.
_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")
# A local part we can emit unquoted (RFC 5322 dot-atom); anything else needs quoting we do not attempt.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\Z")
_ADDRESS_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z|\[IPv6:[0-9A-Fa-f:.]+\]\Z")

_ENCODED_PREFIX = "=?utf-8?b?"
_ENCODED_SUFFIX = "?="
_MAX_ENCODED_WORD = 75  # RFC 2047 section 2


def strip_controls(text: str) -> str:
    """Line breaks become a space, other control characters vanish, runs of blanks collapse; stripped."""
    text = _LINE_BREAKS.sub(" ", text)
    text = _CONTROLS.sub("", text)
    return _BLANKS.sub(" ", text).strip()


def clean_header_value(name: str, value: str, *, max_length: int = 998) -> str:
    """`value` with no way to start a new header line; HeaderError if nothing is left or it is too long."""
    cleaned = strip_controls(value)
    if value and not cleaned:
        raise HeaderError(name, "value is empty once control characters and line breaks are removed")
    if len(cleaned) > max_length:
        raise HeaderError(name, f"value is {len(cleaned)} characters long (limit {max_length})")
    return cleaned


def _check_name(name: str) -> None:
    if not _HEADER_NAME.match(name):
        raise HeaderError(name, "not a valid header name (printable ASCII, no colon or space)")


def _needs_encoding(text: str) -> bool:
    # An ASCII "=?...?=" is decoded by mail readers, so "=?utf-8?q?=0A?=" must travel encoded.
    return not text.isascii() or "=?" in text


def _encoded_length(text: str) -> int:
    return len(_ENCODED_PREFIX) + len(_ENCODED_SUFFIX) + 4 * -(-len(text.encode()) // 3)


def _encoded_words(text: str, first_room: int) -> list[str]:
    """Base64 encoded words for `text`, each line within MAX_LINE, split after a space where possible.

    Splitting after a space keeps words whole for readers that (against RFC 2047) show a space
    between adjacent encoded words in a display name, as Python's own address parser does.
    """
    words: list[str] = []
    room = first_room
    chunk = ""
    for char in text:
        candidate = chunk + char
        if chunk and _encoded_length(candidate) > min(room, _MAX_ENCODED_WORD):
            cut = chunk.rfind(" ") + 1
            if cut <= 0 or cut == len(chunk):
                cut = len(chunk)
            words.append(_encode_word(chunk[:cut]))
            room = MAX_LINE - 1  # continuation lines start with one space
            chunk = chunk[cut:] + char
        else:
            chunk = candidate
    if chunk or not words:
        words.append(_encode_word(chunk))
    return words


def _encode_word(chunk: str) -> str:
    return _ENCODED_PREFIX + base64.b64encode(chunk.encode()).decode("ascii") + _ENCODED_SUFFIX


def _fold_plain(text: str, first_room: int) -> str | None:
    """Fold ASCII text at spaces so every line fits; None when a single word is too long to fit."""
    lines: list[str] = []
    current = ""
    room = first_room
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= room:
            current = candidate
            continue
        if not current or len(word) > MAX_LINE - 1:
            return None
        lines.append(current)
        current, room = word, MAX_LINE - 1
    lines.append(current)
    return "\r\n ".join(lines)


def encode_header(name: str, value: str, *, max_length: int = 998) -> str:
    """The cleaned value of header `name`, as plain ASCII or RFC 2047 words, folded with CRLF + space."""
    _check_name(name)
    cleaned = clean_header_value(name, value, max_length=max_length)
    first_room = MAX_LINE - len(name) - 2  # "Name: " precedes the value on the first line
    if not _needs_encoding(cleaned):
        folded = _fold_plain(cleaned, first_room)
        if folded is not None:
            return folded
    return "\r\n ".join(_encoded_words(cleaned, first_room))


def header_line(name: str, value: str) -> str:
    """A complete header line, `Name: value` + CRLF, with the value passed through encode_header."""
    return f"{name}: {encode_header(name, value)}\r\n"


def _ascii_address(header: str, address: str, *, smtputf8: bool) -> str:
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise HeaderError(header, f"not an email address: {address!r}")
    if "=?" in local:
        raise HeaderError(header, f"{address!r} looks like an encoded word (=?...?=); readers would decode it")
    if not local.isascii():
        if not smtputf8:
            raise HeaderError(header, f"{address!r} has a non-ASCII local part; it needs SMTPUTF8 (smtputf8=True)")
        if _CONTROLS.search(local) or _LINE_BREAKS.search(local) or any(c.isspace() for c in local):
            raise HeaderError(header, f"invalid characters in {address!r}")
        local_ok = all(c in ".!#$%&'*+/=?^_`{|}~-" or c.isalnum() or not c.isascii() for c in local)
    else:
        local_ok = bool(_DOT_ATOM.match(local))
    if not local_ok:
        raise HeaderError(header, f"unsupported characters in the local part of {address!r}")
    if _ADDRESS_LITERAL.match(domain):
        return f"{local}@{domain}"
    if not domain.isascii():
        if smtputf8:
            if _CONTROLS.search(domain) or any(c.isspace() or c in "<>()[],;:\\\"@" for c in domain):
                raise HeaderError(header, f"invalid domain in {address!r}")
            return f"{local}@{domain}"
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise HeaderError(header, f"invalid internationalised domain in {address!r}: {exc}") from exc
    if not _DOMAIN.match(domain):
        raise HeaderError(header, f"invalid domain in {address!r}")
    return f"{local}@{domain}"


def format_address(display_name: str, address: str, *, smtputf8: bool = False, header: str = "To") -> str:
    """`"Name" <addr>` (or encoded words for the name) ready for a From/To/Reply-To header value."""
    _check_name(header)
    addr = _ascii_address(header, address, smtputf8=smtputf8)
    name = strip_controls(display_name)[:200]
    if not name:
        return addr
    if _needs_encoding(name):
        first_room = MAX_LINE - len(header) - 2
        words = _encoded_words(name, first_room)
        last_line = len(words[-1]) + (len(header) + 2 if len(words) == 1 else 1)
        separator = " " if last_line + len(addr) + 3 <= MAX_LINE else "\r\n "
        return "\r\n ".join(words) + f"{separator}<{addr}>"
    # formataddr quotes names holding specials (commas, quotes, parentheses) and escapes " and \.
    return formataddr((name, "x@x")).removesuffix(" <x@x>") + f" <{addr}>"


def envelope_address(address: str) -> str:
    """The SMTP envelope form: an ASCII local part keeps the domain as its IDNA A-label (no SMTPUTF8 needed)."""
    local, _, domain = address.rpartition("@")
    if not local.isascii() or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return address

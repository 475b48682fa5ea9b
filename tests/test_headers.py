"""Header values cannot inject headers (CVE-2024-6923 class), round-trip through the email parser, fold properly."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.errors import HeaderError
from newsletter.headers import (
    clean_header_value,
    encode_header,
    format_address,
    header_line,
    strip_controls,
)

NASTY = [
    "=?utf-8?q?=0A?=",
    "=?utf-8?q?Hello=0D=0ABcc:_victim@example.com?=",
    "=?utf-8?b?SGVsbG8KQmNjOiB2aWN0aW1AZXhhbXBsZS5jb20=?=",  # "Hello\nBcc: victim@example.com"
    "Hello\r\nBcc: victim@example.com",
    "Hello\nX-Injected: 1",
    "a\u2028b\u2029c\u0085d",
    "null\x00byte and \x1b[31mescape",
    "tab\tand  many   spaces",
    "Ünïcödé ✉ 📰 résumé",
    "x" * 300,
    "word " * 60,
]


def parse(name: str, encoded: str) -> email.message.EmailMessage:
    raw = f"{name}: ".encode() + encoded.encode("ascii") + b"\r\nX-Probe: 1\r\n\r\nbody"
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def assert_well_formed(name: str, encoded: str) -> None:
    assert encoded.isascii()
    # The only line breaks allowed are CRLF followed by a space (folding).
    assert "\n" not in encoded.replace("\r\n ", "")
    assert "\r" not in encoded.replace("\r\n ", "")
    lines = f"{name}: {encoded}".split("\r\n")
    assert all(len(line) <= 78 for line in lines), lines


@pytest.mark.parametrize("value", NASTY)
def test_nasty_values_stay_one_header(value: str) -> None:
    encoded = encode_header("Subject", value)
    assert_well_formed("Subject", encoded)
    msg = parse("Subject", encoded)
    assert list(msg.keys()) == ["Subject", "X-Probe"]
    decoded = str(msg["Subject"])
    assert "\r" not in decoded and "\n" not in decoded
    assert decoded == clean_header_value("Subject", value)


def test_encoded_word_lookalike_is_not_decoded_by_readers() -> None:
    encoded = encode_header("Subject", "=?utf-8?q?=0A?=")
    assert encoded.startswith("=?utf-8?b?")
    assert str(parse("Subject", encoded)["Subject"]) == "=?utf-8?q?=0A?="


def test_plain_ascii_stays_readable_and_folds_at_spaces() -> None:
    assert encode_header("Subject", "Weekly research digest") == "Weekly research digest"
    long = " ".join(["science"] * 30)
    encoded = encode_header("Subject", long)
    assert "=?" not in encoded and "\r\n " in encoded
    assert str(parse("Subject", encoded)["Subject"]) == long


def test_clean_header_value_rules() -> None:
    assert clean_header_value("Subject", "  a\r\n\tb  \u2028 c ") == "a b c"
    assert clean_header_value("Subject", "") == ""
    with pytest.raises(HeaderError, match="empty"):
        clean_header_value("Subject", "\r\n\x00")
    with pytest.raises(HeaderError, match="limit 10"):
        clean_header_value("Subject", "x" * 11, max_length=10)


def test_bad_header_names_are_refused() -> None:
    for name in ("Sub ject", "Subject:", "Sübject", "X-A\r\nBcc"):
        with pytest.raises(HeaderError):
            encode_header(name, "x")


def test_header_line() -> None:
    assert header_line("Subject", "Hi\nthere") == "Subject: Hi there\r\n"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
@example("=?utf-8?q?=0A?=")
@example("=?utf-8?b?Cg==?=")
@example("=?utf-8?b?" + "QQpCY2M6IHg=" + "?= tail\n=?utf-8?q?a=0D=0Ab?=")
def test_any_text_encodes_to_exactly_one_header(value: str) -> None:
    try:
        encoded = encode_header("Subject", value)
    except HeaderError:
        # Refused only when nothing is left of a non-empty value.
        assert value and strip_controls(value) == ""
        return
    assert_well_formed("Subject", encoded)
    msg = parse("Subject", encoded)
    assert list(msg.keys()) == ["Subject", "X-Probe"]
    decoded = str(msg["Subject"])
    assert "\r" not in decoded and "\n" not in decoded
    assert decoded == clean_header_value("Subject", value)


# Names a mail reader could display; the address part is fixed.
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
@example('Doe, Jane "JJ" \\ (PhD)')
@example("=?utf-8?q?Eve=0ABcc:_x@example.com?=")
def test_any_display_name_is_one_address(name: str) -> None:
    value = format_address(name, "reader@example.com")
    assert_well_formed("To", value)
    msg = parse("To", value)
    assert list(msg.keys()) == ["To", "X-Probe"]
    addresses = msg["To"].addresses
    assert len(addresses) == 1
    assert addresses[0].addr_spec == "reader@example.com"
    shown, expected = addresses[0].display_name, strip_controls(name)[:200]
    assert "\n" not in shown and "\r" not in shown
    # Python's phrase parser shows a space between adjacent encoded words (RFC 2047 says ignore it),
    # so only ASCII names compare exactly.
    if expected.isascii() and "=?" not in expected:
        assert shown == expected
    else:
        assert "".join(shown.split()) == "".join(expected.split())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "jane@example.com"),
        ("Jane Doe", "Jane Doe <jane@example.com>"),
        ("Doe, Jane", '"Doe, Jane" <jane@example.com>'),
        ('Jane "JJ" Doe', '"Jane \\"JJ\\" Doe" <jane@example.com>'),
        ("Jürgen", "=?utf-8?b?SsO8cmdlbg==?= <jane@example.com>"),
    ],
)
def test_format_address(name: str, expected: str) -> None:
    assert format_address(name, "jane@example.com") == expected


def test_display_names_round_trip() -> None:
    for name in ("Doe, Jane", 'Jane "JJ" Doe', "Jürgen Müller", "O'Brien (Editor)", "李小龍"):
        parsed = parse("To", format_address(name, "jane@example.com"))["To"].addresses[0]
        assert parsed.display_name == name


def test_long_non_ascii_names_split_between_words() -> None:
    name = " ".join(["Bücherwürmer"] * 12)
    value = format_address(name, "jane@example.com", header="From")
    assert_well_formed("From", value)
    assert parse("From", value)["From"].addresses[0].display_name.split() == name.split()


def test_idn_domain_is_punycoded() -> None:
    assert format_address("", "user@bücher.de") == "user@xn--bcher-kva.de"


def test_non_ascii_local_part_needs_smtputf8() -> None:
    with pytest.raises(HeaderError, match="SMTPUTF8"):
        format_address("Li", "用户@例子.广告")
    assert format_address("Li", "用户@例子.广告", smtputf8=True) == "Li <用户@例子.广告>"


@pytest.mark.parametrize("address", ["no-at-sign", "a@b@", "a b@example.com", "<a>@example.com", "a@exa mple.com",
                                     "a@example.com\r\nBcc: x@y.z", "@example.com"])
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(HeaderError):
        format_address("X", address)

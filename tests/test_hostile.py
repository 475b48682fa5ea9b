"""Hostile input: header injection, live HTML from content, placeholder smuggling, bad addresses, bad files.

Headers: subjects, names and preheaders carrying CR, LF, NUL, U+2028/9, encoded-word newlines or
huge values go through Personaliser.message; the result is parsed back with email.policy.default
and must hold exactly the headers we wrote. A value that cannot be made safe is a HeaderError.

HTML: summary, feed and issue fields carrying <script>, event handlers, quote break-outs and
javascript:/data:/vbscript:/protocol-relative URLs are refused at the source or rendered inert:
the FINAL HTML (after MJML, premailer and personalisation) is parsed with lxml and has no script,
no on* attribute, and only absolute http(s)/mailto links (or __NL_ placeholders before sending).

Addresses: malformed, Unicode and IDN rows in a CSV are rejected or normalised, reported by line.
Files: every malformed summary in tests/data/bad_summaries makes `newsletter compose` exit 1 with
one line, never a traceback.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import email
import email.policy
import io
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest
from cli_inprocess import run_newsletter
from faults import copy_sample_project, fault_server, prepare_issue
from hypothesis import HealthCheck, example, given, settings as hsettings
from hypothesis import strategies as st

from newsletter.store import sqlite as db, subscribers
from newsletter.jobs.delivery import send_full
from newsletter.errors import HeaderError, SourceError, SubscriberError
from newsletter.headers import clean_header_value, strip_controls
from newsletter.models import Issue, RenderedEmail, Subscriber, Summary
from newsletter.personalise import Personaliser, prepare
from newsletter.jobs.issues import build, compose
from newsletter.render import render_email
from newsletter.settings import Settings, load_settings
from newsletter.sources.feed import read_feed
from newsletter.sources.markdown import read_markdown

REPO = Path(__file__).resolve().parent.parent
BAD = Path(__file__).parent / "data" / "bad_summaries"
SECRET = "hostile-input-secret-for-tests-only"
TRIED: Counter[str] = Counter()  # hostile inputs tried, per area
CRASHES: Counter[str] = Counter()  # crashes with a traceback (must stay empty)
FAST = hsettings(max_examples=150, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nhostile inputs tried: {sum(TRIED.values())} {dict(sorted(TRIED.items()))}; "
          f"crashes with traceback: {sum(CRASHES.values())} {dict(CRASHES)}")


@pytest.fixture(scope="module")
def site_settings() -> Settings:
    return load_settings(REPO / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})


# --- headers ----------------------------------------------------------------------------------------

SKELETON_HTML = ('<html><head><title>t</title></head><body><p>__NL_GREETING__</p>'
                 '<a href="__NL_UNSUBSCRIBE_URL__">Unsubscribe</a> <a href="__NL_WEB_URL__">Web</a></body></html>')
SKELETON_TEXT = "__NL_GREETING__\n\nUnsubscribe: __NL_UNSUBSCRIBE_URL__\nWeb: __NL_WEB_URL__\n"
HEADERS = ["from", "subject", "date", "mime-version", "list-id", "reply-to", "to", "message-id",
           "list-unsubscribe", "list-unsubscribe-post", "content-type"]
INJECTIONS = [
    "Hi\r\nBcc: victim@example.net", "Hi\nBcc: victim@example.net", "Hi\rBcc: victim@example.net",
    "Hi\r\n\r\n<html>body</html>", "Hi\x00Bcc: x@example.net", "Hi\u2028Bcc: x@example.net",
    "Hi\u2029Bcc: x@example.net", "Hi\x85Bcc: x@example.net", "Hi\x0bBcc:\x0cx@example.net",
    "=?utf-8?q?=0D=0ABcc=3A_x=40example=2Enet?=", "=?utf-8?b?DQpCY2M6IHhAZXhhbXBsZS5uZXQ=?=",
    "=?utf-8?q?=0A?=", "=?iso-8859-1?q?=0A=0D?= =?utf-8?b?Cg==?=", "Re: \u202eevil\u202c", "\ud800 lone surrogate",
    "x" * 990, "word " * 190, "Zoë Müller " * 30, "漢字" * 300, "😀" * 250, '"quoted" <a@b.c>, (comment) ;:\\',
    "\t leading and trailing \t", "Hi\r\n Bcc: folded@example.net", "Hi\r\n\tBcc: folded@example.net",
]
_fragments = st.sampled_from(["\r", "\n", "\r\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\t",
                              "=?utf-8?q?=0A?=", "=?utf-8?b?DQpCY2M6IHhAeS56?=", "?=", "=?", "Bcc: evil@x.example",
                              ":", ";", ",", "<", ">", '"', "\\", "(", ")", " ", "é", "漢", "😀", "\u202e", "\ud800",
                              "\x7f", "a" * 77, "Subject: second"])
hostile_text = st.lists(st.one_of(_fragments, st.text(max_size=12)), max_size=14).map("".join)


def personaliser(subject: str, *, sender_name: str = "MS Research", reply_to: str | None = "editor@example.org",
                 html: str = SKELETON_HTML, text: str = SKELETON_TEXT) -> Personaliser:
    return Personaliser(RenderedEmail("2026-11-25", subject, "preheader", html, text),
                        sender_name=sender_name, sender_email="news@example.org", list_id="news.example.org",
                        public_base_url="https://example.org/newsletter", secret=SECRET,
                        unsubscribe_mailto="unsubscribe@example.org", reply_to=reply_to,
                        date=dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc))


def parse(data: bytes) -> email.message.EmailMessage:
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        # CRLF only: no bare CR or LF a reader could split on, no line past the RFC 5322 limit.
        assert b"\r" not in line and b"\n" not in line and len(line) <= 998, line[:120]
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def assert_only_our_headers(data: bytes, *, subject: str, name: str, address: str) -> None:
    msg = parse(data)
    assert [k.lower() for k in msg.keys()] == HEADERS
    assert str(msg["Subject"]) == clean_header_value("Subject", subject)
    (to,) = msg["To"].addresses
    assert to.addr_spec == address
    # Python's parser shows a space between adjacent encoded words in a display name (RFC 2047
    # says to drop it), so compare the name without whitespace.
    assert "".join(to.display_name.split()) == "".join(strip_controls(name)[:200].split())
    assert msg.is_multipart() and [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


@pytest.mark.parametrize("value", INJECTIONS, ids=range(len(INJECTIONS)))
def test_injected_subject_and_name_add_no_header(value: str) -> None:
    TRIED["header values"] += 1
    try:
        personalised = personaliser(value)
    except HeaderError as exc:
        assert exc.header == "Subject" and len(strip_controls(value)) > 998
        personalised = personaliser("Safe subject")
        value_subject = "Safe subject"
    else:
        value_subject = value
    message = personalised.message(Subscriber(3, "reader@example.org", value))
    assert_only_our_headers(message.data, subject=value_subject, name=value, address="reader@example.org")


@FAST
@given(subject=hostile_text, name=hostile_text, sender_name=hostile_text)
@example(subject="=?utf-8?q?=0A?=" * 40, name="\r\n" * 300, sender_name="News\r\nBcc: x@y.example")
def test_no_header_value_ever_adds_a_header(subject: str, name: str, sender_name: str) -> None:
    TRIED["header values"] += 3
    try:
        personalised = personaliser(subject, sender_name=sender_name)
    except HeaderError as exc:
        # Only a value with nothing left once cleaned, or far too long, may be refused.
        assert exc.header == "Subject" and (not strip_controls(subject) or len(strip_controls(subject)) > 998)
        return
    message = personalised.message(Subscriber(3, "reader@example.org", name))
    assert_only_our_headers(message.data, subject=subject, name=name, address="reader@example.org")
    html = parse(message.data).get_body(("html",)).get_content()
    assert_inert(html)


@pytest.mark.parametrize("subject", ["\r\n", "\x00\x00", "\u2028\u2029", " \t ", "x" * 999])
def test_a_subject_that_cannot_be_made_safe_is_refused(subject: str) -> None:
    TRIED["header values"] += 1
    with pytest.raises(HeaderError, match="header Subject: "):
        personaliser(subject)


@pytest.mark.parametrize("address", ["reader@example.org\r\nBcc: victim@example.net", "reader@example.org\nX: y",
                                     "a@b@example.org", "<reader@example.org>", "reader@exa mple.org",
                                     "reader@", "@example.org", "jö rg@example.org", "reader@-bad-.example",
                                     "reader@example.org>\r\nBcc: victim@example.net"])
def test_an_address_that_cannot_be_made_safe_is_refused(address: str) -> None:
    TRIED["addresses"] += 1
    with pytest.raises(HeaderError, match="header To: "):
        personaliser("Subject").message(Subscriber(3, address, "Reader"))


@pytest.mark.parametrize("field,value", [("reply_to", "editor@example.org\r\nBcc: victim@example.net"),
                                         ("list_id", "news.example.org>\r\nBcc: victim@example.net")])
def test_settings_values_that_would_inject_are_refused(field: str, value: str) -> None:
    TRIED["header values"] += 1
    kwargs = dict(sender_name="News", sender_email="news@example.org", list_id="news.example.org",
                  public_base_url="https://example.org/n", secret=SECRET, reply_to="editor@example.org")
    kwargs[field] = value
    with pytest.raises(HeaderError):
        Personaliser(RenderedEmail("2026-11-25", "S", "P", SKELETON_HTML, SKELETON_TEXT), **kwargs)  # type: ignore[arg-type]


def test_encoded_word_lookalike_address_is_refused_or_stays_literal() -> None:
    TRIED["addresses"] += 1
    address = "=?utf-8?q?=0D=0ABcc=3A_victim=40example=2Enet?=@example.org"
    try:
        address = subscribers.normalise_address(address)
        message = personaliser("Subject").message(Subscriber(3, address, "Reader"))
    except (SubscriberError, HeaderError):
        return  # refused: fine
    assert_only_our_headers(message.data, subject="Subject", name="Reader", address=address)


# --- HTML -------------------------------------------------------------------------------------------

_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "background", "poster", "srcset", "lowsrc", "dynsrc",
                   "cite", "longdesc", "usemap", "xlink:href", "data"}
_LIVE_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "base", "svg", "math",
              "link"}
_SAFE_URL = re.compile(r"(?:https?://[^/\s\"'<>]|mailto:[^\s\"'<>]+@)", re.IGNORECASE)


def assert_inert(html: str) -> None:
    """No script, no event handler, only absolute http(s)/mailto or __NL_ placeholder links — Outlook's
    conditional comments included, since Outlook parses what they hold."""
    doc = lxml.html.document_fromstring(html)
    for element in doc.iter():
        if not isinstance(element.tag, str):  # a comment
            inner = element.text or ""
            if "<" in inner and inner.lstrip().startswith("[if"):
                fragment = inner.split(">", 1)[1].rsplit("<![endif]", 1)[0]
                if fragment.strip():
                    assert_inert(f"<div>{fragment}</div>")
            continue
        tag = element.tag.lower()
        assert tag not in _LIVE_TAGS, lxml.html.tostring(element)[:200]
        if tag == "meta":
            assert (element.get("http-equiv") or "").lower() != "refresh"
        for name, value in element.attrib.items():
            name = name.lower()
            assert not name.startswith("on"), f"<{tag} {name}={value!r}>"
            if name in _URL_ATTRIBUTES:
                assert _SAFE_URL.match(value) or value.startswith("__NL_"), f"<{tag} {name}={value!r}>"
            if name == "style":
                lowered = value.lower()
                assert "javascript:" not in lowered and "expression(" not in lowered and "url(" not in lowered, value


def visible_text(html: str) -> str:
    return " ".join(lxml.html.document_fromstring(html).text_content().split())


_html_fragments = st.sampled_from([
    "<script>alert(1)</script>", "</title><script>alert(1)</script>", "\"><script>alert(1)</script>",
    "' onmouseover='alert(1)", "\" onerror=\"alert(1)", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>",
    "<a href=\"javascript:alert(1)\">x</a>", "javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)", "//evil.example/x", "</style><script>alert(1)</script>", "<!--", "-->",
    "<![endif]-->", "<!--[if mso]><script>alert(1)</script><![endif]-->", "]]>", "&lt;script&gt;", "&#60;script&#62;",
    "&", "<", ">", "\"", "'", "`", "{{ 7*7 }}", "{% raw %}", "<mj-raw><script>x</script></mj-raw>",
    "</mj-text><mj-raw><script>alert(1)</script></mj-raw><mj-text>", "<style>*{x:expression(alert(1))}</style>",
    "<base href=\"https://evil.example/\">", "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example\">",
    "<iframe src=\"https://evil.example\"></iframe>", "\u2028", "é", "漢", "😀", " ",
])
# Control characters are a separate matter (see test_control_characters_in_a_summary_body).
_printable = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn")), max_size=8)
html_text = st.lists(st.one_of(_html_fragments, _printable), min_size=1, max_size=10).map("".join)
_markdown_fragments = st.sampled_from([
    "[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](java\tscript:alert(1))", "![i](javascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=)", "![i](data:image/svg+xml,<svg onload=alert(1)>)",
    "[x](vbscript:msgbox(1))", "[x](//evil.example)", "<javascript:alert(1)>", "<https://ok.example/a>",
    "[ok](https://ok.example/\"onmouseover=\"alert(1))", "[x](https://ok.example \"t\" onclick=\"alert(1)\")",
    "[x]: javascript:alert(1)\n\n[x]", "<b onclick=alert(1)>b</b>", "<script>alert(1)</script>",
    "[m](mailto:a@example.org)", "[m](mailto:javascript:alert(1))", "\n\n", "**", "`<script>`",
])
markdown_text = st.lists(st.one_of(_markdown_fragments, _html_fragments, _printable),
                         max_size=8).map("".join)


def _issue(subject: str, preheader: str, intro: str, summaries: tuple[Summary, ...]) -> Issue:
    return Issue(id="2026-11-25", date=dt.date(2026, 11, 25), subject=subject, preheader=preheader, intro=intro,
                 summary_ids=tuple(s.id for s in summaries), folder=Path("/nonexistent/2026-11-25"),
                 summaries=summaries)


def _final_html(rendered: RenderedEmail, settings: Settings, name: str) -> str:
    message = prepare(rendered, settings, secret=SECRET).message(Subscriber(9, "reader@example.org", name,
                                                                            first_name=name))
    return parse(message.data).get_body(("html",)).get_content()


@hsettings(max_examples=60, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(title=html_text, journal=html_text, teaser=html_text, image_alt=html_text, subject=html_text,
       preheader=html_text, intro=markdown_text, name=html_text)
def test_hostile_content_is_rendered_inert(site_settings: Settings, title: str, journal: str, teaser: str,
                                           image_alt: str, subject: str, preheader: str, intro: str,
                                           name: str) -> None:
    TRIED["content fields"] += 8
    summary = Summary(id="hostile", title=title, date=dt.date(2026, 11, 1), journal=journal,
                      url="https://ms-research.example.org/summaries/hostile", teaser=teaser, findings=teaser,
                      image="https://ms-research.example.org/picture.png", image_alt=image_alt)
    rendered = render_email(_issue(subject, preheader, intro, (summary,)), site_settings)
    assert_inert(rendered.html)
    try:
        html = _final_html(rendered, site_settings, name)
    except HeaderError:
        assume_unsafe = not strip_controls(subject) or len(strip_controls(subject)) > 998
        assert assume_unsafe
        return
    assert_inert(html)


def _write_summary(folder: Path, name: str, *, findings: str = "Found.", **fields: str) -> Path:
    base = {"title": "A title", "date": "2026-11-01", "journal": "A journal",
            "source_url": "https://pubmed.example.org/1", "url": "https://ms-research.example.org/s/1"}
    base.update(fields)
    front = "\n".join(f"{key}: {yaml_string(value)}" for key, value in base.items())
    path = folder / f"{name}.md"
    path.write_text(f"---\n{front}\n---\n\n## What the study found\n\n{findings}\n\n"
                    "## Why this matters\n\nMatters.\n\n## Limitations\n\nSmall.\n", encoding="utf-8")
    return path


def yaml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


HOSTILE_URLS = [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "data:image/png;base64,AAAA", "vbscript:msgbox(1)",
    "//evil.example/x", "/relative/path", "https:evil.example", "https://", "file:///etc/passwd",
    "https://ok.example/\" onmouseover=\"alert(1)", "https://ok.example/'><script>alert(1)</script>",
    "https://ok.example/<script>", "https://ok.example/\nx", "mailto:someone@example.org",
]


@pytest.mark.parametrize("field", ["url", "source_url", "image"])
@pytest.mark.parametrize("url", HOSTILE_URLS, ids=range(len(HOSTILE_URLS)))
def test_hostile_urls_in_a_summary_file_are_refused(tmp_path: Path, field: str, url: str) -> None:
    TRIED["summary urls"] += 1
    extra = {"image_alt": "A picture"} if field == "image" else {}
    path = _write_summary(tmp_path, "hostile", **{field: url}, **extra)
    with pytest.raises(SourceError) as info:
        read_markdown(str(path))
    assert info.value.field == field and "hostile.md" in str(info.value)


HOSTILE_TEXT = [
    "<script>alert(1)</script>", "\"><script>alert(1)</script>", "' onmouseover='alert(1)",
    "<img src=x onerror=alert(1)>", "</title><script>alert(1)</script>", "<!--[if mso]><script>x</script><![endif]-->",
    "</mj-text><mj-raw><script>alert(1)</script></mj-raw><mj-text>", "{{ settings.secret }}",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
]


def test_hostile_summary_files_build_inert_html(project: Path, settings: Settings) -> None:
    content = project / "content"
    for i, text in enumerate(HOSTILE_TEXT):
        TRIED["summary files"] += 1
        _write_summary(content, f"hostile-{i}", title=f"Title {i} {text}", journal=f"Journal {text}",
                       teaser=f"Teaser {text}", image="https://ms-research.example.org/p.png",
                       image_alt=f"Alt {text}", url=f"https://ms-research.example.org/s/hostile-{i}",
                       date="2026-11-25", findings=f"Findings {text}")  # unsafe links are refused: tests/test_editorial.py
    issue = compose(settings, date=dt.date(2026, 11, 25), limit=len(HOSTILE_TEXT))
    assert {s.id for s in issue.summaries} == {f"hostile-{i}" for i in range(len(HOSTILE_TEXT))}
    result = build(settings, issue.folder)
    assert_inert(result.email.html)
    assert_inert((issue.folder / "build" / "preview.html").read_text(encoding="utf-8"))
    final = _final_html(result.email, settings, "<script>alert('name')</script>")
    assert_inert(final)
    shown = visible_text(final)
    assert "Title 0 <script>alert(1)</script>" in shown  # escaped and shown, not interpreted
    assert "Hello <script>alert('name')</script>," in shown
    assert "{{ settings.secret }}" in shown and SECRET not in final


@pytest.mark.parametrize("char", ["\x00", "\x08", "\x1b", "\ufffe"], ids=["NUL", "BS", "ESC", "U+FFFE"])
def test_control_characters_in_a_summary_body(project: Path, settings: Settings, char: str) -> None:
    TRIED["summary files"] += 1
    path = _write_summary(project / "content", "control", date="2026-11-24", findings=f"Found {char} this.")
    try:
        read_markdown(str(path))
    except SourceError as exc:  # refused, naming the file: fine
        assert "control.md" in str(exc) and exc.field == "findings"
        return
    issue = compose(settings, date=dt.date(2026, 11, 25))
    assert_inert(build(settings, issue.folder).email.html)


FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Partner</title><link>https://partner.example</link><description>d</description>
{items}
</channel></rss>"""
ITEM = """<item><title>{title}</title><link>{link}</link><description>{description}</description>
<pubDate>Mon, 02 Nov 2026 08:00:00 GMT</pubDate><source url="https://j.example">{journal}</source></item>"""


def _feed(tmp_path: Path, **item: str) -> Path:
    path = tmp_path / "hostile.rss"
    fields = {"title": "Fine title", "link": "https://partner.example/a", "description": "Fine.",
              "journal": "Brain"} | item
    path.write_text(FEED.format(items=ITEM.format(**fields)), encoding="utf-8")
    return path


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,x", "vbscript:x", "//evil.example/a",
                                  "/relative", "https://ok.example/&quot;onclick=&quot;alert(1)",
                                  "  javascript:alert(1)", "jav&#x09;ascript:alert(1)"])
def test_hostile_feed_links_are_refused(tmp_path: Path, link: str) -> None:
    TRIED["feed entries"] += 1
    with pytest.raises(SourceError) as info:
        read_feed(str(_feed(tmp_path, link=link)))
    assert info.value.field == "link"


@pytest.mark.parametrize("text", HOSTILE_TEXT + ["<![CDATA[<script>alert(1)</script>]]>",
                                                 "&lt;a href=&quot;javascript:alert(1)&quot;&gt;x&lt;/a&gt;"])
def test_hostile_feed_text_renders_inert(tmp_path: Path, site_settings: Settings, text: str) -> None:
    TRIED["feed entries"] += 1
    escaped = text if text.startswith("<![CDATA[") else text.replace("&", "&amp;").replace("<", "&lt;")
    entries = read_feed(str(_feed(tmp_path, title=f"T {escaped}", description=f"D {escaped}",
                                  journal=f"J {escaped}")))
    rendered = render_email(_issue("Subject", "Preheader", "Intro", tuple(entries)), site_settings)
    assert_inert(rendered.html)
    assert_inert(_final_html(rendered, site_settings, "Reader"))


def test_placeholders_smuggled_into_content_are_not_expanded(tmp_path: Path, site_settings: Settings) -> None:
    TRIED["feed entries"] += 1
    # The readers refuse the reserved mark, naming the field...
    with pytest.raises(SourceError) as info:
        read_feed(str(_feed(tmp_path, title="Hi __NL_GREETING__")))
    assert info.value.field == "title" and "reserved" in str(info.value)
    with pytest.raises(SourceError) as info:
        read_feed(str(_feed(tmp_path, link="https://evil.example/collect?u=__NL_UNSUBSCRIBE_URL__")))
    assert info.value.field == "link"
    # ... and so does rendering, for summaries that did not come through a reader.
    entries = read_feed(str(_feed(tmp_path)))
    smuggled = tuple(dataclasses.replace(e, title="Hi __NL_GREETING__",
                                         url="https://evil.example/collect?u=__NL_UNSUBSCRIBE_URL__") for e in entries)
    with pytest.raises(SourceError, match="reserved"):
        render_email(_issue("Subject", "Preheader", "Intro", smuggled), site_settings)
    rendered = render_email(_issue("Subject", "Preheader", "Intro", tuple(entries)), site_settings)
    html = _final_html(rendered, site_settings, "Jane Doe")
    doc = lxml.html.document_fromstring(html)
    assert not [a for a in doc.iter("a") if "evil.example" in a.get("href", "")]
    assert "Hi Hello Jane Doe" not in visible_text(html)


# --- addresses in a CSV ------------------------------------------------------------------------------

CSV_ROWS = [
    ("ok@example.org", "Ok", "ok@example.org"),
    ("Upper@EXAMPLE.ORG", "Case", "Upper@example.org"),
    ("user@bücher.example", "IDN", "user@bücher.example"),
    ("other@BÜCHER.example", "IDN upper", "other@bücher.example"),
    ("user@xn--bcher-kva.example", "Punycode twin", None),  # the same mailbox as line 4: a duplicate
    ("user@ｅｘａｍｐｌｅ.org", "Fullwidth domain", "user@example.org"),
    ("jörg@example.org", "Unicode local part", "jörg@example.org"),
    ("not-an-address", "Bad", None),
    ("a@b@example.org", "Two ats", None),
    ("Name <n@example.org>", "Display name", None),
    ("n@example.org\r\nBcc: victim@example.net", "Injection", None),
    ("n@example.org\x00", "NUL", None),
    ("a\u2028b@example.org", "Line separator", None),
    ("\u202eevil@example.org", "Bidi override", None),
    ("user＠example.org", "Fullwidth at", None),
    ("a@localhost", "No dot", None),
    ("a@[127.0.0.1]", "Address literal", None),
    ("a..b@example.org", "Double dot", None),
    ("a@" + "b" * 64 + ".org", "Label too long", None),
    ("", "Empty", None),
    ("OK@example.org", "Duplicate", None),
]


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows(rows)
    return path


def _record_lines(path: Path) -> list[int]:
    """The line each data record starts on, as an editor numbers it (the header is line 1)."""
    starts, line = [], 1
    text = path.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    line = reader.line_num + 1
    for _ in reader:
        starts.append(line)
        line = reader.line_num + 1
    return starts


def test_csv_rows_are_rejected_or_normalised_by_line(tmp_path: Path) -> None:
    path = _csv(tmp_path / "people.csv", [(raw, name) for raw, name, _ in CSV_ROWS])
    lines = _record_lines(path)
    conn = db.connect(tmp_path / "db.sqlite3")
    try:
        report = subscribers.import_csv(conn, path)
        stored = {s.email: s.name for s in subscribers.list_subscribers(conn)}
    finally:
        conn.close()
    TRIED["csv rows"] += len(CSV_ROWS)
    rejected = {problem.line: problem for problem in report.errors}
    for (raw, name, normalised), line in zip(CSV_ROWS, lines):
        if normalised is None:
            assert line in rejected and rejected[line].email == raw.strip(), (line, raw)
            assert rejected[line].reason
        else:
            assert line not in rejected and stored[normalised] == name, (line, raw, rejected.get(line))
    assert report.added == len(stored) == sum(1 for *_, n in CSV_ROWS if n is not None)
    assert f"duplicate of line {lines[2]}" in rejected[lines[4]].reason  # the punycode twin of user@bücher.example
    assert all(not any(c in s for c in "\r\n\x00\u2028") for s in stored)


def test_csv_import_cli_reports_every_bad_row_by_line(project: Path) -> None:
    path = _csv(project / "people.csv", [(raw, name) for raw, name, _ in CSV_ROWS])
    lines = _record_lines(path)
    result = run_newsletter(["subscribers", "import", str(path)], cwd=project)
    if "Traceback" in result.stderr:
        CRASHES["subscribers import"] += 1
    assert "Traceback" not in result.stderr and result.returncode == 1
    for (raw, _, normalised), line in zip(CSV_ROWS, lines):
        assert (f"{path}:{line}:" in result.stderr) == (normalised is None), (line, raw)


_address_chars = st.sampled_from(list("abcXYZ019.-_+=?@@<>\"' ,;:()[]\\\t\x00\x7féü漢😀\u202e\u200b＠ｅ") +
                                 ["xn--", "example.org", "@example.org", "..", "\u2028"])
address_text = st.lists(_address_chars, max_size=30).map("".join)


@hsettings(max_examples=100, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(addresses=st.lists(address_text, min_size=1, max_size=12))
def test_any_csv_row_is_imported_normalised_or_reported(tmp_path_factory: pytest.TempPathFactory,
                                                        addresses: list[str]) -> None:
    TRIED["csv rows"] += len(addresses)
    folder = tmp_path_factory.mktemp("csv")
    path = _csv(folder / "people.csv", [(a, f"N{i}") for i, a in enumerate(addresses)])
    lines = _record_lines(path)
    conn = db.connect(folder / "db.sqlite3")
    try:
        report = subscribers.import_csv(conn, path)
        stored = subscribers.list_subscribers(conn)
    finally:
        conn.close()
    reported = {p.line for p in report.errors}
    accepted_lines = [line for line in lines if line not in reported]
    assert len(stored) == len(accepted_lines) == report.added
    for subscriber in stored:
        assert subscribers.normalise_address(subscriber.email) == subscriber.email  # stable
        assert not any(ord(c) < 0x20 or c in "\x7f\u2028\u2029<>" for c in subscriber.email)
        try:
            personaliser("S").message(subscriber)
        except HeaderError:
            assert not subscriber.email.split("@")[0].isascii()  # only a Unicode local part is undeliverable


def test_idn_address_is_sent_with_an_ascii_envelope(settings: Settings, tmp_path: Path) -> None:
    TRIED["addresses"] += 1
    path = _csv(tmp_path / "people.csv", [("reader@bücher.example", "IDN reader")])
    issue = prepare_issue(settings, subscribers_csv=path).folder
    with fault_server(enable_SMTPUTF8=False) as server:
        report = send_full(dataclasses.replace(settings, transport=server.url(query="starttls=off")), issue)
        received = server.handler.recipients()
    assert report.sent == 1, report
    assert received == Counter({"reader@xn--bcher-kva.example": 1})


def test_unicode_local_part_goes_out_with_smtputf8_or_fails_that_subscriber_only(settings: Settings,
                                                                                  tmp_path: Path) -> None:
    TRIED["addresses"] += 1
    path = _csv(tmp_path / "people.csv", [("jörg@example.org", "Jörg"), ("ok@example.org", "Ok")])
    issue = prepare_issue(settings, subscribers_csv=path).folder
    with fault_server(enable_SMTPUTF8=True) as server:  # a server that speaks SMTPUTF8 takes both
        report = send_full(dataclasses.replace(settings, transport=server.url(query="starttls=off")), issue)
        received = server.handler.recipients()
    assert (report.sent, report.failed) == (2, 0) and received["jörg@example.org"] == 1
    second = prepare_issue(settings, subscribers_csv=path, date=dt.date(2026, 12, 1)).folder
    with fault_server(enable_SMTPUTF8=False) as server:  # one that does not: only that subscriber fails
        report = send_full(dataclasses.replace(settings, transport=server.url(query="starttls=off")), second)
    assert (report.sent, report.failed) == (1, 1)
    conn = db.connect(settings.path(settings.database))
    try:
        reason = conn.execute("SELECT l.reason FROM ledger l JOIN subscribers s ON s.id = l.subscriber_id"
                              " WHERE s.email = 'jörg@example.org' AND l.issue_id = ?", (second.name,)).fetchone()[0]
    finally:
        conn.close()
    assert "SMTPUTF8" in reason


# --- malformed summary files through the CLI --------------------------------------------------------

def _compose_with(bad: Path, root: Path, *, spawn: bool = False) -> tuple[str, subprocess.CompletedProcess[str]]:
    copy_sample_project(root)
    target = root / "content" / bad.name
    target.write_bytes(bad.read_bytes())
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET}
    env.pop("NEWSLETTER_CONFIG", None)
    argv = ["compose", "--date", "2026-11-25"]
    if spawn:
        result = subprocess.run([sys.executable, "-m", "newsletter", *argv], cwd=root, env=env, capture_output=True,
                                text=True, timeout=120)
    else:
        result = run_newsletter(argv, cwd=root, env=env)
    return bad.name, result


def test_every_bad_summary_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    files = sorted(p for p in BAD.iterdir() if p.suffix == ".md")
    assert len(files) >= 40
    # The first through a real `python -m newsletter`, the rest through the same entry point in this process.
    results = [_compose_with(p, tmp_path / p.stem, spawn=n == 0) for n, p in enumerate(files)]
    problems = []
    for name, result in results:
        TRIED["bad summary files"] += 1
        if "Traceback" in result.stderr:
            CRASHES["compose"] += 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode != 1 or "Traceback" in result.stderr or len(lines) != 1 or name not in lines[0]:
            problems.append((name, result.returncode, result.stderr[-500:]))
    assert problems == []

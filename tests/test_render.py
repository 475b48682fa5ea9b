"""Render: real Jinja2 + mjml-python + premailer on the sample issue, golden files, hostile content.

Regenerate the golden files after an intended rendering change with:
    UPDATE_GOLDEN=1 python -m pytest tests/test_render.py -k golden
and review the diff.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import lxml.html
import pytest
from conftest import built_sample

from newsletter.check import check_email
from newsletter.errors import IssueError
from newsletter.jobs.issues import build, compose
from newsletter.render import PLACEHOLDERS, fill_placeholders, inline_css
from newsletter.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
DATE = dt.date(2026, 11, 25)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The sample issue built once for the module: the tests only read it and its files."""
    return built_sample(tmp_path_factory.mktemp("render") / "site")


@pytest.mark.parametrize("name", ["email.html", "email.txt"])
def test_golden(built, name: str) -> None:  # type: ignore[no-untyped-def]
    produced = (built.issue.build_dir / name).read_text(encoding="utf-8")
    golden = GOLDEN / f"2026-11-25.{name}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(produced, encoding="utf-8")
    assert produced == golden.read_text(encoding="utf-8"), \
        f"{name} differs from {golden}; if intended: UPDATE_GOLDEN=1 pytest tests/test_render.py -k golden"


def test_html_has_the_parts_a_reader_needs(built) -> None:  # type: ignore[no-untyped-def]
    html = built.email.html
    assert '<html lang="en"' in html
    assert '<meta name="color-scheme" content="light dark"' in html
    assert built.issue.preheader in html and "display:none" in html
    for s in built.issue.summaries:
        assert f'href="{s.url}"' in html
    assert html.count(">Read more<") == len(built.issue.summaries)
    assert "In this issue" in html  # more than 3 summaries
    for journal in built.email.journals:
        assert journal in html
    assert "12 Example Street" in html
    assert PLACEHOLDERS["unsubscribe_url"] in html and PLACEHOLDERS["web_url"] in html


def test_css_is_inlined_and_media_rules_kept(built) -> None:  # type: ignore[no-untyped-def]
    html = built.email.html
    assert re.search(r'class="title"[^>]*style="[^"]*font-size:22px', html)
    assert "@media (prefers-color-scheme: dark)" in html
    assert "@media only screen and (max-width: 480px)" in html or "max-width:480px" in html
    assert "<!--[if mso | IE]>" in html  # Outlook conditional comments survive inlining


def test_disclaimer_names_exactly_the_journals_in_the_issue(built, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    used = {s.journal for s in built.issue.summaries}
    from newsletter.jobs.issues import gather

    others = {s.journal for s in gather(settings)} - used
    assert others, "sample corpus should have journals outside this issue"
    sentence = re.search(r"come from (.+?)\. Studies are not all the same", " ".join(built.email.text.split()))
    assert sentence
    named = sentence.group(1)
    assert all(j in named for j in used)
    assert not any(j in named for j in others if not any(j in u for u in used))


def test_placeholders_survive_premailer() -> None:
    html = ('<html><head><style>a{color:red}</style></head><body>'
            f'<a href="{PLACEHOLDERS["unsubscribe_url"]}">u</a><a href="https://x.org/?a=1&amp;b={PLACEHOLDERS["web_url"]}">w</a>'
            "</body></html>")
    out = inline_css(html)
    assert f'href="{PLACEHOLDERS["unsubscribe_url"]}"' in out
    assert PLACEHOLDERS["web_url"] in out
    # The trap premailer sets for Jinja-style placeholders, which is why ours look different:
    trapped = inline_css('<html><body><a href="{{ unsubscribe }}">u</a></body></html>')
    assert "{{ unsubscribe }}" not in trapped


def test_fill_placeholders_escapes_html() -> None:
    out = fill_placeholders(f'<p>{PLACEHOLDERS["greeting"]}</p>', {"greeting": "Hello <b>Ann</b> & co,"}, html=True)
    assert out == "<p>Hello &lt;b&gt;Ann&lt;/b&gt; &amp; co,</p>"


HOSTILE = """---
title: "<script>alert(1)</script> \\" onmouseover=\\"alert(2)"
date: 2026-11-24
journal: "<img src=x onerror=alert(3)>"
source_url: "https://pubmed.ncbi.nlm.nih.gov/?term=x"
url: "https://ms-research.example.org/summaries/x?a=1&b=2"
teaser: "Teaser with <b>tags</b> and [a link](javascript:alert(5))"
---

## What the study found

[click](https://ms-research.example.org/x) <script>alert(7)</script>

## Why this matters

x

## Limitations

y
"""


def test_hostile_content_is_escaped_in_the_final_html(settings: Settings, project: Path) -> None:
    (project / "content" / "hostile.md").write_text(HOSTILE, encoding="utf-8")
    issue = compose(settings, date=DATE, limit=3)
    assert issue.summary_ids[0] == "hostile"
    result = build(settings, issue.folder)
    html = result.email.html
    assert "<script" not in html.lower()
    assert "<img src=x" not in html
    tree = lxml.html.fromstring(html)
    handlers = [(el.tag, a) for el in tree.iter() if isinstance(el.tag, str) for a in el.attrib if a.startswith("on")]
    assert handlers == [], "no live event-handler attribute"
    assert not tree.xpath("//script")
    assert not re.search(r'(?i)(href|src)="\s*javascript:', html)
    assert "&lt;script&gt;" in html
    assert 'href="https://ms-research.example.org/summaries/x?a=1&amp;b=2"' in html
    assert check_email(result.email).ok


def test_javascript_link_in_content_is_rejected(settings: Settings, project: Path) -> None:
    bad = HOSTILE.replace('url: "https://ms-research.example.org/summaries/x?a=1&b=2"',
                          'url: "javascript:alert(1)"')
    (project / "content" / "hostile.md").write_text(bad, encoding="utf-8")
    from newsletter.errors import SourceError

    with pytest.raises(SourceError, match="hostile.md.*url"):
        compose(settings, date=DATE)


def test_intro_markdown_with_script_and_bad_link(settings: Settings) -> None:
    issue = compose(settings, date=DATE)
    path = issue.folder / "issue.toml"
    text = path.read_text()
    text = re.sub(r"intro = \"\"", "intro = '''\nHi <script>alert(1)</script> [x](javascript:alert(1)) "
                  "[site](https://ms-research.example.org)\n'''", text, flags=re.S)
    path.write_text(text)
    with pytest.raises(IssueError, match="intro.*javascript:alert"):  # refused, naming the link
        build(settings, issue.folder)
    path.write_text(text.replace(" [x](javascript:alert(1))", ""))
    html = build(settings, issue.folder).email.html
    assert "<script>" not in html and 'href="javascript' not in html
    assert 'href="https://ms-research.example.org"' in html

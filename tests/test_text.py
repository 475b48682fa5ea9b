"""Teasers, link safety and Markdown handling."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, strategies as st

from newsletter.text import format_date, is_safe_link, markdown_to_html, markdown_to_text, teaser


def test_short_text_is_kept_whole() -> None:
    assert teaser("Iron matters.", 160) == "Iron matters."
    assert teaser("", 160) == ""


def test_cut_at_word_boundary_with_ellipsis() -> None:
    text = "People with ALS had more iron in their blood than healthy people, " * 5
    out = teaser(text, 160)
    assert len(out) <= 160
    assert out.endswith("…")
    head = out[:-1]
    assert text.startswith(head)
    assert text[len(head)] in " ,"  # the cut falls between words, never inside one


def test_word_longer_than_limit_is_cut_hard_but_within_limit() -> None:
    out = teaser("x" * 500, 40)
    assert out == "x" * 39 + "…"


def test_unicode_is_not_split_inside_combining_marks() -> None:
    word = "e\u0301" * 100  # é as e + combining accent, not normalisable across the cut
    out = teaser(word, 21)
    assert len(out) <= 21
    assert not out[:-1].endswith("e")  # never strip the accent from its letter


@given(st.text(min_size=0, max_size=400), st.integers(min_value=10, max_value=200))
def test_teaser_never_exceeds_limit(text: str, limit: int) -> None:
    assert len(teaser(text, limit)) <= limit


def test_markdown_stripped_and_entities_safe() -> None:
    assert markdown_to_text("**Iron** and [transferrin](https://x.org) &amp; <b>genes</b>") == \
        "Iron and transferrin & genes"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x",
                                 "vbscript:x", "//evil.example", "/relative", "ftp://x.org", " https://x.org",
                                 "https://x.org/\"onmouseover=x", "https:///nohost", ""])
def test_unsafe_links_are_refused(url: str) -> None:
    assert not is_safe_link(url)


def test_safe_links() -> None:
    assert is_safe_link("https://ms-research.example.org/a?b=c&d=e")
    assert is_safe_link("mailto:editor@example.org")
    assert not is_safe_link("mailto:editor@example.org", allow_mailto=False)


def test_markdown_html_drops_raw_html_and_bad_links() -> None:
    out = markdown_to_html('<script>alert(1)</script> [x](javascript:alert(1)) [ok](https://ok.org)')
    assert "<script>" not in out
    assert 'href="javascript' not in out
    assert '<a href="https://ok.org">ok</a>' in out


def test_dates_are_unambiguous() -> None:
    assert format_date(dt.date(2026, 3, 1)) == "1 March 2026"

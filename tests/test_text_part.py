"""The plain-text part on its own: it must read well in a text-only client, links numbered and listed."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from conftest import built_sample

from newsletter.jobs.issues import BuildResult, build, compose
from newsletter.render import PLACEHOLDERS, fill_placeholders
from newsletter.settings import Settings
from newsletter.text import format_date, markdown_to_text, teaser

DATE = dt.date(2026, 11, 25)
COLUMNS = 78
_LINK_LINE = re.compile(r"\[(\d+)\] (\S+)")
_URL_ONLY = re.compile(r"(\[\d+\] )?(https?://|__NL_)\S+")


@pytest.fixture(scope="module", params=[None, 10], ids=["sample", "ten"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The sample issue (all summaries, or ten) built once per module: the tests only read it."""
    return built_sample(tmp_path_factory.mktemp("text-part") / "site", limit=request.param)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _body_and_links(text: str) -> tuple[str, dict[int, str]]:
    body, _, tail = text.partition("\nLINKS\n")
    assert tail, "the text part lists its links under a LINKS heading"
    links = {int(m.group(1)): m.group(2) for m in map(_LINK_LINE.fullmatch, tail.splitlines()) if m}
    return body, links


def test_reads_top_to_bottom(built: BuildResult, settings: Settings) -> None:
    text, issue = built.email.text, built.issue
    lines = text.splitlines()
    assert lines[0] == settings.site_name.upper()
    assert lines[1] == format_date(issue.date)
    assert _flat(issue.subject) in _flat("\n".join(lines[2:6]))
    assert PLACEHOLDERS["greeting"] in text
    flat = _flat(text)
    positions = []
    for number, s in enumerate(issue.summaries, start=1):
        heading = f"{number}. {s.title}"
        assert heading in flat, heading
        assert f"{format_date(s.date)} · {s.journal}" in flat
        positions.append(flat.index(heading))
    assert positions == sorted(positions), "summaries in the editor's order"
    assert _flat(built.email.text).count("Read more: [") == len(issue.summaries)
    for marker in ("ABOUT THIS RESEARCH", "read the original studies", "healthcare team"):
        assert marker in flat
    for journal in built.email.journals:
        assert journal in flat
    assert flat.index("ABOUT THIS RESEARCH") > positions[-1]
    assert PLACEHOLDERS["unsubscribe_url"] in text and PLACEHOLDERS["web_url"] in text
    assert lines[-1] == settings.postal_address or _flat(settings.postal_address) in _flat("\n".join(lines[-3:]))


def test_teasers_appear_whole(built: BuildResult) -> None:
    flat = _flat(built.email.text)
    for s in built.issue.summaries:
        assert _flat(teaser(s.teaser or markdown_to_text(s.findings))) in flat


def test_every_summary_links_to_its_own_numbered_url(built: BuildResult, settings: Settings) -> None:
    body, links = _body_and_links(built.email.text)
    assert sorted(links) == list(range(1, len(links) + 1)), "numbered 1..n without gaps"
    assert len(set(links.values())) == len(links), "each URL listed once"
    by_url = {url: n for n, url in links.items()}
    chunks = re.split(r"(?m)^\d+\. ", body)[1:]  # one chunk per numbered summary
    assert len(chunks) == len(built.issue.summaries)
    for summary, chunk in zip(built.issue.summaries, chunks):
        assert summary.url in by_url, f"{summary.url} is not in the link list"
        assert f"Read more: [{by_url[summary.url]}]" in chunk, summary.id
    outside_list = "\n".join(line for line in built.email.text.splitlines() if not _LINK_LINE.fullmatch(line))
    referenced = {int(n) for n in re.findall(r"\[(\d+)\]", outside_list)}
    assert referenced == set(links), "every number used in the text is listed, and every listed link is used"
    assert links[by_url[settings.site_url]] == settings.site_url


@pytest.mark.parametrize("personalised", [False, True])
def test_lines_fit_78_columns_except_bare_urls(built: BuildResult, personalised: bool) -> None:
    text = built.email.text
    if personalised:  # what a subscriber receives: long tokens in the URLs
        text = fill_placeholders(text, {"greeting": "Hello Margaret-Alexandra,",
                                        "unsubscribe_url": "https://ms-research.example.org/newsletter/unsubscribe/"
                                                           + "x" * 120,
                                        "web_url": "https://ms-research.example.org/newsletter/issues/2026-11-25"},
                                 html=False)
    for number, line in enumerate(text.splitlines(), start=1):
        assert len(line) <= COLUMNS or _URL_ONLY.fullmatch(line), f"line {number} is {len(line)} columns: {line!r}"
    assert "\t" not in text and "\r" not in text
    assert not re.search(r"\n{3,}", text), "no runs of blank lines"


def test_long_titles_wrap_with_a_hanging_indent(settings: Settings, project: Path) -> None:
    long_title = "A very long title " * 8
    (project / "content" / "long-title.md").write_text(f"""---
title: "{long_title.strip()}"
date: 2026-11-24
journal: "Journal of Remarkably Long Journal Names in Neurology and Related Disciplines"
source_url: "https://pubmed.ncbi.nlm.nih.gov/?term=long"
url: "https://ms-research.example.org/summaries/{'long-' * 20}title"
teaser: "{'Word ' * 60}"
---

## What the study found
x
## Why this matters
y
## Limitations
z
""", encoding="utf-8")
    issue = compose(settings, date=DATE, limit=2)
    text = build(settings, issue.folder).email.text
    for line in text.splitlines():
        assert len(line) <= COLUMNS or _URL_ONLY.fullmatch(line), line
    assert "1. A very long title" in text
    first = text.index("1. A very long title")
    assert re.match(r"   \S", text[first:].splitlines()[1]), "the title's second line hangs under its first word"

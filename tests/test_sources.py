"""Readers: the sample corpus, feeds, and a corpus of broken summary files."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from newsletter.errors import SourceError
from newsletter.sources import load_summaries, read_source, reader_for
from newsletter.sources.feed import read_feed
from newsletter.sources.markdown import read_markdown

REPO = Path(__file__).resolve().parent.parent
BAD = Path(__file__).parent / "data" / "bad_summaries"
EXPECTED: dict[str, str | None] = json.loads((BAD / "expected.json").read_text())


def test_sample_corpus_loads_completely() -> None:
    summaries = load_summaries(REPO / "content", [("feed", str(REPO / "content/feeds/partner-news.xml"), None)])
    files = list((REPO / "content").glob("*.md"))
    assert len(files) >= 12
    assert len(summaries) == len(files) + 3
    iron = next(s for s in summaries if s.id == "iron-transferrin-hfe-als-risk")
    assert iron.journal == "Biological Trace Element Research"
    assert iron.date == dt.date(2026, 3, 1)
    assert iron.findings and iron.why_it_matters and iron.limitations
    assert sum(s.date > dt.date(2026, 11, 25) for s in summaries if s.origin.endswith(".md")) >= 2


def test_readers_come_from_a_registry() -> None:
    assert reader_for("x.md") is read_markdown
    assert reader_for("x.rss") is read_feed
    assert reader_for("https://example.org/feed") is read_feed
    with pytest.raises(SourceError, match="no reader"):
        reader_for("notes.docx")


def test_feed_entries_map_to_summaries() -> None:
    entries = read_source(str(REPO / "content/feeds/partner-news.xml"))
    assert len(entries) == 3
    for e in entries:
        assert e.title and e.url.startswith("https://") and e.journal and e.teaser
        assert "<" not in e.teaser


def test_broken_feed_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.xml"
    bad.write_text("<rss><channel><item><title>x</title></item>", encoding="utf-8")
    with pytest.raises(SourceError) as info:
        read_feed(str(bad))
    assert "broken.xml" in str(info.value)


def test_feed_entry_with_script_link_is_refused(tmp_path: Path) -> None:
    feed = tmp_path / "evil.rss"
    feed.write_text("""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>Hi</title><link>javascript:alert(1)</link><pubDate>Mon, 02 Mar 2026 08:00:00 GMT</pubDate>
<source url="https://j.example">Brain</source></item></channel></rss>""", encoding="utf-8")
    with pytest.raises(SourceError, match="link"):
        read_feed(str(feed))


def test_feed_strips_markup_from_description(tmp_path: Path) -> None:
    feed = tmp_path / "markup.rss"
    feed.write_text("""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>Hi &lt;script&gt;alert(1)&lt;/script&gt;</title><link>https://x.example/a</link>
<description>&lt;img src=x onerror=alert(1)&gt;Plain &lt;b&gt;words&lt;/b&gt;</description>
<pubDate>Mon, 02 Mar 2026 08:00:00 GMT</pubDate><source url="https://j.example">Brain</source></item>
</channel></rss>""", encoding="utf-8")
    (entry,) = read_feed(str(feed))
    assert "<" not in entry.title and "onerror" not in entry.teaser
    assert entry.teaser == "Plain words"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_broken_summary_gives_a_clear_error(name: str) -> None:
    with pytest.raises(SourceError) as info:
        read_markdown(str(BAD / name))
    message = str(info.value)
    assert name in message
    assert "\n" not in message
    field = EXPECTED[name]
    if field is not None:
        assert info.value.field == field, message


def test_bad_corpus_is_large_enough() -> None:
    assert len(EXPECTED) >= 30


def test_error_carries_line_number() -> None:
    with pytest.raises(SourceError) as info:
        read_markdown(str(BAD / "date-us-style.md"))
    assert info.value.line == 3
    assert ":3: field 'date'" in str(info.value)


def test_load_stops_on_broken_file_unless_skipping(tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(REPO / "content", content, ignore=shutil.ignore_patterns("feeds"))
    shutil.copy(BAD / "missing-journal.md", content)
    with pytest.raises(SourceError, match="missing-journal.md"):
        load_summaries(content)
    warned: list[SourceError] = []
    loaded = load_summaries(content, skip_invalid=True, warn=warned.append)
    assert len(warned) == 1 and warned[0].field == "journal"
    assert len(loaded) == len(list((REPO / "content").glob("*.md")))


# --- sources configured by kind ----------------------------------------------------------------------

def _settings_with(tmp_path: Path, lines: str) -> object:
    from newsletter.settings import load_settings

    config = tmp_path / "newsletter.toml"
    config.write_text(lines, encoding="utf-8")
    return load_settings(config, env={"NEWSLETTER_SECRET": "x"})


def test_sources_are_keyed_by_kind_and_the_old_feeds_key_still_reads(tmp_path: Path) -> None:
    from newsletter.settings import Source

    current = _settings_with(tmp_path, 'sources = [{ kind = "feed", location = "https://example.org/f", '
                                       'journal = "J" }]\n')
    assert current.sources == (Source("feed", "https://example.org/f", "J"),)  # type: ignore[attr-defined]
    older = _settings_with(tmp_path, 'feeds = ["content/feeds/partner-news.xml"]\n')
    assert older.sources == (Source("feed", "content/feeds/partner-news.xml"),)  # type: ignore[attr-defined]


def test_a_source_without_a_kind_or_with_an_unknown_kind_is_one_clear_error(tmp_path: Path) -> None:
    from newsletter.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sources\[0\].*kind"):
        _settings_with(tmp_path, 'sources = [{ location = "https://example.org/f" }]\n')
    with pytest.raises(SourceError, match="unknown source kind 'json-api'.*known: feed"):
        read_source("https://example.org/api", kind="json-api")


def test_a_configured_kind_decides_the_reader_not_the_location() -> None:
    # A feed saved under a name no suffix rule knows is still read as a feed when configured so.
    location = str(REPO / "content/feeds/partner-news.xml")
    assert read_source(location, kind="feed") == read_source(location)

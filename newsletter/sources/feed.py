"""RSS/Atom feeds (feedparser) -> Summary, one per entry."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import SourceError
from ..models import Summary
from ..text import content_problem, is_safe_link, markdown_to_text
from . import register

__all__ = ["read_feed", "slug_from_url"]


def slug_from_url(url: str) -> str:
    """A stable summary id from the last path segment of its URL."""
    parts = urlsplit(url)
    segment = [p for p in parts.path.split("/") if p]
    base = segment[-1] if segment else parts.hostname or "entry"
    base = re.sub(r"\.[a-z0-9]{1,5}$", "", base.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:100]
    return slug or "entry"


def _date(entry: Any) -> dt.date | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return dt.datetime.fromtimestamp(calendar.timegm(value), dt.timezone.utc).date()
    return None


def _journal(entry: Any, default: str | None) -> str | None:
    source = entry.get("source") or {}
    title = source.get("title") if isinstance(source, dict) else None
    return (title or default or "").strip() or None


@register("feed", ".rss", ".atom", ".xml")
def read_feed(location: str, *, journal: str | None = None, **_: object) -> list[Summary]:
    """Read a feed; entries that lack a title, date, link or journal are errors naming the entry."""
    is_url = location.startswith(("http://", "https://"))
    if not is_url and not Path(location).is_file():
        raise SourceError(location, "feed file not found")
    import feedparser  # ~60 ms to import: only when a feed is read, not for every build

    parsed = feedparser.parse(location, sanitize_html=True, resolve_relative_uris=False)
    if parsed.get("bozo") and not parsed.get("entries"):
        exc = parsed.get("bozo_exception")
        line = exc.getLineNumber() if hasattr(exc, "getLineNumber") else None
        raise SourceError(location, f"feed does not parse: {exc}", line=line, field="feed")
    if parsed.get("bozo") and isinstance(parsed.get("bozo_exception"), Exception) and \
            not isinstance(parsed.get("bozo_exception"), feedparser.CharacterEncodingOverride):
        exc = parsed["bozo_exception"]
        line = exc.getLineNumber() if hasattr(exc, "getLineNumber") else None
        raise SourceError(location, f"feed is malformed: {exc}", line=line, field="feed")
    out: list[Summary] = []
    for index, entry in enumerate(parsed.entries, start=1):
        where = f"entry {index}"
        title = " ".join((entry.get("title") or "").split())
        link = (entry.get("link") or "").strip()
        if not title:
            raise SourceError(location, f"{where} has no title", field="title")
        if not is_safe_link(link, allow_mailto=False):
            raise SourceError(location, f"{where} ({title!r}): link {link!r} is not an absolute http(s) URL",
                              field="link")
        date = _date(entry)
        if date is None:
            raise SourceError(location, f"{where} ({title!r}) has no parseable date", field="pubDate")
        name = _journal(entry, journal)
        if name is None:
            raise SourceError(location, f"{where} ({title!r}) names no journal: add <source> to the entry "
                                        "or `journal` to the feed's entry in newsletter.toml", field="source")
        description = markdown_to_text(entry.get("summary") or "")
        for field, value in (("title", title), ("link", link), ("description", description), ("source", name)):
            problem = content_problem(value)
            if problem:
                raise SourceError(location, f"{where} ({title[:60]!r}): {problem}", field=field)
        out.append(Summary(
            id=slug_from_url(link), title=markdown_to_text(title), date=date, journal=name, url=link,
            source_url=None, teaser=description, findings=description,
            tags=tuple(t.get("term", "") for t in entry.get("tags", []) if t.get("term")),
            origin=location,
        ))
    return out

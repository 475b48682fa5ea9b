"""Sources: readers registered by suffix or kind turn files and feeds into Summary records."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import SourceError, SourceErrors
from ..models import Summary

__all__ = ["Reader", "register", "reader_for", "read_source", "load_summaries", "READERS"]

#: A reader takes a path or URL and returns the summaries it holds.
Reader = Callable[..., list[Summary]]

#: suffix (".md") or kind ("feed") -> reader
READERS: dict[str, Reader] = {}


def register(*keys: str) -> Callable[[Reader], Reader]:
    """Register a reader for file suffixes (".md") and/or source kinds ("feed")."""

    def deco(fn: Reader) -> Reader:
        for key in keys:
            READERS[key.lower()] = fn
        return fn

    return deco


def reader_for(location: str) -> Reader:
    """Choose a reader: URLs are feeds; files by suffix."""
    if location.startswith(("http://", "https://")):
        return READERS["feed"]
    suffix = Path(location).suffix.lower()
    try:
        return READERS[suffix]
    except KeyError:
        known = ", ".join(sorted(k for k in READERS if k.startswith(".")))
        raise SourceError(location, f"no reader for files ending in {suffix or '(nothing)'} (known: {known})") from None


def reader_of_kind(kind: str, location: str) -> Reader:
    """The reader registered for a configured source kind ("feed"); SourceError naming the known kinds."""
    try:
        return READERS[kind.lower()]
    except KeyError:
        known = ", ".join(sorted(k for k in READERS if not k.startswith(".")))
        raise SourceError(location, f"unknown source kind {kind!r} (known: {known})", field="kind") from None


def read_source(location: str, *, kind: str | None = None, **options: object) -> list[Summary]:
    """Read one source with the reader for its configured `kind`, or by suffix (URLs: feeds) without one."""
    reader = reader_of_kind(kind, location) if kind else reader_for(location)
    return reader(location, **options)


def load_summaries(
    content_dir: Path,
    sources: Iterable[tuple[str, str, str | None]] = (),
    *,
    skip_invalid: bool = False,
    warn: Callable[[SourceError], None] | None = None,
) -> list[Summary]:
    """Every summary file at the top of content_dir (Markdown), then every configured (kind, location, journal).

    Broken sources stop the load with one error listing every one of them (SourceErrors when several),
    unless skip_invalid, where each is reported to `warn` and left out.
    """
    if not content_dir.is_dir():
        raise SourceError(content_dir, "content folder not found")
    found: list[Summary] = []
    locations: list[tuple[str, dict[str, object]]] = [
        (str(p), {}) for p in sorted(content_dir.iterdir())
        if p.is_file() and p.suffix.lower() in _CONTENT_SUFFIXES and not p.name.startswith(".")
    ]
    locations += [(loc, {"kind": kind, "journal": journal}) for kind, loc, journal in sources]
    broken: list[SourceError] = []
    for location, options in locations:
        try:
            found.extend(read_source(location, **options))
        except SourceError as exc:
            if not skip_invalid:
                broken.append(exc)
            elif warn:
                warn(exc)
    if len(broken) == 1:
        raise broken[0]
    if broken:
        raise SourceErrors(broken)
    _check_unique_ids(found)
    return found


def _check_unique_ids(summaries: list[Summary]) -> None:
    seen: dict[str, Summary] = {}
    for s in summaries:
        other = seen.get(s.id)
        if other is not None and other.url != s.url:
            raise SourceError(s.origin, f"summary id {s.id!r} is also used by {other.origin}", field="id")
        seen.setdefault(s.id, s)


# Register the built-in readers.
from . import feed as _feed  # noqa: E402,F401
from . import markdown as _markdown  # noqa: E402,F401

#: Suffixes picked up when scanning the content folder (feeds are listed in settings instead).
_CONTENT_SUFFIXES = frozenset(_markdown.SUFFIXES)

"""Markdown summary files with YAML front matter -> Summary."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import SourceError
from ..models import Summary
from ..text import content_problem, is_safe_link, markdown_to_text, unsafe_links
from . import register

__all__ = ["read_markdown", "SECTION_HEADINGS", "MAX_BYTES", "SUFFIXES"]

SUFFIXES = (".md", ".markdown")
MAX_BYTES = 1_000_000
_REQUIRED = ("title", "date", "journal", "url", "source_url")
_OPTIONAL = ("teaser", "tags", "image", "image_alt", "id")
#: heading (lower-case, without trailing punctuation) -> Summary field
SECTION_HEADINGS = {
    "what the study found": "findings",
    "why this matters": "why_it_matters",
    "why it matters": "why_it_matters",
    "limitations": "limitations",
}
_SECTIONS = (("What the study found", "findings"), ("Why this matters", "why_it_matters"),
             ("Limitations", "limitations"))
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_FRONT = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)


#: libyaml's parser when PyYAML was built with it (about 3x faster on front matter), else the pure-Python one;
#: the constructors, and so the values, are the same.
_SAFE_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FrontMatterLoader(_SAFE_BASE):  # type: ignore[valid-type,misc]
    """yaml.safe_load, except that a value YAML cannot construct is a YAMLError that knows its line."""


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except (ValueError, OverflowError) as exc:  # 2026-02-30, month 13: the regex matched, the calendar did not
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a real date ({exc}); write it as YYYY-MM-DD", node.start_mark,
        ) from None


_FrontMatterLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _key_at(front: str, line: int | None) -> str:
    """The front-matter key written on `line` (file numbering), or "front matter"."""
    lines = front.splitlines()
    if line is not None and 2 <= line < len(lines) + 2:
        m = re.match(r"^([A-Za-z_][\w-]*)\s*:", lines[line - 2])
        if m:
            return m.group(1)
    return "front matter"


def _line_of(front: str, key: str) -> int | None:
    for i, line in enumerate(front.splitlines(), start=2):  # line 1 is the opening ---
        if re.match(rf"^{re.escape(key)}\s*:", line):
            return i
    return None


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(path, f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise SourceError(path, f"file is {len(raw):,} bytes; summaries are limited to {MAX_BYTES:,}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SourceError(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line=line) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _string(path: Path, front: str, meta: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = meta.get(key)
    line = _line_of(front, key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise SourceError(path, "missing (required)" if value is None else "is empty", line=line, field=key)
        return None
    if not isinstance(value, str):
        raise SourceError(path, f"must be text, not {type(value).__name__}", line=line, field=key)
    if any(ord(c) < 0x20 and c != "\t" for c in value) or "\u2028" in value or "\u2029" in value:
        raise SourceError(path, "must be a single line without control characters", line=line, field=key)
    problem = content_problem(value)
    if problem:
        raise SourceError(path, problem, line=line, field=key)
    return value.strip()


def _date(path: Path, front: str, value: Any) -> dt.date:
    line = _line_of(front, "date")
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise SourceError(path, f"{value!r} is not a date; write it as YYYY-MM-DD (e.g. 2026-03-01)",
                      line=line, field="date")


def _sections(path: Path, body: str, body_line: int) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for offset, line in enumerate(body.split("\n")):
        m = re.match(r"^##\s+(.+?)\s*#*\s*$", line)
        if m:
            heading = m.group(1).strip().rstrip(":?.").strip()
            key = SECTION_HEADINGS.get(heading.lower())
            if key is None:
                expected = "', '".join(h for h, _ in _SECTIONS)
                raise SourceError(path, f"unknown section '{heading}' (expected '{expected}')",
                                  line=body_line + offset, field="sections")
            if key in sections:
                raise SourceError(path, f"section '{heading}' appears twice", line=body_line + offset,
                                  field="sections")
            sections[key] = []
            current = key
        elif current is not None:
            sections[current].append(line)
        elif line.strip():
            raise SourceError(path, "text before the first '## What the study found' heading",
                              line=body_line + offset, field="sections")
    out = {k: "\n".join(v).strip() for k, v in sections.items()}
    for key, text in out.items():
        problem = content_problem(text)
        if problem:
            offset = next((n for n, line in enumerate(body.split("\n")) if content_problem(line)), 0)
            raise SourceError(path, problem, line=body_line + offset, field=key)
        bad = unsafe_links(text, allow_mailto=False)
        if bad:
            offset = next((n for n, line in enumerate(body.split("\n")) if bad[0] in line), 0)
            raise SourceError(path, f"link {bad[0]!r} is not an absolute http(s) link (write the whole "
                                    "address, e.g. https://example.org/page)", line=body_line + offset, field=key)
    for heading, key in _SECTIONS:
        if not out.get(key):
            raise SourceError(path, f"section '## {heading}' is missing or empty", field=key)
    return out


@register(*SUFFIXES)
def read_markdown(location: str, **_: object) -> list[Summary]:
    """Read one summary file; every problem is a SourceError naming the file, line and field."""
    path = Path(location)
    text = _text(path)
    m = _FRONT.match(text)
    if not m:
        raise SourceError(path, "no YAML front matter: the file must start with a '---' line, "
                                "the fields, then another '---' line", line=1, field="front matter")
    front = m.group(1) or ""
    try:
        meta = yaml.load(front, Loader=_FrontMatterLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = mark.line + 2 if mark is not None else None
        raise SourceError(path, exc.problem or str(exc).splitlines()[0], line=line,
                          field=_key_at(front, line)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SourceError(path, f"front matter is not valid YAML: {problem}", line=line,
                          field="front matter") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # any other value YAML cannot build
        raise SourceError(path, f"front matter has a value that cannot be read: {exc}", line=2,
                          field="front matter") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SourceError(path, "front matter must be a set of 'key: value' lines", line=2, field="front matter")
    unknown = sorted(str(k) for k in meta if k not in _REQUIRED + _OPTIONAL)
    if unknown:
        raise SourceError(path, f"unknown field (known: {', '.join(_REQUIRED + _OPTIONAL)})",
                          line=_line_of(front, unknown[0]), field=unknown[0])
    title = _string(path, front, meta, "title", required=True) or ""
    journal = _string(path, front, meta, "journal", required=True) or ""
    if meta.get("date") is None:
        raise SourceError(path, "missing (required)", line=_line_of(front, "date"), field="date")
    date = _date(path, front, meta["date"])
    links: dict[str, str | None] = {}
    for key, required in (("url", True), ("source_url", True), ("image", False)):
        value = _string(path, front, meta, key, required=required)
        if value is not None and not is_safe_link(value, allow_mailto=False):
            raise SourceError(path, f"{value!r} is not an absolute http(s) link", line=_line_of(front, key),
                              field=key)
        links[key] = value
    image_alt = _string(path, front, meta, "image_alt", required=links["image"] is not None)
    teaser = _string(path, front, meta, "teaser", required=False) or ""
    tags = meta.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, (str, int)) for t in tags):
        raise SourceError(path, "must be a list of words", line=_line_of(front, "tags"), field="tags")
    sid = meta.get("id", path.stem)
    if not isinstance(sid, str) or not _SLUG.match(sid):
        raise SourceError(path, f"{sid!r} is not a valid id (lower-case letters, digits and hyphens)",
                          line=_line_of(front, "id"), field="id")
    body_line = text[: m.end()].count("\n") + 1
    sections = _sections(path, text[m.end():], body_line)
    return [Summary(
        id=sid, title=" ".join(title.split()), date=date, journal=journal, url=links["url"] or "",
        source_url=links["source_url"], teaser=markdown_to_text(teaser),
        findings=sections["findings"], why_it_matters=sections["why_it_matters"],
        limitations=sections["limitations"], tags=tuple(str(t) for t in tags),
        image=links["image"], image_alt=image_alt, origin=str(path),
    )]

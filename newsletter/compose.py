"""Compose: chosen summaries -> an Issue an editor reviews, stored as issues/<id>/issue.toml."""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import IssueError
from .files import atomic_write
from .models import Issue, Summary
from .text import TEASER_LIMIT, content_problem, format_date

__all__ = [
    "ISSUE_FILE",
    "is_issue_id",
    "write_issue",
    "read_issue",
    "list_issue_folders",
    "used_summary_ids",
    "default_subject",
    "default_preheader",
    "default_intro",
]

ISSUE_FILE = "issue.toml"
SUBJECT_LIMIT = 78
_ID = re.compile(r"\d{4}-\d{2}-\d{2}(?:-[a-z0-9][a-z0-9-]{0,40})?\Z")


def is_issue_id(value: str) -> bool:
    """Issue ids are dates (YYYY-MM-DD), optionally with a lower-case -suffix; nothing else names a folder."""
    return bool(_ID.match(value))
_FIELDS = {"date", "subject", "preheader", "intro", "summaries", "status", "teasers"}
TEASER_OVERRIDE_LIMIT = TEASER_LIMIT  # what the editor types is what readers see, never cut
_STATUSES = ("draft", "discarded")


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    return (head[: head.rfind(" ")] if " " in head else head).rstrip(" ,;:") + "…"


def default_subject(summaries: list[Summary]) -> str:
    return _cut(summaries[0].title, SUBJECT_LIMIT) if summaries else "Research news"


def default_preheader(summaries: list[Summary]) -> str:
    if len(summaries) <= 1:
        return "New plain-language summaries of MS research, and what they mean for you."
    rest = len(summaries) - 2
    more = f" and {rest} more" if rest > 0 else ""
    return _cut(f"Also inside: {summaries[1].title}{more}.", 140)


def default_intro(summaries: list[Summary]) -> str:
    """True to the issue as built: its count and the dates of its research (no "new" for old items).

    Short sentences: it is checked for readability like everything an editor writes.
    """
    n = len(summaries)
    dates = sorted(s.date for s in summaries)
    one = n == 1
    text = f"This issue has {n} {'summary' if one else 'summaries'} of research, in plain words."
    if dates and dates[0] == dates[-1]:
        text += f" {'The study' if one else 'The studies'} came out on {format_date(dates[0])}."
    elif dates:
        first = format_date(dates[0]) if dates[0].year != dates[-1].year else f"{dates[0].day} {dates[0]:%B}"
        text += f" The studies came out from {first} to {format_date(dates[-1])}."
    return text + (f" For {'this' if one else 'each'} study, we say what it found and why it may matter to "
                   "people with MS and their carers. We also say where it falls short.")


def _toml_string(value: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


def _toml_multiline(value: str) -> str:
    if "'''" not in value and all(ord(c) >= 0x20 or c in "\n\t" for c in value):
        return "'''\n" + value.strip("\n") + "\n'''"
    return _toml_string(value)


def _preheader_lines(preheader: str, summaries: list[Summary]) -> list[str]:
    if preheader:
        return [f"preheader = {_toml_string(preheader)}"]
    # Left empty, the preheader is derived at build time from the list below, so it never names a
    # summary the editor dropped or moved; the comment shows what it says today.
    return [
        "# The line inboxes show after the subject. Empty = written for you from the summaries below",
        f"# when you build (today: {_toml_string(default_preheader(summaries))}).",
        'preheader = ""',
    ]


def _intro_lines(intro: str, summaries: list[Summary]) -> list[str]:
    if intro:
        return ["# Markdown. Links must be https://, http:// or mailto:.", f"intro = {_toml_multiline(intro)}"]
    # Left empty, the standard introduction is written at build time, so its count stays true.
    today = textwrap.wrap(default_intro(summaries), 94)
    return ["# Markdown. Links must be https://, http:// or mailto:. Empty = a standard introduction,",
            "# counted from the summaries below when you build. Today it would say:",
            *(f"#   {line}" for line in today),
            'intro = ""']


def render_issue_toml(issue_id: str, date: dt.date, subject: str, preheader: str, intro: str,
                      summaries: list[Summary], *, status: str = "draft",
                      teasers: Mapping[str, str] | None = None) -> str:
    lines = [
        f"# Newsletter issue {issue_id}. Edit freely, then run: newsletter build issues/{issue_id}",
        "# Set status = \"discarded\" to give its summaries back to the next issue.",
        f"date = {_toml_string(date.isoformat())}",
        f"status = {_toml_string(status)}",
        f"subject = {_toml_string(subject)}",
        *_preheader_lines(preheader, summaries),
        "",
        *_intro_lines(intro, summaries),
        "",
        "# Summary ids, in the order readers see them. Delete a line to drop one.",
        "summaries = [",
    ]
    for s in summaries:
        lines.append(f"  {_toml_string(s.id)},  # {s.date.isoformat()} · {s.journal} · {_cut(s.title, 60)}")
    lines.append("]")
    chosen = [(s.id, (teasers or {}).get(s.id, "").strip()) for s in summaries]
    if any(text for _, text in chosen):
        lines += ["", "# Optional: your own teaser for a summary, in place of the start of its findings.", "[teasers]"]
        lines += [f"{_toml_string(sid)} = {_toml_string(text)}" for sid, text in chosen if text]
    return "\n".join(lines) + "\n"


def write_issue(issues_dir: Path, issue_id: str, date: dt.date, summaries: list[Summary], *,
                subject: str | None = None, preheader: str | None = None, intro: str | None = None,
                force: bool = False) -> Path:
    """Write issues/<id>/issue.toml; refuses to overwrite unless force."""
    if not is_issue_id(issue_id):
        raise IssueError(issues_dir / issue_id, "issue ids are dates (YYYY-MM-DD), optionally with a -suffix")
    if not summaries:
        raise IssueError(issues_dir / issue_id, "no summaries to put in this issue (all are sent, "
                                                "used by another issue, dated after the issue date, or older "
                                                "than max_age_days)")
    folder = issues_dir / issue_id
    target = folder / ISSUE_FILE
    if target.exists() and not force:
        raise IssueError(target, "already exists; edit it, or compose again with --force to replace it")
    text = render_issue_toml(issue_id, date, subject or default_subject(summaries), preheader or "", intro or "",
                             summaries)
    atomic_write(target, text)
    return folder


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise IssueError(path, "not found: compose the issue first (newsletter compose)") from None
    except UnicodeDecodeError:
        raise IssueError(path, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise IssueError(path, f"not valid TOML: {exc}") from None


def _str_field(path: Path, data: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise IssueError(path, f"must be a string, not {type(value).__name__}", field=key)
    if required and not value.strip():
        raise IssueError(path, "is missing or empty", field=key)
    problem = content_problem(value)
    if problem:
        raise IssueError(path, problem, field=key)
    return value.strip() if key != "intro" else value


def read_issue(folder: Path, summaries_by_id: Mapping[str, Summary] | None = None) -> Issue:
    """Read issue.toml back; unknown fields and unknown summary ids are errors that name them."""
    path = folder / ISSUE_FILE
    data = _load_toml(path)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise IssueError(path, f"unknown field (known: {', '.join(sorted(_FIELDS))})", field=unknown[0])
    issue_id = folder.name
    raw_date = data.get("date")
    try:
        date = raw_date if isinstance(raw_date, dt.date) else dt.date.fromisoformat(str(raw_date))
    except ValueError:
        raise IssueError(path, f"{raw_date!r} is not a date (YYYY-MM-DD)", field="date") from None
    status = data.get("status", "draft")
    if status not in _STATUSES:
        raise IssueError(path, f"must be one of {', '.join(_STATUSES)}", field="status")
    ids = data.get("summaries")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise IssueError(path, "must be a non-empty list of summary ids", field="summaries")
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise IssueError(path, f"lists {', '.join(dupes)} more than once", field="summaries")
    resolved: tuple[Summary, ...] = ()
    if summaries_by_id is not None:
        missing = [i for i in ids if i not in summaries_by_id]
        if missing:
            raise IssueError(path, f"unknown summary id(s): {', '.join(missing)} "
                                   "(no file or feed entry has that id)", field="summaries")
        resolved = tuple(summaries_by_id[i] for i in ids)
    teasers = _teasers(path, data.get("teasers", {}), ids)
    if teasers and resolved:
        overrides = dict(teasers)
        resolved = tuple(replace(s, teaser=overrides[s.id]) if s.id in overrides else s for s in resolved)
    preheader = " ".join(_str_field(path, data, "preheader", required=False).split())
    custom_preheader = bool(preheader)
    if not preheader and resolved:
        preheader = default_preheader(list(resolved))
    intro = _str_field(path, data, "intro", required=False)
    if not intro.strip() and resolved:
        intro = default_intro(list(resolved))
    return Issue(id=issue_id, date=date, subject=" ".join(_str_field(path, data, "subject").split()),
                 preheader=preheader, custom_preheader=custom_preheader,
                 intro=intro, summary_ids=tuple(ids),
                 folder=folder, status=status, summaries=resolved, teasers=teasers)


def _teasers(path: Path, raw: Any, ids: list[str]) -> tuple[tuple[str, str], ...]:
    """The [teasers] table: summary id -> an editor's own teaser, only for summaries in this issue."""
    if not isinstance(raw, dict):
        raise IssueError(path, "must be a table of summary id = \"teaser text\"", field="teasers")
    out = []
    for sid, text in raw.items():
        where = f"teasers.{sid}"
        if sid not in ids:
            raise IssueError(path, "names a summary that is not in this issue's summaries list", field=where)
        if not isinstance(text, str):
            raise IssueError(path, f"must be a string, not {type(text).__name__}", field=where)
        problem = content_problem(text)
        if problem:
            raise IssueError(path, problem, field=where)
        text = " ".join(text.split())
        if len(text) > TEASER_OVERRIDE_LIMIT:
            raise IssueError(path, f"is {len(text)} characters; keep a teaser to {TEASER_OVERRIDE_LIMIT}", field=where)
        if text:
            out.append((sid, text))
    return tuple(out)


def list_issue_folders(issues_dir: Path) -> list[Path]:
    if not issues_dir.is_dir():
        return []
    return sorted(p for p in issues_dir.iterdir() if p.is_dir() and (p / ISSUE_FILE).exists())


def used_summary_ids(issues_dir: Path, *, exclude: Iterable[str] = ()) -> set[str]:
    """Ids already in an issue that is composed and not discarded (sent issues stay in issues/)."""
    skip = set(exclude)
    used: set[str] = set()
    for folder in list_issue_folders(issues_dir):
        if folder.name in skip:
            continue
        issue = read_issue(folder)
        if issue.status != "discarded":
            used.update(issue.summary_ids)
    return used

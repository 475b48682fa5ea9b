"""Editing jobs: gather summaries, compose an issue, build, check and approve it (nothing is sent here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.approval import Approval, approve as record_approval
from newsletter.check import CheckReport, check_email, check_issue
from newsletter.compose import read_issue, used_summary_ids, write_issue
from newsletter.errors import IssueError, SourceError
from newsletter.glossary import Glossary
from newsletter.models import Issue, RenderedEmail, Summary
from newsletter.render import render_email, write_build
from newsletter.selection import select_latest
from newsletter.settings import Settings
from newsletter.sources import load_summaries

__all__ = ["gather", "issue_folder", "compose", "write_chosen", "load_issue", "build", "check", "approve",
           "BuildResult"]

Warn = Callable[[SourceError], None]


def gather(settings: Settings, *, skip_invalid: bool = False, warn: Warn | None = None) -> list[Summary]:
    """Every summary the project knows: content files first, then the configured sources."""
    sources = [(s.kind, s.location if s.remote else str(settings.path(Path(s.location))), s.journal)
               for s in settings.sources]
    return load_summaries(settings.path(settings.content_dir), sources, skip_invalid=skip_invalid, warn=warn)


def issue_folder(settings: Settings, ref: str | Path) -> Path:
    """Accept `issues/2026-11-25`, `2026-11-25` or an absolute path."""
    path = Path(ref)
    if path.is_dir():
        return path.resolve()
    candidate = settings.path(settings.issues_dir) / path.name
    if candidate.is_dir():
        return candidate
    raise IssueError(ref, "no such issue folder (compose one with `newsletter compose`)")


def compose(settings: Settings, *, date: dt.date, limit: int | None = None, force: bool = False,
            skip_invalid: bool = False, since: dt.date | None = None, issue_id: str | None = None,
            warn: Warn | None = None) -> Issue:
    """Select the latest unsent summaries for `date` and write issues/<id>/issue.toml."""
    issues_dir = settings.path(settings.issues_dir)
    issue_id = issue_id or date.isoformat()
    summaries = gather(settings, skip_invalid=skip_invalid, warn=warn)
    chosen = select_latest(summaries, issue_date=date, limit=limit or settings.default_limit,
                           used_ids=used_summary_ids(issues_dir, exclude=[issue_id]), since=since)
    return write_chosen(issues_dir, issue_id, date, chosen, force=force)


def write_chosen(issues_dir: Path, issue_id: str, date: dt.date, chosen: list[Summary], *, force: bool = False) -> Issue:
    """Write issues/<id>/issue.toml for summaries already selected, and read it back."""
    folder = write_issue(issues_dir, issue_id, date, chosen, force=force)
    return read_issue(folder, {s.id: s for s in chosen})


def load_issue(settings: Settings, folder: Path, *, skip_invalid: bool = False, warn: Warn | None = None) -> Issue:
    summaries = gather(settings, skip_invalid=skip_invalid, warn=warn)
    by_id: dict[str, Summary] = {}
    for s in summaries:
        by_id.setdefault(s.id, s)
    return read_issue(folder, by_id)


@dataclass(frozen=True)
class BuildResult:
    issue: Issue
    email: RenderedEmail
    report: CheckReport
    meta: dict[str, Any]


def build(settings: Settings, folder: Path, *, write: bool = True, content_checks: bool = True,
          summaries: Mapping[str, Summary] | None = None, glossary: Glossary | None = None) -> BuildResult:
    """Render the issue once, check it, and write build/ (only when rendering succeeded).

    `content_checks=False` leaves out readability and the glossary (textstat's import alone is ~200 ms),
    for `newsletter build`, which an editor runs over and over while editing. The desk passes the
    `summaries` and `glossary` it already holds, so a save re-reads neither.
    """
    issue = load_issue(settings, folder) if summaries is None else read_issue(folder, summaries)
    if issue.status == "discarded":
        raise IssueError(folder / "issue.toml", "this issue is discarded; set status = \"draft\" to build it",
                         field="status")
    email = render_email(issue, settings)
    report = check_issue(issue, email, settings, glossary=glossary) if content_checks else check_email(email)
    meta = write_build(email, issue.build_dir, settings) if write else {}
    return BuildResult(issue=issue, email=email, report=report, meta=meta)


def check(settings: Settings, folder: Path) -> BuildResult:
    """`newsletter check`: render and check, writing nothing."""
    return build(settings, folder, write=False)


def approve(settings: Settings, folder: Path) -> Approval:
    """Freeze what is in build/ now: a full send refuses any other build."""
    del settings  # the approval lives beside the issue; kept for one calling convention
    return record_approval(folder)

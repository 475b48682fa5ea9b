"""Editing jobs: gather summaries, compose an issue, build, check and approve it (nothing is sent here)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.check import CheckReport, check_email, check_issue
from newsletter.compose import read_issue, used_summary_ids, write_issue
from newsletter.editorial import issue_findings, refuse_unsafe_links
from newsletter.errors import IssueError, SourceError
from newsletter.freeze import refuse_if_sent
from newsletter.models import Issue, RenderedEmail, Summary
from newsletter.render import render_email, write_build
from newsletter.settings import CONFIG_NAME, Settings
from newsletter.sources import load_summaries

if TYPE_CHECKING:  # approval and selection load in the jobs that use them: `build` needs neither
    from newsletter.approval import Approval
    from newsletter.glossary import Glossary
    from newsletter.selection import HeldBack

__all__ = ["gather", "issue_folder", "compose", "compose_with_notes", "Composed", "write_chosen", "load_issue",
           "build", "check", "approve", "BuildResult"]

Warn = Callable[[SourceError], None]


def gather(settings: Settings, *, skip_invalid: bool = False, warn: Warn | None = None) -> list[Summary]:
    """Every summary the project knows: content files first, then the configured sources."""
    content = settings.path(settings.content_dir)
    if not content.is_dir() and settings.config_file is None:
        raise SourceError(content, f"content folder not found, and no {CONFIG_NAME} in {settings.root} or any "
                                   "folder above it: run newsletter inside your project folder, or pass "
                                   f"--config path/to/{CONFIG_NAME}")
    sources = [(s.kind, s.location if s.remote else str(settings.path(Path(s.location))), s.journal)
               for s in settings.sources]
    return load_summaries(settings.path(settings.content_dir), sources, skip_invalid=skip_invalid, warn=warn)


def issue_folder(settings: Settings, ref: str | Path) -> Path:
    """Accept `issues/2026-11-25`, `2026-11-25`, an absolute path, or the issue.toml inside one."""
    path = Path(ref)
    if path.is_file():
        if path.name == "issue.toml":
            return path.resolve().parent
        raise IssueError(ref, "is a file; give the issue's folder (the one holding issue.toml), "
                              "e.g. issues/2026-11-25")
    if path.is_dir():
        return path.resolve()
    candidate = settings.path(settings.issues_dir) / path.name
    if candidate.is_dir():
        return candidate
    raise IssueError(ref, "no such issue folder: give a folder like issues/2026-11-25 (or just 2026-11-25); "
                          "compose one with `newsletter compose`")


@dataclass(frozen=True)
class Composed:
    """A composed issue and what it left out (future-dated or too old), for the editor to see."""

    issue: Issue
    held_back: tuple[HeldBack, ...]


def compose(settings: Settings, *, date: dt.date, limit: int | None = None, force: bool = False,
            skip_invalid: bool = False, since: dt.date | None = None, issue_id: str | None = None,
            warn: Warn | None = None) -> Issue:
    """Select the latest unsent summaries for `date` and write issues/<id>/issue.toml."""
    return compose_with_notes(settings, date=date, limit=limit, force=force, skip_invalid=skip_invalid,
                              since=since, issue_id=issue_id, warn=warn).issue


def compose_with_notes(settings: Settings, *, date: dt.date, limit: int | None = None, force: bool = False,
                       skip_invalid: bool = False, since: dt.date | None = None, issue_id: str | None = None,
                       warn: Warn | None = None) -> Composed:
    """compose(), also returning the summaries it held back and why."""
    from newsletter.selection import held_back, select_latest

    issues_dir = settings.path(settings.issues_dir)
    issue_id = issue_id or date.isoformat()
    summaries = gather(settings, skip_invalid=skip_invalid, warn=warn)
    if (issues_dir / issue_id / "issue.toml").exists():
        refuse_if_sent(settings, issues_dir / issue_id, "compose it again")
    used = used_summary_ids(issues_dir, exclude=[issue_id])
    oldest = date - dt.timedelta(days=settings.max_age_days)
    chosen = select_latest(summaries, issue_date=date, limit=limit or settings.default_limit,
                           used_ids=used, since=since, oldest=oldest)
    issue = write_chosen(issues_dir, issue_id, date, chosen, force=force)
    left_out = held_back(summaries, issue_date=date, used_ids=used, oldest=oldest)
    return Composed(issue=issue, held_back=tuple(left_out))


def write_chosen(issues_dir: Path, issue_id: str, date: dt.date, chosen: list[Summary], *, force: bool = False) -> Issue:
    """Write issues/<id>/issue.toml for summaries already selected, and read it back."""
    folder = write_issue(issues_dir, issue_id, date, chosen, force=force)
    return read_issue(folder, {s.id: s for s in chosen})


def load_issue(settings: Settings, folder: Path, *, skip_invalid: bool = False,
               warn: Warn | None = None,
               summaries: list[Summary] | None = None) -> Issue:
    if summaries is None:
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
          summaries: list[Summary] | None = None, glossary: Glossary | None = None) -> BuildResult:
    """Render the issue once, check it, and write build/ (only when rendering succeeded).

    `content_checks=False` leaves out readability and the glossary (textstat's import alone is ~200 ms),
    for `newsletter build`, which an editor runs over and over while editing. The desk passes the
    `summaries` and `glossary` it already holds, so a save re-reads neither.
    """
    known = gather(settings) if summaries is None else summaries
    issue = load_issue(settings, folder, summaries=known)
    if issue.status == "discarded":
        raise IssueError(folder / "issue.toml", "this issue is discarded; set status = \"draft\" to build it",
                         field="status")
    if write:
        refuse_if_sent(settings, folder, "build it again")
    refuse_unsafe_links(issue)
    email = render_email(issue, settings)
    report = check_issue(issue, email, settings, glossary=glossary) if content_checks else check_email(email)
    editorial = issue_findings(issue, known, today=dt.datetime.now(settings.tz).date(), root=settings.root)
    report = dataclasses.replace(report, findings=report.findings + tuple(editorial))
    meta = write_build(email, issue.build_dir, settings) if write else {}
    return BuildResult(issue=issue, email=email, report=report, meta=meta)


def check(settings: Settings, folder: Path) -> BuildResult:
    """`newsletter check`: render and check, writing nothing."""
    return build(settings, folder, write=False)


def approve(settings: Settings, folder: Path) -> Approval:
    """Freeze what is in build/ now: a full send refuses any other build."""
    from newsletter.approval import approve as record_approval

    del settings  # the approval lives beside the issue; kept for one calling convention
    return record_approval(folder)

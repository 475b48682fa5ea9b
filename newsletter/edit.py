"""Editing: candidates for a new issue (and why others wait), and a checked, conflict-safe save of issue.toml."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .compose import (ISSUE_FILE, SUBJECT_LIMIT, TEASER_OVERRIDE_LIMIT, atomic_write, list_issue_folders,
                      read_issue, render_issue_toml)
from .errors import IssueError, NewsletterError, SourceError
from .models import Issue, Summary
from .selection import merge_duplicates
from .text import content_problem

__all__ = ["Candidate", "candidates", "used_by_issue", "issue_version", "IssueEdit", "EditConflict",
           "edit_problems", "save_edit", "PREHEADER_LIMIT", "INTRO_LIMIT"]

PREHEADER_LIMIT = 200
INTRO_LIMIT = 5000


@dataclass(frozen=True)
class Candidate:
    """A summary offered for a new issue; `held_back` says why it is not offered (None: it can go in)."""

    summary: Summary | None
    held_back: str | None = None
    source: str = ""  # for a broken file: which one


def used_by_issue(issues_dir: Path, *, exclude: str = "") -> dict[str, str]:
    """Summary id -> the issue that holds it (composed, not discarded)."""
    used: dict[str, str] = {}
    for folder in list_issue_folders(issues_dir):
        if folder.name == exclude:
            continue
        issue = read_issue(folder)
        if issue.status != "discarded":
            for sid in issue.summary_ids:
                used.setdefault(sid, folder.name)
    return used


def candidates(summaries: Sequence[Summary], broken: Sequence[SourceError], *, date: dt.date,
               used: Mapping[str, str]) -> list[Candidate]:
    """Every summary, newest first: the free ones, then the held-back ones with the reason `compose` has."""
    free, held = [], []
    for s in sorted(sorted(merge_duplicates(summaries), key=lambda s: s.id), key=lambda s: s.date, reverse=True):
        if s.date > date:
            held.append(Candidate(s, f"dated {s.date.isoformat()}, after this issue's date: it waits for a later issue"))
        elif s.id in used:
            held.append(Candidate(s, f"already in the issue of {used[s.id]}"))
        else:
            free.append(Candidate(s))
    for exc in broken:
        held.append(Candidate(None, f"this file has a problem and was left out: {exc.reason}"
                                    + (f" (field {exc.field})" if exc.field else ""), source=Path(exc.path).name))
    return free + held


def issue_version(folder: Path) -> str:
    """What the edit form carries back: a save is refused if issue.toml changed since the form was shown."""
    try:
        return hashlib.sha256((folder / ISSUE_FILE).read_bytes()).hexdigest()[:20]
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class IssueEdit:
    """What the edit form holds: the words, and the summaries in reading order with optional own teasers."""

    subject: str
    preheader: str
    intro: str
    summary_ids: tuple[str, ...]
    teasers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, issue: Issue) -> IssueEdit:
        # An empty preheader in issue.toml is written at build time from the summaries: keep it empty.
        preheader = issue.preheader if issue.custom_preheader else ""
        return cls(issue.subject, preheader, issue.intro, issue.summary_ids, dict(issue.teasers))


class EditConflict(NewsletterError):
    """Someone saved the issue after this form was shown; saving it would lose their change."""


def edit_problems(edit: IssueEdit, known: Mapping[str, Summary]) -> dict[str, str]:
    """Field name -> a plain-words problem; empty when the edit can be saved."""
    problems: dict[str, str] = {}
    subject = " ".join(edit.subject.split())
    if not subject:
        problems["subject"] = "Write a subject line: it is what people see in their inbox."
    elif len(subject) > SUBJECT_LIMIT:
        problems["subject"] = f"The subject has {len(subject)} characters. Please keep it to {SUBJECT_LIMIT}."
    if len(edit.preheader) > PREHEADER_LIMIT:
        problems["preheader"] = f"The preview line is long. Please keep it to {PREHEADER_LIMIT} characters."
    if len(edit.intro) > INTRO_LIMIT:
        problems["intro"] = f"The introduction is long. Please keep it to {INTRO_LIMIT} characters."
    for name in ("subject", "preheader", "intro"):
        problem = content_problem(getattr(edit, name))
        if problem and name not in problems:
            problems[name] = f"This text cannot go into an email: it {problem}."
    if not edit.summary_ids:
        problems["summaries"] = "An issue needs at least one summary. Add one below."
    unknown = [sid for sid in edit.summary_ids if sid not in known]
    if unknown:
        problems["summaries"] = f"These summaries no longer exist: {', '.join(unknown)}. Remove them."
    for sid, text in edit.teasers.items():
        text = " ".join(text.split())
        if len(text) > TEASER_OVERRIDE_LIMIT:
            problems[f"teaser-{sid}"] = f"This teaser has {len(text)} characters. Please keep it to {TEASER_OVERRIDE_LIMIT}."
        elif content_problem(text):
            problems[f"teaser-{sid}"] = "This teaser contains characters that cannot go into an email."
    return problems


def save_edit(issue: Issue, edit: IssueEdit, known: Mapping[str, Summary], *, expected_version: str) -> str:
    """Write issue.toml from `edit` if nobody saved it since `expected_version`; returns the new version.

    Raises EditConflict on a stale version and IssueError when the edit has problems (see edit_problems).
    """
    problems = edit_problems(edit, known)
    if problems:
        raise IssueError(issue.folder / ISSUE_FILE, "; ".join(problems.values()))
    text = render_issue_toml(issue.id, issue.date, " ".join(edit.subject.split()), " ".join(edit.preheader.split()),
                             edit.intro.replace("\r\n", "\n"), [known[sid] for sid in edit.summary_ids],
                             status=issue.status, teasers={k: v for k, v in edit.teasers.items() if k in edit.summary_ids})
    # Compare and write under a lock: two saves in the same instant must not both pass the check.
    with open(issue.folder / ".edit.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if issue_version(issue.folder) != expected_version:
                raise EditConflict("Someone else saved this issue after you opened it. Your changes were not saved: "
                                   "open the issue again to see theirs, then make your changes once more.")
            atomic_write(issue.folder / ISSUE_FILE, text)
            return issue_version(issue.folder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

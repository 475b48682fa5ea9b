"""Freeze: once any subscriber has an issue, its issue.toml and build stay as they were sent."""

from __future__ import annotations

import re
from pathlib import Path

from .compose import ISSUE_FILE
from .errors import IssueError
from .files import atomic_write
from .settings import Settings
from .store import open_store

__all__ = ["sent_count", "refuse_if_sent", "start_correction", "IssueFrozen"]


class IssueFrozen(IssueError):
    """The issue has `sent` ledger rows: editing, rebuilding or re-approving it would rewrite history."""


def sent_count(settings: Settings, issue_id: str) -> int:
    """How many subscribers have this issue (0 when there is no database yet)."""
    if settings.database_url is None and not settings.path(settings.database).exists():
        return 0
    return open_store(settings).counts(issue_id).sent


def refuse_if_sent(settings: Settings, folder: Path, action: str) -> None:
    """IssueFrozen when `folder`'s issue went to anyone; the message says how to send a correction."""
    sent = sent_count(settings, folder.name)
    if sent:
        raise IssueFrozen(folder, f"cannot {action}: this issue was already sent to {sent} subscriber(s), so its "
                                  "issue.toml and build stay as they received them (the web archive shows the "
                                  f"same). To send a correction, start a new issue from this one: newsletter compose "
                                  f"--correction-of {folder.name}, edit it, then build, approve and send it")


def start_correction(settings: Settings, folder: Path) -> Path:
    """A new draft issue <id>-correction (or -correction-2 …) holding a copy of a sent issue's issue.toml."""
    base = f"{folder.name}-correction"
    issues_dir = settings.path(settings.issues_dir)
    target, n = issues_dir / base, 1
    while (target / ISSUE_FILE).exists():
        n += 1
        target = issues_dir / f"{base}-{n}"
    text = (folder / ISSUE_FILE).read_text(encoding="utf-8-sig")
    text = re.sub(r'(?m)^subject = "(?!Correction: )', 'subject = "Correction: ', text, count=1)
    text = re.sub(r'(?m)^status = .*$', 'status = "draft"', text, count=1)
    note = f"# A correction of issue {folder.name}, which subscribers already have.\n"
    atomic_write(target / ISSUE_FILE, note + text)
    return target

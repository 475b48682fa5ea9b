"""Approval: freezes a build by recording its content hash in issues/<id>/approval.json."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from .files import atomic_write
from .errors import ApprovalError
from .models import RenderedEmail
from .render import read_build

__all__ = ["Approval", "approve", "require_approval", "read_approval", "APPROVAL_FILE"]

APPROVAL_FILE = "approval.json"


@dataclass(frozen=True)
class Approval:
    issue_id: str
    sha256: str
    subject: str
    approved_at: str
    approved_by: str = ""  # who, when approved on the desk ("Name <address>"); empty from the CLI


def approve(folder: Path, *, email: RenderedEmail | None = None, by: str = "") -> Approval:
    """Record the hash of what is in build/ now (or of `email`, just written there); a send checks it."""
    if email is None:
        email, _ = read_build(folder / "build")
    approval = Approval(issue_id=folder.name, sha256=email.sha256, subject=email.subject,
                        approved_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), approved_by=by)
    record = {k: v for k, v in approval.__dict__.items() if v or k != "approved_by"}  # the CLI's file is unchanged
    atomic_write(folder / APPROVAL_FILE, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return approval


def read_approval(folder: Path) -> Approval | None:
    path = folder / APPROVAL_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Approval(**{k: str(data[k]) for k in ("issue_id", "sha256", "subject", "approved_at")},
                        approved_by=str(data.get("approved_by", "")))
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise ApprovalError(f"{path} is damaged; approve again: newsletter approve {folder}") from None


def require_approval(folder: Path) -> RenderedEmail:
    """The gate for a full send: approved, and the build unchanged since. Returns that build, read once."""
    approval = read_approval(folder)
    if approval is None:
        raise ApprovalError(f"issue {folder.name} is not approved. Review build/preview.html, "
                            f"then run: newsletter approve {folder}")
    email, _ = read_build(folder / "build")
    if email.sha256 != approval.sha256:
        raise ApprovalError(f"issue {folder.name} changed since it was approved at {approval.approved_at} "
                            f"(the build differs). Review it, then approve again: newsletter approve {folder}")
    return email

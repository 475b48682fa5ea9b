"""The desk's jobs: compose, save, preview, proof, approve and send for a signed-in person, audited.

Each function calls the same jobs as the CLI (issues.build with its checks, approval, delivery.send_full
and its ledger) and adds what only the desk knows: who did it (the audit log) and the two-person
approval rule. Scheduling goes through newsletter.schedule, a layer above this one, from the web desk.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from newsletter.approval import Approval, approve as record_approval, read_approval
from newsletter.check import CheckReport, check_issue
from newsletter.compose import default_intro, default_preheader, is_issue_id, list_issue_folders, read_issue
from newsletter.edit import Candidate, IssueEdit, candidates, issue_version, save_edit, used_by_issue
from newsletter.errors import ApprovalError, IssueError, NewsletterError, SourceError
from newsletter.glossary import Glossary, load_glossary
from newsletter.models import Issue, Summary
from newsletter.render import fill_placeholders, neutral_values, read_build, render_email
from newsletter.settings import Settings
from newsletter.store import LedgerCounts, desk as desk_store, ledger

from .accounts import EditorRow, desk_db
from .delivery import dry_run, send_full, send_proof
from .issues import BuildResult, build, gather, write_chosen

__all__ = ["IssueRow", "Opened", "DeskRefusal", "overview", "new_issue_candidates", "compose_chosen", "open_issue",
           "issue_name", "save", "preview_build", "draft_preview", "proof", "approve", "can_approve", "recipients", "start_send",
           "require_approved", "record", "progress", "sending_now"]


class DeskRefusal(NewsletterError):
    """The desk will not do this; the message is written for the editor."""


@dataclass(frozen=True)
class IssueRow:
    """One issue on the dashboard."""

    id: str
    subject: str
    date: dt.date
    state: str  # draft | approved | scheduled | sending | sent | discarded | broken
    counts: LedgerCounts | None = None
    bounced: int = 0
    scheduled_at: dt.datetime | None = None
    problem: str = ""


@dataclass(frozen=True)
class Opened:
    """An issue opened for editing: what is on disk, its version, and every summary it could hold."""

    issue: Issue
    version: str
    known: Mapping[str, Summary]
    frozen: bool  # sending started: the issue can no longer change


def _folder(settings: Settings, issue_id: str) -> Path:
    folder = settings.path(settings.issues_dir) / issue_name(issue_id)
    if not (folder / "issue.toml").is_file():
        raise DeskRefusal("There is no issue with that name.")
    return folder


def issue_name(issue_id: str) -> str:
    """`issue_id` if it can name an issue folder; DeskRefusal otherwise (nothing reaches a path unchecked)."""
    if not is_issue_id(issue_id):
        raise DeskRefusal("There is no issue with that name.")
    return issue_id


def _audit(settings: Settings, editor: EditorRow | None, action: str, *, issue_id: str | None = None,
           version: str | None = None, detail: str = "") -> None:
    with desk_db(settings) as conn:
        desk_store.audit(conn, editor, action, issue_id=issue_id, version=version, detail=detail)


def _started(settings: Settings, issue_id: str) -> bool:
    """Any ledger row means subscribers may have it: the issue is frozen."""
    with desk_db(settings) as conn:
        c = ledger.counts(conn, issue_id)
    return bool(c.sent or c.claimed or c.failed or c.deferred)



def overview(settings: Settings, scheduled: Mapping[str, dt.datetime | None]) -> list[IssueRow]:
    """Every issue, newest first, with where it stands; `scheduled`: issue id -> when its send job fires."""
    rows = []
    with desk_db(settings) as conn:
        for folder in reversed(list_issue_folders(settings.path(settings.issues_dir))):
            try:
                issue = read_issue(folder)
            except IssueError as exc:
                rows.append(IssueRow(folder.name, "(cannot be read)", dt.date.min, "broken", problem=str(exc)))
                continue
            counts = ledger.counts(conn, issue.id)
            bounced = desk_store.bounced(conn, issue.id)
            started = counts.sent or counts.claimed or counts.failed or counts.deferred
            if issue.status == "discarded":
                state = "discarded"
            elif counts.claimed or (started and sending_now(issue.id)):
                state = "sending"
            elif started:
                state = "sent" if counts.remaining == 0 else "sending"
            elif issue.id in scheduled:
                state = "scheduled"
            elif _approved_current(folder):
                state = "approved"
            else:
                state = "draft"
            rows.append(IssueRow(issue.id, issue.subject, issue.date, state, counts if started else None, bounced,
                                 scheduled.get(issue.id)))
    return rows


def _approved_current(folder: Path) -> Approval | None:
    """The approval, if it still matches what is in build/."""
    try:
        approval = read_approval(folder)
        if approval is None:
            return None
        email, _ = read_build(folder / "build")
    except (IssueError, ApprovalError):
        return None
    return approval if email.sha256 == approval.sha256 else None


def new_issue_candidates(settings: Settings, date: dt.date) -> list[Candidate]:
    broken: list[SourceError] = []
    summaries = gather(settings, skip_invalid=True, warn=broken.append)
    used = used_by_issue(settings.path(settings.issues_dir), exclude=date.isoformat())
    return candidates(summaries, broken, date=date, used=used)


def compose_chosen(settings: Settings, editor: EditorRow, date: dt.date, ids: list[str]) -> Issue:
    """Write issues/<date>/issue.toml with the chosen summaries in the order shown (newest first)."""
    issues_dir = settings.path(settings.issues_dir)
    if (issues_dir / date.isoformat() / "issue.toml").exists():
        raise DeskRefusal(f"There is already an issue for {date.isoformat()}. Open it from the dashboard.")
    free = {c.summary.id: c.summary for c in new_issue_candidates(settings, date)
            if c.summary is not None and c.held_back is None}
    chosen = [free[i] for i in dict.fromkeys(ids) if i in free]
    if not chosen:
        raise DeskRefusal("Choose at least one summary for the issue.")
    chosen.sort(key=lambda s: (-s.date.toordinal(), s.id))
    issue = write_chosen(issues_dir, date.isoformat(), date, chosen)
    _audit(settings, editor, "compose", issue_id=issue.id, version=issue_version(issue.folder),
           detail=f"{len(chosen)} summaries")
    return issue


_CACHE_LOCK = threading.Lock()
_SUMMARIES: dict[Path, tuple[tuple[object, ...], tuple[list[Summary], list[SourceError]]]] = {}
_GLOSSARIES: dict[Path, tuple[tuple[object, ...], Glossary]] = {}


def _signature(paths: list[Path]) -> tuple[object, ...]:
    """What the files look like now (name, size, mtime): unchanged files need not be read again."""
    out: list[object] = []
    for p in paths:
        try:
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append((str(p), None))
    return tuple(out)


def _gathered(settings: Settings) -> tuple[list[Summary], list[SourceError]]:
    """Every summary and every broken source, re-read only when a content or feed file changed.

    An editor saves every few seconds; reading 14 files and a feed each time was most of a save. With a
    remote feed configured nothing is cached: a URL has no mtime to compare.
    """
    def read() -> tuple[list[Summary], list[SourceError]]:
        broken: list[SourceError] = []
        return gather(settings, skip_invalid=True, warn=broken.append), broken

    content = settings.path(settings.content_dir)
    if any(s.remote for s in settings.sources) or not content.is_dir():
        return read()
    files = sorted(p for p in content.iterdir() if p.is_file())
    key = _signature([content, *files, *(settings.path(Path(s.location)) for s in settings.sources)])
    with _CACHE_LOCK:
        cached = _SUMMARIES.get(content)
        if cached is not None and cached[0] == key:
            return cached[1]
    found = read()
    with _CACHE_LOCK:
        _SUMMARIES[content] = (key, found)
    return found


def known_summaries(settings: Settings) -> dict[str, Summary]:
    """Summary id -> summary (the first source wins, as in a build); broken files left out."""
    known: dict[str, Summary] = {}
    for s in _gathered(settings)[0]:
        known.setdefault(s.id, s)
    return known


def _glossary(settings: Settings) -> Glossary:
    path = settings.path(settings.glossary)
    key = _signature([path])
    with _CACHE_LOCK:
        cached = _GLOSSARIES.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
    glossary = load_glossary(path)
    with _CACHE_LOCK:
        _GLOSSARIES[path] = (key, glossary)
    return glossary


def open_issue(settings: Settings, issue_id: str) -> Opened:
    folder = _folder(settings, issue_id)
    known = known_summaries(settings)
    issue = read_issue(folder, known)
    return Opened(issue, issue_version(folder), known, _started(settings, issue_id))


def save(settings: Settings, editor: EditorRow, issue_id: str, edit: IssueEdit, version: str) -> str:
    opened = open_issue(settings, issue_id)
    if opened.frozen:
        raise DeskRefusal("Sending this issue has started, so it can no longer be changed.")
    new_version = save_edit(opened.issue, edit, opened.known, expected_version=version)
    _audit(settings, editor, "edit", issue_id=issue_id, version=new_version)
    return new_version


def preview_build(settings: Settings, issue_id: str) -> BuildResult | None:
    """Build the saved issue (writing build/, as `newsletter build` does); a frozen issue keeps its build."""
    folder = _folder(settings, issue_id)
    if _started(settings, issue_id):
        return None
    summaries, broken = _gathered(settings)
    if broken:
        raise broken[0]  # as `newsletter build` would: a broken summary file stops the build
    return build(settings, folder, summaries=summaries, glossary=_glossary(settings))


def draft_preview(settings: Settings, issue_id: str, edit: IssueEdit) -> tuple[str, CheckReport]:
    """The email as it would be with an unsaved edit: preview HTML and check report; nothing is written."""
    opened = open_issue(settings, issue_id)
    known = opened.known
    overrides = dict(edit.teasers)
    summaries = tuple(replace(known[i], teaser=overrides[i]) if overrides.get(i) else known[i]
                      for i in edit.summary_ids if i in known)
    # Empty preheader and intro are written from the summaries, as read_issue does for a build.
    preheader = " ".join(edit.preheader.split()) or default_preheader(list(summaries))
    intro = edit.intro if edit.intro.strip() else default_intro(list(summaries))
    issue = replace(opened.issue, subject=" ".join(edit.subject.split()), preheader=preheader, intro=intro,
                    summary_ids=tuple(s.id for s in summaries), summaries=summaries)
    email = render_email(issue, settings)
    return (fill_placeholders(email.html, neutral_values(settings, issue.id), html=True),
            check_issue(issue, email, settings, glossary=_glossary(settings)))


def proof(settings: Settings, editor: EditorRow, issue_id: str) -> str:
    folder = _folder(settings, issue_id)
    result = preview_build(settings, issue_id)
    if result is not None and not result.report.ok:
        raise DeskRefusal("Fix the problems listed beside the preview before sending a proof.")
    sent = send_proof(settings, folder, [editor.email])
    _audit(settings, editor, "proof", issue_id=issue_id, detail=f"to {sent[0]}")
    return sent[0]


def can_approve(settings: Settings, editor: EditorRow, issue_id: str) -> str | None:
    """Why `editor` may not approve this issue now, or None."""
    if editor.role != "approver":
        return "Only an approver can approve an issue."
    folder = _folder(settings, issue_id)
    if settings.two_person_approval:
        with desk_db(settings) as conn:
            last = desk_store.last_edit(conn, issue_id)
        # An edit made outside the desk (a text editor, the CLI) is not attributed to anyone here.
        if last is not None and last.editor_id == editor.id and last.version == issue_version(folder):
            return ("You made the last change to this issue, so someone else must approve it "
                    "(two-person approval is switched on).")
    return None


def approve(settings: Settings, editor: EditorRow, issue_id: str) -> Approval:
    """Build, check, apply the two-person rule, then freeze the build; the audit log records who and the hash."""
    reason = can_approve(settings, editor, issue_id)
    if reason:
        raise DeskRefusal(reason)
    result = preview_build(settings, issue_id)
    if result is None:
        raise DeskRefusal("Sending this issue has started; it was approved before.")
    if not result.report.ok:
        raise DeskRefusal("This issue has problems that block approval. They are listed beside the preview.")
    approval = record_approval(result.issue.folder, email=result.email, by=f"{editor.name} <{editor.email}>")
    _audit(settings, editor, "approve", issue_id=issue_id, version=approval.sha256,
           detail=f"build sha256 {approval.sha256}")
    return approval


def recipients(settings: Settings, issue_id: str) -> int:
    return dry_run(settings, _folder(settings, issue_id), sample=0).recipients


_SENDS: dict[str, threading.Thread] = {}
_SENDS_LOCK = threading.Lock()


def sending_now(issue_id: str) -> bool:
    thread = _SENDS.get(issue_id)
    return thread is not None and thread.is_alive()


def start_send(settings: Settings, editor: EditorRow, issue_id: str) -> None:
    """Send to everyone in a background thread (the page shows progress); refuses an unapproved build first."""
    folder = require_approved(settings, editor, issue_id, doing="send an issue")
    with _SENDS_LOCK:
        if sending_now(issue_id):
            return
        _audit(settings, editor, "send", issue_id=issue_id, detail=f"to {recipients(settings, issue_id)} subscribers")

        def run() -> None:
            try:
                report = send_full(settings, folder)
                _audit(settings, None, "send.done", issue_id=issue_id,
                       detail=f"{report.sent} sent, {report.deferred} deferred, {report.failed} failed"
                              + (f"; stopped: {report.stopped_early}" if report.stopped_early else ""))
            except NewsletterError as exc:
                _audit(settings, None, "send.error", issue_id=issue_id, detail=str(exc))

        thread = threading.Thread(target=run, name=f"desk-send-{issue_id}", daemon=True)
        _SENDS[issue_id] = thread
        thread.start()


def require_approved(settings: Settings, editor: EditorRow, issue_id: str, *, doing: str) -> Path:
    """The issue's folder, if `editor` may send or schedule it now (an approver, an approved current build)."""
    if editor.role != "approver":
        raise DeskRefusal(f"Only an approver can {doing}.")
    folder = _folder(settings, issue_id)
    if _approved_current(folder) is None:
        raise DeskRefusal("This issue is not approved, or it changed since it was approved. Approve it first.")
    return folder


def record(settings: Settings, editor: EditorRow | None, action: str, issue_id: str, detail: str = "") -> None:
    """One line in the audit log (for what the web layer does through the scheduler)."""
    _audit(settings, editor, action, issue_id=issue_id, detail=detail)


def progress(settings: Settings, issue_id: str) -> LedgerCounts:
    with desk_db(settings) as conn:
        return ledger.counts(conn, _folder(settings, issue_id).name)

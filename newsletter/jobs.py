"""The jobs: the one layer that wires the stages, called alike by the CLI, the scheduler and the web app.

compose, build, check, approve, proof, send, publish, digest and status are one function each. Every
rule about who may send what (approval, a build changed after sending began, demo subscribers) is
written here once. Nothing here prints; nothing below this layer imports it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .approval import Approval, approve as record_approval, read_approval, require_approval
from .check import CheckReport, check_email
from .compose import read_issue, used_summary_ids, write_issue
from .errors import CheckFailed, IssueError, SourceError, SubscriberError
from .models import Issue, RenderedEmail, Subscriber, Summary
from .personalise import Personaliser, prepare
from .render import read_build, render_email, write_build
from .selection import select_latest
from .policies import SendPolicy, SendReport
from .send import send_issue
from .settings import Settings, signing_secret
from .sources import load_summaries
from .store import ImportReport, LedgerCounts, open_store
from .store.subscribers import normalise_address
from .transports import allows_demo_subscribers, transport_factory, transport_url

__all__ = [
    "gather", "issue_folder", "load_issue", "compose", "build", "check", "approve", "send_proof", "send_full",
    "dry_run", "status", "publish", "digest", "seed_subscribers", "personaliser_for", "transport_url",
    "transport_factory", "send_lock_path", "SendInProgress", "BuildResult", "DryRun", "PublishResult",
    "DigestResult",
]

Warn = Callable[[SourceError], None]
Progress = Callable[[str, Subscriber], None]


# --- summaries and issues --------------------------------------------------------------------------------

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
    return _write(issues_dir, issue_id, date, chosen, force=force)


def _write(issues_dir: Path, issue_id: str, date: dt.date, chosen: list[Summary], *, force: bool = False) -> Issue:
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


def build(settings: Settings, folder: Path, *, write: bool = True) -> BuildResult:
    """Render the issue once, check it, and write build/ (only when rendering succeeded)."""
    issue = load_issue(settings, folder)
    if issue.status == "discarded":
        raise IssueError(folder / "issue.toml", "this issue is discarded; set status = \"draft\" to build it",
                         field="status")
    email = render_email(issue, settings)
    report = check_email(email)
    meta = write_build(email, issue.build_dir, settings) if write else {}
    return BuildResult(issue=issue, email=email, report=report, meta=meta)


def check(settings: Settings, folder: Path) -> BuildResult:
    """`newsletter check`: render and check, writing nothing."""
    return build(settings, folder, write=False)


def approve(settings: Settings, folder: Path) -> Approval:
    """Freeze what is in build/ now: a full send refuses any other build."""
    del settings  # the approval lives beside the issue; kept for one calling convention
    return record_approval(folder)


def _approve_unattended(settings: Settings, result: BuildResult) -> bool:
    """publish and an auto-sending digest approve what they built; never a changed build someone already got."""
    folder = result.issue.folder
    approval = read_approval(folder)
    if approval is not None and approval.sha256 == result.email.sha256:
        return False
    if approval is not None and status(settings, folder).sent:
        raise IssueError(folder, "the issue changed after some subscribers already received it; "
                                 "review it and send with `newsletter approve` + `newsletter send`")
    record_approval(folder, email=result.email)
    return True


def _build_checked(settings: Settings, folder: Path, refusal: str) -> BuildResult:
    """Build; a build with check errors is never approved unattended (`refusal` names the issue and problems)."""
    result = build(settings, folder)
    if not result.report.ok:
        problems = "; ".join(f.message for f in result.report.errors)
        raise CheckFailed(refusal.format(name=folder.name, problems=problems))
    return result


# --- delivery ----------------------------------------------------------------------------------------

def send_lock_path(settings: Settings, issue_id: str) -> Path:
    return settings.path(settings.database).parent / f".send-{issue_id}.lock"


class SendInProgress(IssueError):
    """Another process is sending this issue right now."""


@contextmanager
def _send_lock(settings: Settings, issue_id: str) -> Iterator[None]:
    """One send of an issue at a time: a live run's claims must not look like a crash's to another run.

    flock is released by the kernel when the process dies, so a crash never leaves a stale lock.
    """
    path = send_lock_path(settings, issue_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SendInProgress(issue_id, "another `newsletter send` of this issue is running; "
                                       "wait for it (or stop it) before sending again") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def personaliser_for(settings: Settings, folder: Path, *, test: bool = False,
                     email: RenderedEmail | None = None) -> Personaliser:
    if email is None:
        email, _ = read_build(folder / "build")
    return prepare(email, settings, secret=signing_secret(settings), test=test)


def send_proof(settings: Settings, folder: Path, recipients: list[str]) -> list[str]:
    """A "[TEST]" copy to each address; needs no approval and is never written to the ledger."""
    people = []
    for raw in recipients:
        try:
            people.append(Subscriber(id=0, email=normalise_address(raw), name=""))
        except SubscriberError as exc:
            raise SubscriberError(f"--to {raw!r}: {exc}", address=raw) from None
    personaliser = personaliser_for(settings, folder, test=True)
    with transport_factory(settings)() as transport:
        for person in people:
            transport.send(personaliser.message(person))
    return [p.email for p in people]


def send_full(settings: Settings, folder: Path, *, stop: threading.Event | None = None,
              progress: Progress | None = None, connections: int | None = None,
              rate: float | None = None) -> SendReport:
    """Everyone subscribed who has no final ledger row; refuses an unapproved or changed build."""
    personaliser = personaliser_for(settings, folder, email=require_approval(folder))
    policy = SendPolicy(connections=connections or settings.connections, rate=rate or settings.rate)
    with _send_lock(settings, folder.name), open_store(settings).connection() as conn:
        return send_issue(conn, folder.name, make_message=personaliser.message,
                          transport_factory=transport_factory(settings), policy=policy, stop=stop, progress=progress)


@dataclass(frozen=True)
class DryRun:
    issue_id: str
    approved: bool
    recipients: int
    sample: tuple[str, ...]


def dry_run(settings: Settings, folder: Path, *, sample: int = 10) -> DryRun:
    read_build(folder / "build")  # the build must exist
    approval = read_approval(folder)
    count, first = open_store(settings).pending(folder.name, sample=sample)
    return DryRun(issue_id=folder.name, approved=approval is not None, recipients=count, sample=tuple(first))


def status(settings: Settings, folder: Path) -> LedgerCounts:
    return open_store(settings).counts(folder.name)


def seed_subscribers(settings: Settings) -> ImportReport | None:
    """Import settings.seed_subscribers (the demo's sample list) when the database has no subscribers."""
    if settings.seed_subscribers is None or not allows_demo_subscribers(settings.transport):
        return None  # sample addresses are for the local demo, never for a real mail server
    return open_store(settings).seed_subscribers(settings.path(settings.seed_subscribers))


@dataclass(frozen=True)
class PublishResult:
    folder: Path
    composed: bool
    approved: bool
    seeded: int
    report: SendReport


def publish(settings: Settings, *, date: dt.date, stop: threading.Event | None = None,
            progress: Progress | None = None) -> PublishResult:
    """The main job: compose (unless the issue exists) + build + check + approve + send. Re-runnable."""
    issues_dir = settings.path(settings.issues_dir)
    folder = issues_dir / date.isoformat()
    composed = False
    if not (folder / "issue.toml").exists():
        compose(settings, date=date)
        composed = True
    folder = issue_folder(settings, folder)
    result = _build_checked(settings, folder, "issue {name} does not pass `newsletter check`: {problems}")
    newly_approved = _approve_unattended(settings, result)
    seeded = seed_subscribers(settings)
    report = send_full(settings, folder, stop=stop, progress=progress)
    return PublishResult(folder=folder, composed=composed, approved=newly_approved,
                         seeded=seeded.added if seeded else 0, report=report)


# --- digests ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DigestResult:
    """What one digest run did: `issue` is None when it skipped; `report` is None unless it sent."""

    issue_id: str | None
    new: int
    composed: bool
    skipped: str | None = None
    report: SendReport | None = None


def digest(settings: Settings, name: str, today: dt.date, *, min_new: int = 1, auto_send: bool = False,
           limit: int | None = None, stop: threading.Event | None = None) -> DigestResult:
    """Compose what is new since digest `name` last ran (selected once); with auto_send, build, approve, send."""
    store = open_store(settings)
    issues_dir = settings.path(settings.issues_dir)
    last = store.last_digest(name)
    if last and last.date == today and (issues_dir / last.issue_id / "issue.toml").exists():
        # A second fire on the same local day (a repeated hour when the clocks go back, a re-run).
        if not auto_send:
            return DigestResult(last.issue_id, 0, False, skipped=f"today's digest {last.issue_id} already exists")
        return _digest_send(settings, issues_dir / last.issue_id, 0, False, stop)
    # Summaries dated on the last digest's day that it did not include still count; used ids rule out repeats.
    since = last.date - dt.timedelta(days=1) if last else None
    new = select_latest(gather(settings), issue_date=today, limit=limit or settings.default_limit,
                        used_ids=used_summary_ids(issues_dir), since=since)
    if len(new) < min_new:
        after = f"since the last digest ({last.issue_id})" if last else "that no issue holds yet"
        reason = f"{len(new)} new {'summary' if len(new) == 1 else 'summaries'} {after}; need at least {min_new}"
        store.log_event("digest.skip", detail=f"{name}: {reason}")
        return DigestResult(None, len(new), False, skipped=reason)
    issue_id = next(i for i in [today.isoformat(), f"{today}-digest", *(f"{today}-digest-{n}" for n in range(2, 100))]
                    if not (issues_dir / i).exists())
    issue = _write(issues_dir, issue_id, today, new)
    store.record_digest(name, today, issue_id, summaries=len(issue.summaries))
    if not auto_send:
        return DigestResult(issue_id, len(issue.summaries), True)
    return _digest_send(settings, issue.folder, len(issue.summaries), True, stop)


def _digest_send(settings: Settings, folder: Path, new: int, composed: bool,
                 stop: threading.Event | None) -> DigestResult:
    result = _build_checked(settings, folder, "digest {name} fails `newsletter check`, so it was not sent: {problems}")
    _approve_unattended(settings, result)
    try:
        report = send_full(settings, folder, stop=stop)
    except SendInProgress as exc:  # another run is sending it: nothing for this one to do
        return DigestResult(folder.name, new, composed, skipped=f"{folder.name}: {exc}")
    return DigestResult(folder.name, new, composed, report=report)

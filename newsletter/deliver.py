"""Deliver: an approved build + subscribers -> messages through a transport, tracked in the ledger."""

from __future__ import annotations

import datetime as dt
import fcntl
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import db, ledger, subscribers
from .approval import approve, read_approval, require_approval
from .bounces.pause import Thresholds, pause_check
from .errors import CheckFailed, IssueError, SubscriberError
from .freeze import sent_count
from .models import Subscriber
from .personalise import Personaliser, prepare
from .pipeline import build, compose, issue_folder
from .render import build_hash, read_build
from .send import SendReport, send_issue
from .settings import Settings, signing_secret
from .transports import Transport, open_transport

__all__ = ["SendInProgress", "send_lock_path", "transport_url", "transport_factory", "personaliser_for", "send_proof", "send_full", "dry_run",
           "status", "publish", "database", "DryRun", "PublishResult", "seed_subscribers"]


def transport_url(settings: Settings) -> str:
    """The configured transport, with a relative Maildir path resolved against the project root."""
    url = settings.transport
    if url.startswith("maildir:") and not url.startswith("maildir://"):
        path = Path(url.partition(":")[2]).expanduser()
        if not path.is_absolute():
            return f"maildir:{settings.root / path}"
    return url


def transport_factory(settings: Settings) -> Callable[[], Transport]:
    url = transport_url(settings)
    return lambda: open_transport(url, password=settings.smtp_password)


@contextmanager
def database(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A connection for one command; an SQLite failure inside becomes a LedgerError naming the file."""
    conn = db.connect(settings.path(settings.database))
    try:
        yield conn
    except sqlite3.Error as exc:
        raise db.ledger_error(conn, exc, what="reading or updating the database") from exc
    finally:
        conn.close()


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


def personaliser_for(settings: Settings, folder: Path, *, test: bool = False) -> Personaliser:
    email, _ = read_build(folder / "build")
    return prepare(email, settings, secret=signing_secret(settings), test=test)


def send_proof(settings: Settings, folder: Path, recipients: list[str]) -> list[str]:
    """A "[TEST]" copy to each address; needs no approval and is never written to the ledger."""
    people = []
    for raw in recipients:
        try:
            people.append(Subscriber(id=0, email=subscribers.normalise_address(raw), name=""))
        except SubscriberError as exc:
            raise SubscriberError(f"--to {raw!r}: {exc}", address=raw) from None
    personaliser = personaliser_for(settings, folder, test=True)
    transport = transport_factory(settings)()
    try:
        for person in people:
            transport.send(personaliser.message(person))
    finally:
        transport.close()
    return [p.email for p in people]


def send_full(settings: Settings, folder: Path, *, stop: threading.Event | None = None,
              progress: Callable[[str, Subscriber], None] | None = None,
              connections: int | None = None, rate: float | None = None, no_pause: bool = False,
              pause_interval: float = 2.0) -> SendReport:
    """Everyone subscribed who has no final ledger row; refuses an unapproved or changed build.

    Pauses (stopped_early) when the issue's complaint or hard-bounce rate passes its threshold,
    unless `no_pause`."""
    require_approval(folder)
    personaliser = personaliser_for(settings, folder)
    with _send_lock(settings, folder.name), database(settings) as conn:
        limits = Thresholds(settings.pause_complaint_rate, settings.pause_hard_bounce_rate, settings.pause_min_delivered)
        return send_issue(conn, folder.name, make_message=personaliser.message,
                          transport_factory=transport_factory(settings),
                          connections=connections or settings.connections, rate=rate or settings.rate,
                          stop=stop, progress=progress, pause_interval=pause_interval,
                          pause_check=None if no_pause else pause_check(conn, folder.name, limits))


@dataclass(frozen=True)
class DryRun:
    issue_id: str
    approved: bool
    recipients: int
    sample: tuple[str, ...]


def dry_run(settings: Settings, folder: Path, *, sample: int = 10) -> DryRun:
    read_build(folder / "build")  # the build must exist
    approval = read_approval(folder)
    with database(settings) as conn:
        count, first = 0, []
        for sub in ledger.pending_subscribers(conn, folder.name):
            count += 1
            if len(first) < sample:
                first.append(sub.email)
    return DryRun(issue_id=folder.name, approved=approval is not None, recipients=count, sample=tuple(first))


def status(settings: Settings, folder: Path) -> ledger.LedgerCounts:
    with database(settings) as conn:
        return ledger.counts(conn, folder.name)


def seed_subscribers(settings: Settings) -> subscribers.ImportReport | None:
    """Import settings.seed_subscribers (the demo's sample list) when the database has no subscribers."""
    if settings.seed_subscribers is None or not settings.transport.startswith(("maildir:", "memory:")):
        return None  # sample addresses are for the local demo, never for a real mail server
    with database(settings) as conn:
        if subscribers.count(conn) > 0:
            return None
        return subscribers.import_csv(conn, settings.path(settings.seed_subscribers))


@dataclass(frozen=True)
class PublishResult:
    folder: Path
    composed: bool
    approved: bool
    seeded: int
    report: SendReport


def publish(settings: Settings, *, date: dt.date, stop: threading.Event | None = None,
            progress: Callable[[str, Subscriber], None] | None = None) -> PublishResult:
    """The main job: compose (unless the issue exists) + build + check + approve + send. Re-runnable."""
    issues_dir = settings.path(settings.issues_dir)
    folder = issues_dir / date.isoformat()
    composed = False
    if not (folder / "issue.toml").exists():
        compose(settings, date=date)
        composed = True
    folder = issue_folder(settings, folder)
    if sent_count(settings, folder.name):  # frozen: finish sending what was approved, never rebuild it
        seeded = seed_subscribers(settings)
        report = send_full(settings, folder, stop=stop, progress=progress)
        return PublishResult(folder=folder, composed=False, approved=False,
                             seeded=seeded.added if seeded else 0, report=report)
    result = build(settings, folder)
    if not result.report.ok:
        problems = "; ".join(f.message for f in result.report.errors)
        raise CheckFailed(f"issue {folder.name} does not pass `newsletter check`: {problems}")
    approval = read_approval(folder)
    current = build_hash(result.email.html, result.email.text, result.email.subject, result.email.preheader)
    newly_approved = approval is None or approval.sha256 != current
    if newly_approved:
        if approval is not None:
            with database(settings) as conn:
                if ledger.counts(conn, folder.name).sent:
                    raise IssueError(folder, "the issue changed after some subscribers already received it; "
                                             "review it and send with `newsletter approve` + `newsletter send`")
        approve(folder)
    seeded = seed_subscribers(settings)
    report = send_full(settings, folder, stop=stop, progress=progress)
    return PublishResult(folder=folder, composed=composed, approved=newly_approved,
                         seeded=seeded.added if seeded else 0, report=report)

"""Delivery jobs: proof, send, dry run, status and publish; one approval rule for every caller."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter.approval import approve as record_approval, read_approval, require_approval
from newsletter.bounces.pause import Thresholds, pause_check
from newsletter.errors import CheckFailed, ConfigError, IssueError, SubscriberError
from newsletter.freeze import sent_count
from newsletter.models import RenderedEmail, Subscriber
from newsletter.personalise import Personaliser, prepare
from newsletter.policies import SendPolicy, SendReport
from newsletter.render import read_build
from newsletter.store.safeguards import record_send_key
from newsletter.send import Lease, send_issue
from newsletter.settings import Settings, signing_secret
from newsletter.store import ImportReport, LedgerCounts, open_store
from newsletter.store.subscribers import normalise_address
from newsletter.tokens import key_id
from newsletter.transports import allows_demo_subscribers, transport_factory

from .issues import BuildResult, build, compose, issue_folder

__all__ = ["send_proof", "send_full", "dry_run", "status", "publish", "seed_subscribers", "personaliser_for",
           "lease_for", "approve_unattended", "build_checked", "DryRun", "PublishResult"]

Progress = Callable[[str, Subscriber], None]


def lease_for(settings: Settings, run: str | None = None) -> Lease:
    """This sender's lease: `lease_seconds` long, in send `run` (a new one when None)."""
    seconds = settings.lease_seconds
    if seconds < 3:
        raise ConfigError("must be at least 3 seconds (a sender renews its claims every third of it)",
                          key="lease_seconds")
    return Lease.new(seconds, run=run)


def personaliser_for(settings: Settings, folder: Path, *, test: bool = False,
                     email: RenderedEmail | None = None) -> Personaliser:
    if email is None:
        email, _ = read_build(folder / "build")
    return prepare(email, settings, secret=signing_secret(settings), test=test, signer=_dkim_signer(settings))


def _dkim_signer(settings: Settings) -> Callable[[bytes], bytes] | None:
    if settings.dkim_selector is None:
        return None
    from newsletter.dkim import signer_for  # dkimpy + dnspython take ~0.1 s to import: only senders who sign pay it

    return signer_for(settings)


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
              rate: float | None = None, no_pause: bool = False, pause_interval: float = 2.0,
              run: str | None = None) -> SendReport:
    """Everyone subscribed who has no final ledger row; refuses an unapproved or changed build.

    One sender (this process, `connections` threads). Other senders of the same issue may run at the same
    time, here or on other hosts: each sends only the rows it claimed, and this one returns once nothing is
    left to claim and no other live sender holds rows. `run` names the send this sender is part of (the
    processes of `send --workers N` share one), so none retries what another deferred.
    Pauses (stopped_early) when the issue's complaint or hard-bounce rate passes its threshold,
    unless `no_pause`."""
    personaliser = personaliser_for(settings, folder, email=require_approval(folder))
    policy = SendPolicy(connections=connections or settings.connections, rate=rate or settings.rate)
    limits = Thresholds(settings.pause_complaint_rate, settings.pause_hard_bounce_rate, settings.pause_min_delivered)
    lease = lease_for(settings, run)
    with open_store(settings).connection() as conn:
        # Which key signs this issue's links: `serve` refuses a different demo key instead of failing every link.
        record_send_key(conn, folder.name, key_id(signing_secret(settings)))
        return send_issue(conn, folder.name, make_message=personaliser.message,
                          transport_factory=transport_factory(settings), policy=policy, stop=stop, progress=progress,
                          pause_interval=pause_interval, lease=lease,
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
    count, first = open_store(settings).pending(folder.name, sample=sample)
    return DryRun(issue_id=folder.name, approved=approval is not None, recipients=count, sample=tuple(first))


def status(settings: Settings, folder: Path) -> LedgerCounts:
    return open_store(settings).counts(folder.name)


def seed_subscribers(settings: Settings) -> ImportReport | None:
    """Import settings.seed_subscribers (the demo's sample list) when the database has no subscribers."""
    if settings.seed_subscribers is None or not allows_demo_subscribers(settings.transport):
        return None  # sample addresses are for the local demo, never for a real mail server
    return open_store(settings).seed_subscribers(settings.path(settings.seed_subscribers))


def approve_unattended(settings: Settings, result: BuildResult) -> bool:
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


def build_checked(settings: Settings, folder: Path, refusal: str) -> BuildResult:
    """Build; a build with check errors is never approved unattended (`refusal` names the issue and problems)."""
    result = build(settings, folder)
    if not result.report.ok:
        problems = "; ".join(f.message for f in result.report.errors)
        raise CheckFailed(refusal.format(name=folder.name, problems=problems))
    return result


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
    if sent_count(settings, folder.name):  # frozen: finish sending what was approved, never rebuild it
        seeded = seed_subscribers(settings)
        report = send_full(settings, folder, stop=stop, progress=progress)
        return PublishResult(folder=folder, composed=False, approved=False,
                             seeded=seeded.added if seeded else 0, report=report)
    result = build_checked(settings, folder, "issue {name} does not pass `newsletter check`: {problems}")
    newly_approved = approve_unattended(settings, result)
    seeded = seed_subscribers(settings)
    report = send_full(settings, folder, stop=stop, progress=progress)
    return PublishResult(folder=folder, composed=composed, approved=newly_approved,
                         seeded=seeded.added if seeded else 0, report=report)

"""The digest job: select what is new since the last digest once, compose it, and maybe send it."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path

from newsletter.compose import used_summary_ids
from newsletter.freeze import sent_count
from newsletter.policies import SendReport
from newsletter.selection import select_latest
from newsletter.settings import Settings
from newsletter.store import open_store

from .delivery import approve_unattended, build_checked, send_full
from .issues import gather, write_chosen

__all__ = ["digest", "DigestResult"]


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
                        used_ids=used_summary_ids(issues_dir), since=since,
                        oldest=today - dt.timedelta(days=settings.max_age_days))
    if len(new) < min_new:
        after = f"since the last digest ({last.issue_id})" if last else "that no issue holds yet"
        reason = f"{len(new)} new {'summary' if len(new) == 1 else 'summaries'} {after}; need at least {min_new}"
        store.log_event("digest.skip", detail=f"{name}: {reason}")
        return DigestResult(None, len(new), False, skipped=reason)
    issue_id = next(i for i in [today.isoformat(), f"{today}-digest", *(f"{today}-digest-{n}" for n in range(2, 100))]
                    if not (issues_dir / i).exists())
    issue = write_chosen(issues_dir, issue_id, today, new)
    store.record_digest(name, today, issue_id, summaries=len(issue.summaries))
    if not auto_send:
        return DigestResult(issue_id, len(issue.summaries), True)
    return _digest_send(settings, issue.folder, len(issue.summaries), True, stop)


def _digest_send(settings: Settings, folder: Path, new: int, composed: bool,
                 stop: threading.Event | None) -> DigestResult:
    if not sent_count(settings, folder.name):  # a resumed digest's build is frozen: just finish the send
        result = build_checked(settings, folder,
                               "digest {name} fails `newsletter check`, so it was not sent: {problems}")
        approve_unattended(settings, result)
    report = send_full(settings, folder, stop=stop)  # a run already sending it shares the work (leases)
    return DigestResult(folder.name, new, composed, report=report)

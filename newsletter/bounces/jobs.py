"""The bounce fetch as a scheduler job: `newsletter scheduler` reads the bounce mailbox every N minutes."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

from newsletter.errors import NewsletterError
from newsletter.settings import Settings, load_settings

__all__ = ["JOB_ID", "add_bounce_job", "run_fetch"]

JOB_ID = "bounces:fetch"
log = logging.getLogger("newsletter.schedule")


def add_bounce_job(settings: Settings, scheduler: Any, config_path: str, *, jobstore: str = "internal") -> bool:
    """When `bounce_mailbox` is set, fetch now and then every `bounce_fetch_minutes` (in memory: it follows
    the settings each time the scheduler starts, nothing to schedule or cancel by hand)."""
    if not settings.bounce_mailbox:
        return False
    scheduler.add_job("newsletter.bounces.jobs:run_fetch", "interval", minutes=settings.bounce_fetch_minutes,
                      args=[config_path], id=JOB_ID, jobstore=jobstore, max_instances=1, coalesce=True,
                      next_run_time=dt.datetime.now(dt.UTC), replace_existing=True)
    log.info("%s: reading %s every %d minute(s)", JOB_ID, _label(settings.bounce_mailbox),
             settings.bounce_fetch_minutes)
    return True


def _label(url: str) -> str:
    from newsletter.bounces.mailbox import mask_mailbox

    return mask_mailbox(url)


def _settings(config_path: str) -> Settings:
    path = Path(config_path)
    if path.is_dir():
        return load_settings(None, root=path, env={k: v for k, v in os.environ.items() if k != "NEWSLETTER_CONFIG"})
    return load_settings(path)


def run_fetch(config_path: str) -> int:
    """One fetch; each message is one log line; a mailbox that cannot be read is one error line, not a crash."""
    from newsletter.bounces.service import fetch_bounces

    try:
        settings = _settings(config_path)

        def show(item: Any) -> None:
            (log.warning if item.kind == "refused" else log.info)("%s: %s", JOB_ID, item.line)

        report = fetch_bounces(settings, report=show)
    except NewsletterError as exc:
        log.error("%s: %s", JOB_ID, exc)
        return 0
    return len(report.items)

"""The APScheduler job store: where it lives (the store's URL), how the CLI adds to it, how a job finds its settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.settings import CONFIG_NAME, Settings, load_settings
from newsletter.store import open_store

from .times import UTC

if TYPE_CHECKING:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.base import BaseScheduler

__all__ = ["SEND_JOB", "DIGEST_JOB", "jobstore", "store_only", "config_reference", "load_config"]

#: What the job store pickles: references to these functions (kept importable under these names).
SEND_JOB = "newsletter.schedule:run_send"
DIGEST_JOB = "newsletter.schedule:run_digest"


def jobstore(settings: Settings) -> SQLAlchemyJobStore:
    """APScheduler's job store on the URL the configured store gives (the same database)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    store = open_store(settings)
    return SQLAlchemyJobStore(url=store.jobstore_url(), tablename="apscheduler_jobs",
                              engine_options=store.jobstore_engine_options())


@contextmanager
def store_only(settings: Settings) -> Iterator[BaseScheduler]:
    """A scheduler on the shared job store that never runs anything: how `schedule`/`cancel`/`list` use it.

    One that was never started only queues added jobs in memory until start(), so it is started
    paused. Not a BackgroundScheduler: on shutdown its thread processes due jobs once more, which
    would advance an overdue recurring job (skipping that run) or drop an overdue one-off.
    """
    from apscheduler.schedulers.base import BaseScheduler

    class StoreOnly(BaseScheduler):
        def wakeup(self) -> None:
            """Nothing to wake: there is no main loop."""

        def shutdown(self, wait: bool = False) -> None:
            super().shutdown(wait)

    scheduler = StoreOnly(jobstores={"default": jobstore(settings)}, timezone=UTC)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


def config_reference(config: Path | None, settings: Settings) -> str:
    """What a job stores to find its settings again: the config file, or the project root if there is none."""
    if config is None and os.environ.get("NEWSLETTER_CONFIG"):
        config = Path(os.environ["NEWSLETTER_CONFIG"])
    if config is None and (settings.root / CONFIG_NAME).exists():
        config = settings.root / CONFIG_NAME
    return str(config.resolve()) if config is not None else str(settings.root)


def load_config(config_path: str) -> Settings:
    path = Path(config_path)
    if path.is_dir():
        return load_settings(None, root=path, env={k: v for k, v in os.environ.items() if k != "NEWSLETTER_CONFIG"})
    return load_settings(path)

"""One scheduler per database even when the database is shared by hosts: PostgreSQL's advisory lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import sample_project

from newsletter.errors import SchedulerRunning
from newsletter.schedule.process import scheduler_lock
from newsletter.settings import Settings, load_settings
from newsletter.store.pgstore import PostgresStore

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parent.parent
SECRET = "test-secret-not-for-production-use"


def _host(root: Path, postgres_url: str) -> Settings:
    """A project folder of its own (its own var/ and lock files, as on another host) on the shared database."""
    sample_project(root)
    text = (root / "newsletter.toml").read_text(encoding="utf-8")
    (root / "newsletter.toml").write_text(f'database = "{postgres_url}"\n' + "\n".join(
        line for line in text.splitlines() if not line.startswith("database")), encoding="utf-8")
    return load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})


def test_a_second_host_cannot_start_a_scheduler_while_the_first_runs(tmp_path: Path, postgres_url: str) -> None:
    PostgresStore(postgres_url, env={}).upgrade()
    first, second = _host(tmp_path / "a", postgres_url), _host(tmp_path / "b", postgres_url)
    with scheduler_lock(first):
        with pytest.raises(SchedulerRunning, match="another host") as refused:
            with scheduler_lock(second, wait=0):
                pass
        assert "password" not in str(refused.value)
    with scheduler_lock(second, wait=0):  # free again once the first stopped
        pass


def test_a_killed_scheduler_frees_the_lock_for_another_host(tmp_path: Path, postgres_url: str) -> None:
    PostgresStore(postgres_url, env={}).upgrade()
    first, second = _host(tmp_path / "a", postgres_url), _host(tmp_path / "b", postgres_url)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from newsletter.schedule.process import scheduler_lock
        from newsletter.settings import load_settings
        from pathlib import Path
        settings = load_settings(Path({str(first.root / 'newsletter.toml')!r}), env={{"NEWSLETTER_SECRET": {SECRET!r}}})
        with scheduler_lock(settings):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SchedulerRunning):
            with scheduler_lock(second, wait=0):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        deadline = time.monotonic() + 10  # the server notices the closed connection and frees the lock
        while True:
            try:
                with scheduler_lock(second, wait=0):
                    break
            except SchedulerRunning:
                assert time.monotonic() < deadline, "the lock of a killed scheduler was never freed"
                time.sleep(0.05)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

"""Scheduling end to end: a real scheduler process on the project's SQLite file, real downtime, DST, bad input."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import sample_project
from rich.console import Console

from newsletter.store import sqlite as db, subscribers
from newsletter.approval import approve
from newsletter.cli import cli
from newsletter import cli_schedule
from newsletter.cli_schedule import COMMANDS
from newsletter.compose import read_issue
from newsletter.jobs.delivery import status
from newsletter.errors import ApprovalError, IssueError, NewsletterError
from newsletter.jobs.issues import build, compose
from newsletter.schedule import (
    ScheduleError,
    digest_trigger,
    list_jobs,
    parse_at,
    run_digest,
    run_send,
    schedule_digest,
    schedule_send,
)
from newsletter.settings import Settings, load_settings

SECRET = "test-secret-not-for-production-use"
DATE = dt.date(2026, 11, 25)
UTC = dt.timezone.utc
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
POLL = 0.2  # seconds between the scheduler's looks at the store (--poll)
#: "Nothing more happens": this many polls after a job is done, the scheduler has looked again 3 times.
QUIET = 3 * POLL
NEW_ON_DEC_1 = "ceam-maps-dna-changes-brain-cells"  # the one sample summary dated 2026-12-01


# --- helpers -------------------------------------------------------------------------------------------

def config(settings: Settings) -> str:
    return str(settings.root / "newsletter.toml")


@pytest.fixture(scope="module")
def approved_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample project with issue 2026-11-25 composed, built and approved, the 8 sample subscribers imported."""
    root = sample_project(tmp_path_factory.mktemp("approved") / "site")
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})
    issue = compose(settings, date=DATE)
    build(settings, issue.folder)
    approve(issue.folder)
    conn = db.connect(settings.path(settings.database))
    subscribers.import_csv(conn, settings.root / "content" / "subscribers.csv")
    conn.close()
    return root


@pytest.fixture
def approved(settings: Settings, approved_template: Path) -> Path:
    """Issue 2026-11-25 composed, built and approved; the 8 sample subscribers imported.

    Made once per module and copied (issues/ and var/: nothing in them names the folder they are in).
    """
    for part in ("issues", "var"):
        shutil.copytree(approved_template / part, settings.root / part, dirs_exist_ok=True)
    return settings.root / "issues" / "2026-11-25"


def outbox_count(settings: Settings) -> int:
    new = settings.root / "outbox" / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


def at_in(settings: Settings, seconds: float) -> tuple[str, dt.datetime]:
    """An --at value `seconds` from now (negative: ago) in the project's timezone, and that moment."""
    moment = dt.datetime.now(UTC) + dt.timedelta(seconds=seconds)
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S.%f"), moment


def scheduled_earlier(settings: Settings, toml: str, *, seconds_ago: float) -> dt.datetime:
    """`schedule_send` as it ran a while back, for a time that has passed by `seconds_ago` now.

    The same as scheduling for a second later and keeping the scheduler down until then, without the wait.
    """
    at, due = at_in(settings, -seconds_ago)
    then = lambda: due - dt.timedelta(seconds=1)  # noqa: E731  the clock when it was scheduled
    schedule_send(settings, "2026-11-25", config_path=toml, at=at, clock=then)
    assert dt.datetime.now(UTC) - due >= dt.timedelta(seconds=seconds_ago)
    return due


def wait_until(condition, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


class Daemon:
    """`python -m newsletter.schedule` as a subprocess, its stderr in a file."""

    def __init__(self, settings: Settings, log: Path, *, rate_env: dict[str, str] | None = None) -> None:
        self.log = log
        env = {**os.environ, "NEWSLETTER_SECRET": SECRET, **(rate_env or {})}
        env.pop("NEWSLETTER_CONFIG", None)
        self.handle = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "newsletter.schedule", "--config", config(settings),
                                      "--poll", str(POLL)], cwd=settings.root, env=env, stdout=self.handle,
                                     stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_started(self) -> None:
        wait_until(lambda: self.text().count("scheduler started") >= 1 or self.proc.poll() is not None, 20,
                   "the scheduler to start")
        assert self.proc.poll() is None, self.text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.handle.close()
        return self.proc.returncode


@contextlib.contextmanager
def daemon(settings: Settings, log: Path) -> Iterator[Daemon]:
    d = Daemon(settings, log)
    try:
        d.wait_started()
        yield d
    finally:
        d.stop()


def recorded_state(settings: Settings, job_id: str) -> str | None:
    """The state the scheduler last wrote for a job (a plain read: cheap enough to poll)."""
    conn = sqlite3.connect(settings.path(settings.database))
    try:
        row = conn.execute("SELECT state FROM schedule_jobs WHERE job_id = ?", (job_id,)).fetchone()
    except sqlite3.OperationalError:  # the table does not exist yet
        return None
    finally:
        conn.close()
    return row[0] if row else None


def wait_for_state(settings: Settings, job_id: str, state: str, timeout: float = 15) -> None:
    wait_until(lambda: recorded_state(settings, job_id) == state, timeout, f"{job_id} to be {state}")


def ledger_sent(settings: Settings, folder: Path) -> int:
    return status(settings, folder).sent


def job_state(settings: Settings, job_id: str) -> tuple[str, str]:
    (view,) = [v for v in list_jobs(settings) if v.job_id == job_id]
    return view.state, view.detail


def stored_jobs(settings: Settings) -> list[str]:
    if not settings.path(settings.database).exists():
        return []
    conn = sqlite3.connect(settings.path(settings.database))
    try:
        return [r[0] for r in conn.execute("SELECT id FROM apscheduler_jobs")]
    except sqlite3.OperationalError:  # the table does not exist yet
        return []
    finally:
        conn.close()


# --- the scheduler process -----------------------------------------------------------------------------

def test_fires_once_while_running_and_a_second_scheduler_is_refused(settings: Settings, approved: Path,
                                                                    tmp_path: Path) -> None:
    with daemon(settings, tmp_path / "a.log") as first:
        # A second scheduler starts (and is refused) while the job comes due: it must not fire it too.
        second = subprocess.Popen([sys.executable, "-m", "newsletter.schedule", "--config", config(settings)],
                                  env={**os.environ, "NEWSLETTER_SECRET": SECRET}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        at, due = at_in(settings, 1)
        result = schedule_send(settings, "issues/2026-11-25", config_path=config(settings), at=at)
        assert result.job_id == "send:2026-11-25" and not result.replaced
        wait_until(lambda: outbox_count(settings) >= 1, 15, "the first message in the outbox")
        early = (dt.datetime.now(UTC) - due).total_seconds()
        wait_for_state(settings, "send:2026-11-25", "done")
        _, second_stderr = second.communicate(timeout=30)
        assert second.returncode != 0
        assert "already running" in second_stderr and f"pid {first.proc.pid}" in second_stderr
        assert "Traceback" not in second_stderr
        time.sleep(QUIET)  # several polls later: nothing more
        assert outbox_count(settings) == 8
        assert first.proc.poll() is None
    assert 0 <= early < 2.5  # not before its time, and within about one poll of it (a busy machine: 2.5 s)
    assert ledger_sent(settings, approved) == 8
    state, detail = job_state(settings, "send:2026-11-25")
    assert state == "done" and "sent 8" in detail
    assert "send:2026-11-25: firing" in first.text() and "scheduler stopped" in first.text()
    assert first.proc.returncode == 0


def test_downtime_within_the_grace_time_sends_once_on_start(settings: Settings, approved: Path,
                                                            tmp_path: Path) -> None:
    scheduled_earlier(settings, config(settings), seconds_ago=3)  # the scheduler was down at the time and 3 s after
    assert job_state(settings, "send:2026-11-25")[0] == "overdue"
    with daemon(settings, tmp_path / "d.log"):
        wait_for_state(settings, "send:2026-11-25", "done")
        time.sleep(QUIET)
    assert outbox_count(settings) == 8 and ledger_sent(settings, approved) == 8
    assert job_state(settings, "send:2026-11-25")[0] == "done"


def test_downtime_beyond_the_grace_time_is_reported_missed(project: Path, approved: Path, tmp_path: Path) -> None:
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text() + "\nmisfire_grace_seconds = 1\n")
    settings = load_settings(toml, env={"NEWSLETTER_SECRET": SECRET})
    due = scheduled_earlier(settings, str(toml), seconds_ago=3)
    state, detail = job_state(settings, "send:2026-11-25")
    assert state == "overdue" and "missed" in detail
    with daemon(settings, tmp_path / "m.log") as d:
        wait_for_state(settings, "send:2026-11-25", "missed", timeout=10)
        time.sleep(QUIET)
        assert "missed" in d.text()
    assert outbox_count(settings) == 0 and ledger_sent(settings, approved) == 0
    state, detail = job_state(settings, "send:2026-11-25")
    assert state == "missed" and detail.startswith("was due ")
    assert due.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") in detail
    assert stored_jobs(settings) == []  # APScheduler dropped the one-off; our table remembers it


def test_restart_between_scheduling_and_firing(settings: Settings, approved: Path, tmp_path: Path) -> None:
    with daemon(settings, tmp_path / "r1.log") as first:
        # Scheduled while the first scheduler runs, which sees it at its next poll and is then stopped.
        at, due = at_in(settings, 4)  # room for a slow stop on a busy machine
        schedule_send(settings, "2026-11-25", config_path=config(settings), at=at)
        time.sleep(2 * POLL)
    stopped = dt.datetime.now(UTC)
    assert first.proc.returncode == 0
    assert stopped < due, "the first scheduler took too long to stop: the test proves nothing"
    assert outbox_count(settings) == 0 and stored_jobs(settings) == ["send:2026-11-25"]
    with daemon(settings, tmp_path / "r2.log"):
        wait_until(lambda: outbox_count(settings) >= 1, 15, "the send after the restart")
        assert dt.datetime.now(UTC) >= due
        wait_for_state(settings, "send:2026-11-25", "done")
        time.sleep(QUIET)
    assert outbox_count(settings) == 8 and ledger_sent(settings, approved) == 8


def test_sigterm_mid_send_finishes_the_message_in_flight_and_resumes(project: Path, approved: Path,
                                                                      tmp_path: Path) -> None:
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text() + "\nrate = 4\n")  # 8 messages take 2 s
    settings = load_settings(toml, env={"NEWSLETTER_SECRET": SECRET})
    schedule_send(settings, "2026-11-25", config_path=str(toml), now=True)
    d = Daemon(settings, tmp_path / "t1.log")
    try:
        d.wait_started()
        wait_until(lambda: outbox_count(settings) >= 2, 10, "the send to start")
    finally:
        assert d.stop() == 0
    partial = outbox_count(settings)
    assert 2 <= partial < 8 and ledger_sent(settings, approved) == partial
    conn = db.connect(settings.path(settings.database))
    assert conn.execute("SELECT COUNT(*) FROM ledger WHERE status = 'claimed'").fetchone()[0] == 0
    conn.close()
    assert job_state(settings, "send:2026-11-25")[0] == "interrupted"
    with daemon(settings, tmp_path / "t2.log") as again:
        wait_for_state(settings, "send:2026-11-25", "done")
        time.sleep(QUIET)
    assert outbox_count(settings) == 8 and ledger_sent(settings, approved) == 8
    assert "resuming" in again.text()
    assert job_state(settings, "send:2026-11-25")[0] == "done"


def test_a_scheduled_send_leaves_a_live_senders_rows_alone_until_its_lease_ends(settings: Settings,
                                                                                approved: Path) -> None:
    """Runs of one issue may overlap: the job sends what nobody holds, and takes over the rows of a sender on
    another host only once that sender's lease has run out (it never renewed: it died)."""
    from newsletter.store.claims import Lease, claim_next

    elsewhere = Lease("other-host:1:4242:feedc0de", seconds=3.0)
    conn = db.connect(settings.path(settings.database))
    held = claim_next(conn, "2026-11-25", elsewhere, limit=3)
    conn.close()
    started = time.monotonic()
    done = run_send(config(settings), "2026-11-25")
    assert done.state == "done" and outbox_count(settings) == 8 and len(held.subscribers) == 3
    assert time.monotonic() - started >= 2.5  # it waited for the other sender's lease


def test_approval_is_checked_again_when_the_job_fires(settings: Settings, approved: Path) -> None:
    schedule_send(settings, "2026-11-25", config_path=config(settings), at="2030-12-01 08:00")
    html = approved / "build" / "email.html"
    html.write_text(html.read_text().replace("Read more", "Read now"))  # edited after approval
    with pytest.raises(ApprovalError, match="changed since it was approved"):
        run_send(config(settings), "2026-11-25")
    assert outbox_count(settings) == 0
    state, detail = job_state(settings, "send:2026-11-25")  # still in the store: it was called directly here
    assert state == "scheduled" and detail.startswith("last run: error: issue 2026-11-25 changed since it was approved")


# --- digests: the job function with a fixed clock ------------------------------------------------------

def test_digest_skips_when_nothing_is_new_and_composes_when_something_is(settings: Settings) -> None:
    cfg, job = config(settings), "digest:weekly"
    issues = settings.root / "issues"
    first = run_digest(cfg, job, timezone="Europe/Berlin", limit=20, now=dt.datetime(2026, 11, 30, 7, 0, tzinfo=UTC))
    assert first.state == "done" and first.issue_id == "2026-11-30"
    assert "draft" in first.message and not (issues / "2026-11-30" / "build").exists()
    again = run_digest(cfg, job, timezone="Europe/Berlin", now=dt.datetime(2026, 11, 30, 8, 0, tzinfo=UTC))
    assert again.state == "skipped" and "already exists" in again.message
    # One summary (2026-12-01) is new a week later: not enough for --min-new 2.
    week = run_digest(cfg, job, timezone="Europe/Berlin", min_new=2, now=dt.datetime(2026, 12, 7, 7, 0, tzinfo=UTC))
    assert week.state == "skipped"
    assert week.message == "1 new summary since the last digest (2026-11-30); need at least 2"
    assert sorted(p.name for p in issues.iterdir()) == ["2026-11-30"]
    made = run_digest(cfg, job, timezone="Europe/Berlin", now=dt.datetime(2026, 12, 8, 7, 0, tzinfo=UTC))
    assert made.state == "done" and made.issue_id == "2026-12-08" and "(1 summary)" in made.message
    assert read_issue(issues / "2026-12-08").summary_ids == (NEW_ON_DEC_1,)
    nothing = run_digest(cfg, job, timezone="Europe/Berlin", now=dt.datetime(2026, 12, 9, 7, 0, tzinfo=UTC))
    assert nothing.state == "skipped" and nothing.message.startswith("0 new summaries since the last digest")
    conn = db.connect(settings.path(settings.database))
    skips = [r[0] for r in conn.execute("SELECT detail FROM events WHERE kind = 'digest.skip' ORDER BY id")]
    conn.close()
    assert len(skips) == 2 and "need at least 2" in skips[0]


def test_digest_auto_send_takes_a_suffix_when_the_date_is_taken(settings: Settings) -> None:
    compose(settings, date=DATE)  # an editor's issue already has today's date (the last 90 days' summaries)
    cfg = settings.root / "newsletter.toml"
    # So the digest has older summaries left to take:
    cfg.write_text(re.sub(r"(?m)^max_age_days = .*$", "max_age_days = 3650", cfg.read_text()))
    conn = db.connect(settings.path(settings.database))
    subscribers.import_csv(conn, settings.root / "content" / "subscribers.csv")
    conn.close()
    outcome = run_digest(config(settings), "digest:weekly", timezone="Europe/London", auto_send=True,
                         now=dt.datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    assert outcome.state == "done" and outcome.issue_id == "2026-11-25-digest"
    assert "sent 8" in outcome.message and outbox_count(settings) == 8
    assert (settings.root / "issues" / "2026-11-25-digest" / "approval.json").exists()


def test_digest_failing_check_blocks_the_send(settings: Settings) -> None:
    text = settings.root / "templates" / "email.txt.j2"
    text.write_text(text.read_text().replace("__NL_UNSUBSCRIBE_URL__", ""))
    with pytest.raises(NewsletterError, match="fails `newsletter check`.*unsubscribe"):
        run_digest(config(settings), "digest:weekly", auto_send=True, now=dt.datetime(2026, 11, 25, 9, tzinfo=UTC))
    assert outbox_count(settings) == 0
    assert not (settings.root / "issues" / "2026-11-25" / "approval.json").exists()
    conn = db.connect(settings.path(settings.database))
    state, result = conn.execute("SELECT state, result FROM schedule_jobs WHERE job_id = 'digest:weekly'").fetchone()
    conn.close()
    assert state == "error" and "unsubscribe" in result


# --- DST -----------------------------------------------------------------------------------------------

def fires(trigger, start: dt.datetime, n: int) -> list[dt.datetime]:  # type: ignore[no-untyped-def]
    out, previous = [], None
    for _ in range(n):
        previous = trigger.get_next_fire_time(previous, previous or start)
        out.append(previous)
    return out


@pytest.mark.parametrize(("tz", "every", "start", "utc_hours"), [
    (BERLIN, "sun 08:00", dt.datetime(2027, 3, 20, tzinfo=UTC), [7, 6, 6]),     # CET -> CEST on 2027-03-28
    (BERLIN, "sun 08:00", dt.datetime(2026, 10, 18, 12, tzinfo=UTC), [7, 7]),   # CEST -> CET on 2026-10-25
    (BERLIN, "sun 08:00", dt.datetime(2026, 10, 17, tzinfo=UTC), [6, 7]),
    (NEW_YORK, "sun 08:00", dt.datetime(2027, 3, 7, tzinfo=UTC), [13, 12]),     # EST -> EDT on 2027-03-14
    (NEW_YORK, "sun 08:00", dt.datetime(2026, 10, 25, tzinfo=UTC), [12, 13]),   # EDT -> EST on 2026-11-01
])
def test_weekly_job_keeps_local_time_across_dst(tz: zoneinfo.ZoneInfo, every: str, start: dt.datetime,
                                                utc_hours: list[int]) -> None:
    got = fires(digest_trigger(every, tz), start, len(utc_hours))
    assert [f.astimezone(tz).strftime("%a %H:%M") for f in got] == ["Sun 08:00"] * len(utc_hours)
    assert [f.astimezone(UTC).hour for f in got] == utc_hours


def test_cron_in_the_dst_gap_and_fold_is_what_the_docs_say() -> None:
    gap = fires(digest_trigger("sun 02:30", BERLIN), dt.datetime(2027, 3, 27, tzinfo=UTC), 1)[0]
    assert gap.astimezone(UTC) == dt.datetime(2027, 3, 28, 1, 30, tzinfo=UTC)  # = 03:30 CEST
    fold = fires(digest_trigger("daily 02:30", BERLIN), dt.datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    assert [f.astimezone(UTC).strftime("%d %H:%M") for f in fold] == ["25 00:30", "25 01:30", "26 01:30"]


def test_one_off_in_the_gap_is_refused_and_in_the_fold_takes_the_first() -> None:
    with pytest.raises(ScheduleError, match=r"'2027-03-28 02:30' does not exist in Europe/Berlin.*'2027-03-28 03:30'"):
        parse_at("2027-03-28 02:30", BERLIN)
    at, note = parse_at("2026-10-25 02:30", BERLIN)
    assert at.astimezone(UTC) == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert note and "twice" in note and "first" in note
    at, note = parse_at("2026-11-01 01:30", NEW_YORK)
    assert at.utcoffset() == dt.timedelta(hours=-4) and note
    assert parse_at("2026-12-01 08:00", BERLIN) == (dt.datetime(2026, 12, 1, 8, tzinfo=BERLIN), None)


def test_digest_schedule_warns_about_dst_times(settings: Settings) -> None:
    result = schedule_digest(settings, config_path=config(settings), every="daily 02:30", tz="Europe/Berlin",
                             clock=lambda: dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert result.job_id == "digest:weekly"
    assert any("does not exist" in n and "03:30" in n for n in result.notes)
    assert any("happens twice" in n for n in result.notes)


# --- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "names"), [
    ({"at": "next tuesday"}, ScheduleError, "'next tuesday'"),
    ({"at": "2026-12-01"}, ScheduleError, "'2026-12-01'"),
    ({"at": "2030-12-01 08:00", "tz": "Mars/Olympus"}, ScheduleError, "'Mars/Olympus'"),
    ({"at": "2020-01-01 08:00"}, ScheduleError, "'2020-01-01 08:00' is in the past"),
    ({"at": "2030-12-01 08:00", "issue": "issues/2031-01-01"}, IssueError, "issues/2031-01-01"),
    ({}, ScheduleError, "--at"),
])
def test_bad_input_is_one_clear_error_and_nothing_is_stored(settings: Settings, approved: Path,
                                                           kwargs: dict[str, str], error: type, names: str) -> None:
    issue = kwargs.pop("issue", "2026-11-25")
    with pytest.raises(error) as caught:
        schedule_send(settings, issue, config_path=config(settings), **kwargs)  # type: ignore[arg-type]
    assert names in str(caught.value)
    assert stored_jobs(settings) == [] and list_jobs(settings) == []


def test_unapproved_issue_is_refused_with_how_to_approve(settings: Settings) -> None:
    issue = compose(settings, date=DATE)
    build(settings, issue.folder)
    with pytest.raises(ApprovalError, match="newsletter approve"):
        schedule_send(settings, "2026-11-25", config_path=config(settings), at="2030-12-01 08:00")
    assert stored_jobs(settings) == []


def test_bad_digest_input(settings: Settings) -> None:
    for every in ("someday 08:00", "mon 25:00", "mon"):
        with pytest.raises(ScheduleError, match=f"--every '{every}'"):
            schedule_digest(settings, config_path=config(settings), every=every)
    with pytest.raises(ScheduleError, match="'Nowhere'"):
        schedule_digest(settings, config_path=config(settings), every="mon 08:00", tz="Nowhere")
    with pytest.raises(ScheduleError, match="--min-new 9"):
        schedule_digest(settings, config_path=config(settings), every="mon 08:00", min_new=9, limit=5)
    assert stored_jobs(settings) == []


# --- the CLI -------------------------------------------------------------------------------------------

def newsletter_cli() -> click.Group:
    """cli.py's group plus these commands, as the lead will register them (without touching cli.cli)."""
    group = click.Group(name="newsletter", commands=dict(cli.commands), params=cli.params, callback=cli.callback)
    for command in COMMANDS:
        group.add_command(command)
    return group


def test_cli_schedule_list_cancel(settings: Settings, approved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_schedule, "console", Console(width=200, highlight=False, soft_wrap=True))
    runner = CliRunner()
    group = newsletter_cli()
    r = runner.invoke(group, ["schedule", "issues/2026-11-25", "--at", "2030-12-01 08:00", "--tz", "Europe/Berlin"])
    assert r.exit_code == 0, r.output
    assert "Scheduled send:2026-11-25" in r.output and "2030-12-01 08:00 CET (07:00 UTC)" in r.output
    assert "not running" in r.output
    r = runner.invoke(group, ["schedule", "digest", "--every", "mon 08:00", "--tz", "America/New_York", "--auto-send"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(group, ["schedule", "list"])
    assert r.exit_code == 0, r.output
    assert "send:2026-11-25" in r.output and "2030-12-01 08:00 CET" in r.output and "2030-12-01 07:00" in r.output
    assert "digest:weekly" in r.output and "EST" in r.output
    r = runner.invoke(group, ["schedule", "cancel", "send:2026-11-25"])
    assert r.exit_code == 0 and "Cancelled send:2026-11-25" in r.output
    r = runner.invoke(group, ["schedule", "cancel", "weekly"])
    assert r.exit_code == 0 and "Cancelled digest:weekly" in r.output
    r = runner.invoke(group, ["schedule", "cancel", "weekly"])
    assert isinstance(r.exception, ScheduleError) and "'weekly'" in str(r.exception)
    r = runner.invoke(group, ["schedule", "list"])
    assert "No scheduled jobs." in r.output
    assert stored_jobs(settings) == []


def test_schedule_list_never_cuts_an_id_at_80_columns(settings: Settings, approved: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_schedule, "console", Console(width=80, highlight=False, soft_wrap=True))
    runner = CliRunner()
    group = newsletter_cli()
    name = "research-digest-for-caregivers"  # 30 characters: "digest:" + it is the longest kind of id
    r = runner.invoke(group, ["schedule", "digest", "--every", "mon 08:00", "--tz", "America/New_York",
                              "--name", name, "--auto-send"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(group, ["schedule", "issues/2026-11-25", "--at", "2030-12-01 08:00", "--tz", "Europe/Berlin"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(group, ["schedule", "list"])
    assert r.exit_code == 0, r.output
    assert f"digest:{name}" in r.output and "send:2026-11-25" in r.output, r.output
    r = runner.invoke(group, ["schedule", "cancel", f"digest:{name}"])
    assert r.exit_code == 0 and f"Cancelled digest:{name}" in r.output

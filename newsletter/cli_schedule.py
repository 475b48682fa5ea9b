"""The scheduling edge: `newsletter schedule …` and `newsletter scheduler`, printing what newsletter.schedule did.

Registered by cli.py (`for c in COMMANDS: cli.add_command(c)`). The commands get cli_base's `Context`
as the click object (`pass_obj`); this module never imports cli.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .cli_base import Context, run


__all__ = ["COMMANDS", "schedule_group", "scheduler_command", "main"]

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class _ScheduleGroup(click.Group):
    """`schedule ISSUE --at …` is `schedule send ISSUE --at …`: anything not a subcommand name is an issue."""

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            args = ["send", *args]
        return super().resolve_command(ctx, args)


@click.group(name="schedule", cls=_ScheduleGroup, context_settings={"ignore_unknown_options": True},
             subcommand_metavar="ISSUE --at TIME | digest | list | cancel")
def schedule_group() -> None:
    """Schedule sends and digests; `newsletter scheduler` fires them.

    \b
    newsletter schedule issues/2026-11-25 --at "2026-12-01 08:00" [--tz Europe/Berlin]
    newsletter schedule digest --every "mon 08:00" [--min-new 1] [--auto-send]
    newsletter schedule list
    newsletter schedule cancel send:2026-11-25
    """


def _config(obj: Any) -> str:
    from .schedule import config_reference

    return config_reference(obj.config, obj.settings)


def _print_scheduled(result: Any, tz_note: str) -> None:
    from .schedule import local_and_utc

    verb = "Rescheduled" if result.replaced else "Scheduled"
    when = local_and_utc(result.run_at, result.run_at.tzinfo)
    console.print(f"{verb} {result.job_id}: {result.what}; {tz_note} {when}", markup=False)
    for note in result.notes:
        console.print(f"  note: {note}", markup=False)


def _daemon_hint(obj: Any) -> None:
    from .schedule.process import running_pid

    pid = running_pid(obj.settings)
    if pid is None:
        console.print("The scheduler is not running: start `newsletter scheduler` (or its systemd unit) to fire it.")
    else:
        console.print(f"The scheduler{f' (pid {pid})' if pid else ''} picks it up within its polling interval.")


@schedule_group.command(name="send")
@click.argument("issue")
@click.option("--at", "at", metavar="'YYYY-MM-DD HH:MM'", help="Local time in --tz (default: the configured timezone).")
@click.option("--tz", "tz", metavar="ZONE", help="IANA timezone, e.g. Europe/Berlin.")
@click.option("--now", "now", is_flag=True, help="Send as soon as the scheduler runs (also allows a past --at).")
@click.pass_obj
def schedule_send_command(obj: Any, issue: str, at: str | None, tz: str | None, now: bool) -> None:
    """Send the approved ISSUE at a given time."""
    from .schedule import schedule_send

    result = schedule_send(obj.settings, issue, config_path=_config(obj), at=at, tz=tz, now=now)
    _print_scheduled(result, "at")
    _daemon_hint(obj)


@schedule_group.command(name="digest")
@click.option("--every", required=True, metavar="'DAYS HH:MM'",
              help="e.g. 'mon 08:00', 'mon,thu 08:00', 'mon-fri 07:30', 'daily 07:30'.")
@click.option("--tz", "tz", metavar="ZONE", help="IANA timezone (default: the configured timezone).")
@click.option("--min-new", type=click.IntRange(1, 50), default=1, show_default=True,
              help="Skip the run when fewer new summaries are waiting.")
@click.option("--auto-send", is_flag=True, help="Build, check, approve and send; without it the digest is a draft.")
@click.option("--limit", type=click.IntRange(1, 50), help="At most this many summaries (default from settings).")
@click.option("--name", default="weekly", show_default=True, help="Job name: digest:<name>.")
@click.pass_obj
def schedule_digest_command(obj: Any, every: str, tz: str | None, min_new: int, auto_send: bool,
                            limit: int | None, name: str) -> None:
    """Compose a digest of new summaries on a recurring schedule."""
    from .schedule import schedule_digest

    result = schedule_digest(obj.settings, config_path=_config(obj), every=every, tz=tz, name=name,
                             min_new=min_new, auto_send=auto_send, limit=limit)
    _print_scheduled(result, "next run")
    _daemon_hint(obj)


@schedule_group.command(name="list")
@click.pass_obj
def schedule_list_command(obj: Any) -> None:
    """Scheduled jobs, their next run (local and UTC) and what their last run did."""
    from .schedule import UTC, list_jobs

    views = list_jobs(obj.settings)
    if not views:
        console.print("No scheduled jobs.")
        return
    # `cancel` needs the whole id: its column never shrinks or wraps; the others fold to make room.
    table = Table()
    table.add_column("id", no_wrap=True, min_width=max(len(v.job_id) for v in views), overflow="ignore")
    for title in ("what", "next run", "next run (UTC)", "state"):
        table.add_column(title, overflow="fold")
    for view in views:
        local = f"{view.next_run:%Y-%m-%d %H:%M %Z}" if view.next_run else "—"
        utc = f"{view.next_run.astimezone(UTC):%Y-%m-%d %H:%M}" if view.next_run else "—"
        state = f"{view.state} ({view.detail})" if view.state == "missed" else \
            f"{view.state}: {view.detail}" if view.detail else view.state
        table.add_row(view.job_id, view.what, local, utc, state)
    console.print(table)


@schedule_group.command(name="cancel")
@click.argument("job_id", metavar="ID")
@click.pass_obj
def schedule_cancel_command(obj: Any, job_id: str) -> None:
    """Remove job ID (send:<issue> or digest:<name>) and its history line."""
    from .schedule import cancel

    console.print(f"Cancelled {cancel(obj.settings, job_id)}", markup=False)


def _run_daemon(settings: Any, config_path: str, poll: float | None) -> None:
    from .schedule.process import run_scheduler

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # we log fires and results ourselves
    run_scheduler(settings, config_path=config_path, poll_seconds=poll)


_POLL_HELP = ("Seconds between looks at the job store for jobs added meanwhile "
              "(default: $NEWSLETTER_SCHEDULER_POLL or 10).")


@click.command(name="scheduler")
@click.option("--poll", type=click.FloatRange(min=0.05, max=3600), help=_POLL_HELP)
@click.pass_obj
def scheduler_command(obj: Any, poll: float | None) -> None:
    """Run the scheduler: fire scheduled sends and digests until SIGTERM. One per database."""
    _run_daemon(obj.settings, _config(obj), poll)


COMMANDS = [schedule_group, scheduler_command]


@click.command(name="newsletter.schedule")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False),
              help="Settings file (default: ./newsletter.toml, or $NEWSLETTER_CONFIG).")
@click.option("--poll", type=click.FloatRange(min=0.05, max=3600), help=_POLL_HELP)
def _standalone(config: Path | None, poll: float | None) -> None:
    obj = Context(config)
    _run_daemon(obj.settings, _config(obj), poll)


def main(argv: list[str] | None = None) -> None:
    """`python -m newsletter.schedule [--config FILE] [--poll SECONDS]`: `newsletter scheduler` on its own."""
    run(_standalone, argv, prog_name="python -m newsletter.schedule")

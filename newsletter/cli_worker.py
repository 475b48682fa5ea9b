"""`newsletter worker ISSUE`: this host joins the send of an approved issue (docs/scaling.md).

Registered by cli.py; the command gets cli's `Context` as the click object (`pass_obj`), so this module
does not import cli.
"""

from __future__ import annotations

from typing import Any

import click

from .cli_progress import send_everyone

__all__ = ["COMMANDS", "worker"]


@click.command(name="worker")
@click.argument("issue")
@click.option("--workers", type=click.IntRange(1, 64), help="Sender processes to start on this host (default 1).")
@click.option("--connections", type=click.IntRange(1, 32), help="Parallel SMTP connections per process.")
@click.option("--rate", type=click.FloatRange(min=0.01), help="At most this many messages per second from this host.")
@click.option("--no-pause", is_flag=True, help="Do not pause for a high complaint or bounce rate (after checking why).")
@click.pass_obj
def worker(obj: Any, issue: str, workers: int | None, connections: int | None, rate: float | None,
           no_pause: bool) -> None:
    """Join the send of ISSUE from this host.

    Claims recipients nobody holds, a batch at a time, next to the senders already running (here or on
    other hosts, sharing the PostgreSQL database); exits when nothing is left to claim and no other
    sender's lease is live. Starting one when no send runs starts the send.
    """
    from .jobs.issues import issue_folder

    settings = obj.settings
    send_everyone(settings, issue_folder(settings, issue), workers=workers, connections=connections, rate=rate,
                  no_pause=no_pause)


COMMANDS: list[click.Command] = [worker]

"""The bounce edge: `newsletter bounces fetch` and `newsletter subscribers show ADDRESS`.

Registered by cli.py like cli_schedule; commands get cli's `Context` as the click object (`pass_obj`).
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

__all__ = ["COMMANDS", "bounces_group", "subscribers_show", "rates_line"]

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@click.group(name="bounces", short_help="Read bounces and complaints that came back.")
def bounces_group() -> None:
    """Bounces and complaints that arrive after the send (docs/bounces.md)."""


@bounces_group.command(name="fetch", short_help="Read the bounce mailbox once.")
@click.option("--limit", type=click.IntRange(1), help="Process at most this many messages.")
@click.pass_obj
def bounces_fetch(obj: Any, limit: int | None) -> None:
    """Read the bounce mailbox once: suppress, score or unsubscribe, and move what was read."""
    from .bounces.service import fetch_bounces

    def show(item: Any) -> None:
        target = err_console if item.kind in ("refused",) else console
        target.print(item.line, markup=False)

    report = fetch_bounces(obj.settings, report=show, limit=limit)
    console.print(f"{len(report.items)} message(s): {report.count('hard')} hard, {report.count('soft')} soft, "
                  f"{report.count('complaint')} complaint(s), {report.count('auto-reply')} auto-replies, "
                  f"{report.count('refused')} not usable (moved to newsletter-unrecognised)")


@click.command(name="show", short_help="One subscriber, with their bounces and complaints.")
@click.argument("email")
@click.pass_obj
def subscribers_show(obj: Any, email: str) -> None:
    """One subscriber: status, and every bounce and complaint on record."""
    from .bounces.service import history

    found = history(obj.settings, email)
    who = found.subscriber
    status = who.status + (" (complained: never resubscribed)" if found.complained else "")
    console.print(f"{who.email}  {who.name or '(no name)'}  {status}", markup=False)
    if not found.events:
        console.print("No bounces or complaints on record.")
        return
    table = Table("when (UTC)", "kind", "source", "issue", "code", "diagnostic")
    for event in found.events:
        table.add_row(event.at.replace("T", " ")[:19], event.kind, event.source, event.issue_id or "",
                      event.code, event.diagnostic[:120])
    console.print(table)


def rates_line(rates: Any) -> str:
    """Delivered, bounced and complained for an issue, in plain words."""
    return (f"delivered {rates.delivered} · bounced hard {rates.hard} ({rates.hard_rate:.2%}) · "
            f"soft {rates.soft} ({rates.soft_rate:.2%}) · complained {rates.complained} ({rates.complaint_rate:.2%})")


COMMANDS = [bounces_group]

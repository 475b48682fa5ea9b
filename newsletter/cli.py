"""The edge: parse arguments, load Settings once, call the jobs, print results."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .cli_base import Context, err_console, run
from .cli_progress import print_send_report, send_everyone, stop_on_signals
from .errors import CheckFailed, SourceError

if TYPE_CHECKING:  # annotations only: the settings module loads when a command needs it
    from .settings import Settings

__all__ = ["main", "cli", "run"]

console = Console(highlight=False, soft_wrap=True)


pass_ctx = click.make_pass_decorator(Context)


def _warn_source(exc: SourceError) -> None:
    err_console.print(f"[yellow]warning:[/] skipped {exc}", soft_wrap=True)


def _parse_date(value: str | None, settings: Settings) -> dt.date:
    if value is None:
        return dt.datetime.now(settings.tz).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD", param_hint="--date") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False),
              help="Settings file (default: ./newsletter.toml, or $NEWSLETTER_CONFIG).")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(click_ctx: click.Context, config: Path | None) -> None:
    """Turn research summaries into a safe, responsive email newsletter."""
    click_ctx.obj = Context(config)


@cli.command()
@click.option("--date", "date_", metavar="YYYY-MM-DD", help="Issue date (default: today in the configured timezone).")
@click.option("--limit", type=click.IntRange(1, 50), help="How many summaries (default from settings).")
@click.option("--force", is_flag=True, help="Replace an existing issue.toml for that date (never a sent one).")
@click.option("--correction-of", "correction_of", metavar="ISSUE",
              help="Start a correction of a sent ISSUE: a copy of its issue.toml in ISSUE-correction.")
@click.option("--skip-invalid", is_flag=True, help="Skip broken summary files with a warning instead of stopping.")
@pass_ctx
def compose(ctx: Context, date_: str | None, limit: int | None, force: bool, correction_of: str | None,
            skip_invalid: bool) -> None:
    """Pick the latest unsent summaries and write issues/<date>/issue.toml."""
    from .jobs.issues import compose_with_notes

    s = ctx.settings
    if correction_of:
        from .freeze import start_correction
        from .jobs.issues import issue_folder

        target = start_correction(s, issue_folder(s, correction_of))
        console.print(f"Started {_rel(target / 'issue.toml', s)} from {correction_of}. Edit it, then: "
                      f"newsletter build {_rel(target, s)}", markup=False)
        return
    composed = compose_with_notes(s, date=_parse_date(date_, s), limit=limit, force=force,
                                  skip_invalid=skip_invalid, warn=_warn_source)
    issue = composed.issue
    console.print(f"Composed [bold]{_rel(issue.folder / 'issue.toml', s)}[/] with {len(issue.summaries)} summaries:")
    for n, summary in enumerate(issue.summaries, start=1):
        console.print(f"  {n}. {summary.date.isoformat()}  {escape(summary.title)}  [dim]({summary.id})[/]")
    if composed.held_back:
        console.print(f"Held back {len(composed.held_back)} (max_age_days = {s.max_age_days} in newsletter.toml "
                      "sets how old a summary may be):", markup=False)
        old = [n for n in composed.held_back if n.reason == "too-old"]
        shown_notes = [n for n in composed.held_back if n.reason != "too-old"] + old[:_OLD_SHOWN]
        for note in shown_notes:
            origin = note.summary.origin
            shown = _rel(Path(origin), s) if origin and not origin.startswith(("http://", "https://")) else origin
            console.print(f"  {note.describe(shown)}", markup=False)
        if len(old) > _OLD_SHOWN:
            console.print(f"  … and {len(old) - _OLD_SHOWN} more too old")
    console.print(f"Review it, then: newsletter build {_rel(issue.folder, s)}")


_OLD_SHOWN = 5  # the newest too-old summaries named by compose; an old archive would fill the screen


def _rel(path: Path, settings: Settings) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _print_report(report: Any, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    console.print(f"HTML {report.html_bytes / 1024:.1f} KB · text {report.text_bytes / 1024:.1f} KB · "
                  f"{report.links} links")
    for f in report.findings:
        colour = "red" if f.level == "error" else "yellow"
        console.print(f"  [{colour}]{f.level}[/] {escape(f'[{f.code}]')} {escape(f.message)}", soft_wrap=True)
    if report.ok:
        console.print(f"[green]ok[/]: no errors, {len(report.warnings)} warning(s)")


@cli.command()
@click.argument("issue")
@pass_ctx
def build(ctx: Context, issue: str) -> None:
    """Render ISSUE to build/email.html and build/email.txt (+ preview.html, build.json)."""
    from .jobs.issues import build as build_issue, issue_folder

    s = ctx.settings
    result = build_issue(s, issue_folder(s, issue), content_checks=False)
    out = result.issue.build_dir
    console.print(f"Built {_rel(out / 'email.html', s)} and {_rel(out / 'email.txt', s)}")
    _print_report(result.report, as_json=False)
    console.print(f"Readability and plain-language checks: newsletter check {_rel(result.issue.folder, s)}",
                  markup=False)
    _fail_on_errors(result)


def _fail_on_errors(result: Any) -> None:
    """One rule for every command: errors it found make it exit non-zero (the output stays for a preview)."""
    if not result.report.ok:
        raise CheckFailed(f"{len(result.report.errors)} error(s) in {result.issue.id}; fix them before approving")


@cli.command()
@click.argument("issue")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_ctx
def check(ctx: Context, issue: str, as_json: bool) -> None:
    """Preflight ISSUE: size, links, alt text, subject, disclaimer, unsubscribe, readability. Exit 1 on errors."""
    from .jobs.issues import check as check_issue, issue_folder

    s = ctx.settings
    result = check_issue(s, issue_folder(s, issue))
    if not as_json and result.report.readability:
        from .readability import format_table

        console.print(f"Readability (Flesch-Kincaid grade: warn over {s.readability_warn_grade:g}, "
                      f"error over {s.readability_error_grade:g}; ease: higher is easier)")
        console.print(escape(format_table(result.report.readability)), soft_wrap=True, highlight=False)
    _print_report(result.report, as_json=as_json)
    if not result.report.ok:
        raise CheckFailed(f"{len(result.report.errors)} error(s) in {result.issue.id}")


@cli.command()
@click.argument("issue")
@click.option("--open", "open_", is_flag=True, help="Open the preview in the default browser.")
@click.option("--screenshots", is_flag=True,
              help="Write PNGs at 375 and 600 px, light and dark, to build/ (needs Debian's chromium).")
@pass_ctx
def preview(ctx: Context, issue: str, open_: bool, screenshots: bool) -> None:
    """Show where ISSUE's preview is (building it first if needed)."""
    from .jobs.issues import build as build_issue, issue_folder

    s = ctx.settings
    folder = issue_folder(s, issue)
    target = folder / "build" / "preview.html"
    result = build_issue(s, folder) if not target.exists() else None
    click.echo(str(target))
    if screenshots:
        from .browser import take_screenshots

        for png in take_screenshots(target, target.parent):
            click.echo(str(png))
    if open_:
        import webbrowser

        webbrowser.open(target.resolve().as_uri())
    if result is not None and not result.report.ok:
        _print_report(result.report, as_json=False)
        _fail_on_errors(result)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: errors become one clear line and a non-zero exit code."""
    run(cli, argv, prog_name="newsletter")


# --- delivery -------------------------------------------------------------------------------------

@cli.group(name="subscribers")
def subscribers_group() -> None:
    """Manage the subscriber list (SQLite)."""


@subscribers_group.command(name="import")
@click.argument("csv_file", type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
def subscribers_import(ctx: Context, csv_file: Path) -> None:
    """Import CSV_FILE (email,name,first_name); bad rows are listed by line, unsubscribed people stay unsubscribed."""
    from .store import open_store, subscribers

    with open_store(ctx.settings).connection() as conn:
        report = subscribers.import_csv(conn, csv_file)
    console.print(f"{csv_file}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
                  f"{report.skipped} skipped, {len(report.errors)} rejected")
    for problem in report.skipped_rows:
        console.print(f"  {csv_file}:{problem.line}: {problem.email}: {problem.reason}", markup=False)
    for problem in report.errors:
        err_console.print(f"  {csv_file}:{problem.line}: {problem.email!r}: {problem.reason}", markup=False)
    if report.errors:
        sys.exit(1)


@subscribers_group.command(name="add")
@click.argument("email")
@click.option("--name", default="", help="Full name, shown in the To header.")
@click.option("--first-name", default="", help="The name the greeting uses (\"Hello Ann,\"); none: \"Hello,\".")
@click.option("--resubscribe", is_flag=True, help="Resubscribe an address that had unsubscribed or bounced.")
@pass_ctx
def subscribers_add(ctx: Context, email: str, name: str, first_name: str, resubscribe: bool) -> None:
    """Add EMAIL."""
    from .store import open_store, subscribers

    with open_store(ctx.settings).connection() as conn:
        sub = subscribers.add(conn, email, name, first_name=first_name, resubscribe=resubscribe)
    console.print(f"{sub.email}: {sub.status}", markup=False)


@subscribers_group.command(name="remove")
@click.argument("email")
@pass_ctx
def subscribers_remove(ctx: Context, email: str) -> None:
    """Unsubscribe EMAIL (kept on record so no import resubscribes it)."""
    from .store import open_store, subscribers

    with open_store(ctx.settings).connection() as conn:
        sub = subscribers.remove(conn, email)
    console.print(f"{sub.email}: {sub.status}", markup=False)


@subscribers_group.command(name="list")
@click.option("--status", type=click.Choice(["subscribed", "unsubscribed", "bounced"]),
              help="Only subscribers with this status.")
@pass_ctx
def subscribers_list(ctx: Context, status: str | None) -> None:
    """List subscribers."""
    from .store import open_store, subscribers

    with open_store(ctx.settings).connection() as conn:
        rows = subscribers.list_subscribers(conn, status=status)
    table = Table("email", "name", "first name", "status")
    for sub in rows:
        table.add_row(escape(sub.email), escape(sub.name), escape(sub.first_name), sub.status)
    console.print(table)
    console.print(f"{len(rows)} subscriber(s)")


@cli.command()
@click.argument("issue")
@pass_ctx
def approve(ctx: Context, issue: str) -> None:
    """Freeze ISSUE's build for sending (records its content hash)."""
    from .jobs.issues import approve as approve_issue, issue_folder

    from .freeze import refuse_if_sent

    folder = issue_folder(ctx.settings, issue)
    refuse_if_sent(ctx.settings, folder, "approve it again")
    approval = approve_issue(ctx.settings, folder)
    console.print(f"Approved {folder.name} ({approval.subject!r}), build sha256 {approval.sha256[:12]}…",
                  markup=False)


@cli.command()
@click.argument("issue")
@click.option("--to", "to", multiple=True, metavar="EMAIL", help="Send a [TEST] proof copy only (no ledger).")
@click.option("--dry-run", is_flag=True, help="Show who would get it; send nothing.")
@click.option("--connections", type=click.IntRange(1, 32), help="Parallel SMTP connections.")
@click.option("--rate", type=click.FloatRange(min=0.01), help="At most this many messages per second.")
@click.option("--no-pause", is_flag=True, help="Do not pause for a high complaint or bounce rate (after checking why).")
@click.option("--workers", type=click.IntRange(1, 64), help="Sender processes on this host (docs/scaling.md).")
@pass_ctx
def send(ctx: Context, issue: str, to: tuple[str, ...], dry_run: bool, connections: int | None,
         rate: float | None, no_pause: bool, workers: int | None) -> None:
    """Send ISSUE to every subscriber (resumable), or a proof copy with --to."""
    from .jobs import delivery
    from .jobs.issues import issue_folder

    s = ctx.settings
    folder = issue_folder(s, issue)
    if to:
        sent = delivery.send_proof(s, folder, list(to))
        console.print(f"Proof copy of {folder.name} sent to {', '.join(sent)} via {_masked(s)}", markup=False)
        return
    if dry_run:
        plan = delivery.dry_run(s, folder)
        console.print(f"{plan.recipients} subscriber(s) would receive {plan.issue_id}"
                      f"{'' if plan.approved else ' (not approved yet: newsletter approve ' + str(folder) + ')'}")
        for address in plan.sample:
            console.print(f"  {address}", markup=False)
        if plan.recipients > len(plan.sample):
            console.print(f"  … and {plan.recipients - len(plan.sample)} more")
        return
    send_everyone(s, folder, workers=workers, connections=connections, rate=rate, no_pause=no_pause)


def _masked(settings: Settings) -> str:
    from .masking import mask_url

    return mask_url(settings.transport)


@cli.command()
@click.argument("issue")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON, for tools.")
@pass_ctx
def status(ctx: Context, issue: str, as_json: bool) -> None:
    """Sent / deferred / failed / remaining for ISSUE, from the ledger."""
    from .jobs import delivery
    from .jobs.issues import issue_folder

    from .bounces.service import rates as issue_rates
    from .cli_bounces import rates_line

    folder = issue_folder(ctx.settings, issue)
    counts = delivery.status(ctx.settings, folder)
    rates = issue_rates(ctx.settings, folder.name)
    if as_json:
        click.echo(json.dumps({**counts.__dict__, **rates.as_dict()}))
        return
    table = Table("issue", "sent", "deferred", "failed", "in flight", "remaining")
    table.add_row(folder.name, str(counts.sent), str(counts.deferred), str(counts.failed), str(counts.claimed),
                  str(counts.remaining))
    console.print(table)
    console.print(rates_line(rates), markup=False)


@cli.command()
@click.option("--date", "date_", metavar="YYYY-MM-DD", help="Issue date (default: today).")
@pass_ctx
def publish(ctx: Context, date_: str | None) -> None:
    """The main job: compose (if needed) + build + check + approve + send to every subscriber."""
    from .jobs import delivery

    s = ctx.settings
    stop = stop_on_signals()
    result = delivery.publish(s, date=_parse_date(date_, s), stop=stop)
    folder = _rel(result.folder, s)
    console.print(f"{'Composed' if result.composed else 'Using'} {folder}/issue.toml; built {folder}/build/email.html"
                  f"{'; approved' if result.approved else ''}")
    if result.seeded:
        console.print(f"Imported {result.seeded} sample subscribers from {s.seed_subscribers}")
    console.print(f"Delivered via {_masked(s)}:")
    print_send_report(result.report, result.folder)
    if result.report.stopped_early:
        sys.exit(3)


# --- scheduling, serving and desk accounts (cli_schedule.py, cli_serve.py, cli_editors.py) ------------------------------------------------------

def _register(commands: list[click.Command]) -> None:
    for command in commands:
        cli.add_command(command)


from .cli_dkim import COMMANDS as _DKIM_COMMANDS  # noqa: E402
from .cli_editors import COMMANDS as _EDITOR_COMMANDS  # noqa: E402
from .cli_schedule import COMMANDS as _SCHEDULE_COMMANDS  # noqa: E402
from .cli_serve import COMMANDS as _SERVE_COMMANDS  # noqa: E402
from .cli_bounces import COMMANDS as _BOUNCE_COMMANDS, subscribers_show as _subscribers_show  # noqa: E402
from .cli_db import COMMANDS as _DB_COMMANDS  # noqa: E402
from .cli_worker import COMMANDS as _WORKER_COMMANDS  # noqa: E402

_register(_SCHEDULE_COMMANDS + _SERVE_COMMANDS + _EDITOR_COMMANDS + _DKIM_COMMANDS + _BOUNCE_COMMANDS + _DB_COMMANDS
          + _WORKER_COMMANDS)
subscribers_group.add_command(_subscribers_show)

from .cli_help import finish as _finish_help  # noqa: E402

_finish_help(cli)

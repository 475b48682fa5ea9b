"""The edge: parse arguments, load Settings once, call the pipeline, print results."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import CheckFailed, NewsletterError, SourceError
from .settings import Settings, load_settings

__all__ = ["main", "cli"]

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


class Context:
    """Lazily loaded settings, so `--help` never touches the disk."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings


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
@click.option("--force", is_flag=True, help="Replace an existing issue.toml for that date.")
@click.option("--skip-invalid", is_flag=True, help="Skip broken summary files with a warning instead of stopping.")
@pass_ctx
def compose(ctx: Context, date_: str | None, limit: int | None, force: bool, skip_invalid: bool) -> None:
    """Pick the latest unsent summaries and write issues/<date>/issue.toml."""
    from .pipeline import compose as compose_issue

    s = ctx.settings
    issue = compose_issue(s, date=_parse_date(date_, s), limit=limit, force=force, skip_invalid=skip_invalid,
                          warn=_warn_source)
    console.print(f"Composed [bold]{_rel(issue.folder / 'issue.toml', s)}[/] with {len(issue.summaries)} summaries:")
    for n, summary in enumerate(issue.summaries, start=1):
        console.print(f"  {n}. {summary.date.isoformat()}  {summary.title}  [dim]({summary.id})[/]")
    console.print(f"Review it, then: newsletter build {_rel(issue.folder, s)}")


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
        console.print(f"  [{colour}]{f.level}[/] [{f.code}] {f.message}", soft_wrap=True)
    if report.ok:
        console.print(f"[green]ok[/]: no errors, {len(report.warnings)} warning(s)")


@cli.command()
@click.argument("issue")
@pass_ctx
def build(ctx: Context, issue: str) -> None:
    """Render ISSUE to build/email.html and build/email.txt (+ preview.html, build.json)."""
    from .pipeline import build as build_issue, issue_folder

    s = ctx.settings
    result = build_issue(s, issue_folder(s, issue))
    out = result.issue.build_dir
    console.print(f"Built {_rel(out / 'email.html', s)} and {_rel(out / 'email.txt', s)}")
    _print_report(result.report, as_json=False)


@cli.command()
@click.argument("issue")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_ctx
def check(ctx: Context, issue: str, as_json: bool) -> None:
    """Preflight ISSUE: size, links, alt text, subject, disclaimer, unsubscribe. Exit 1 on errors."""
    from .pipeline import build as build_issue, issue_folder

    s = ctx.settings
    result = build_issue(s, issue_folder(s, issue), write=False)
    _print_report(result.report, as_json=as_json)
    if not result.report.ok:
        raise CheckFailed(f"{len(result.report.errors)} error(s) in {result.issue.id}")


@cli.command()
@click.argument("issue")
@click.option("--open", "open_", is_flag=True, help="Open the preview in the default browser.")
@pass_ctx
def preview(ctx: Context, issue: str, open_: bool) -> None:
    """Show where ISSUE's preview is (building it first if needed)."""
    from .pipeline import build as build_issue, issue_folder

    s = ctx.settings
    folder = issue_folder(s, issue)
    target = folder / "build" / "preview.html"
    if not target.exists():
        build_issue(s, folder)
    click.echo(str(target))
    if open_:
        import webbrowser

        webbrowser.open(target.resolve().as_uri())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: errors become one clear line and a non-zero exit code."""
    try:
        cli.main(args=argv, prog_name="newsletter", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CheckFailed as exc:
        err_console.print(f"[red]check failed:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except NewsletterError as exc:
        err_console.print(f"[red]error:[/] {exc}", soft_wrap=True, markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)

"""The CLI's help: one short line per command, and `--config` accepted after any subcommand too."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["SHORT_HELP", "finish"]

#: One line per command for `newsletter --help` (the docstrings' first sentences are cut at 80 columns).
SHORT_HELP = {
    ("approve",): "Freeze an issue's build for sending.",
    ("build",): "Render an issue to email HTML and plain text.",
    ("check",): "Preflight an issue; exit 1 on errors.",
    ("compose",): "Write the next issue.toml from the latest summaries.",
    ("preview",): "Show (or open) an issue's preview.",
    ("publish",): "Compose, build, check, approve and send in one go.",
    ("schedule",): "Schedule sends and digests.",
    ("schedule", "cancel"): "Remove a scheduled job by its id.",
    ("schedule", "list"): "Show scheduled jobs and their next run.",
    ("scheduler",): "Run the scheduler until stopped.",
    ("send",): "Send an issue to subscribers, or a proof copy.",
    ("serve",): "Serve unsubscribe links, the archive and the feed.",
    ("status",): "Show how far an issue's sending got.",
    ("subscribers",): "Manage the subscriber list.",
    ("subscribers", "import"): "Import subscribers from a CSV file.",
}


def _set_config(click_ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    # cli's Context is the click object of every subcommand; its settings load lazily, after parsing.
    if value is not None and click_ctx.obj is not None:
        click_ctx.obj.config = value


def finish(command: click.Command, path: tuple[str, ...] = ()) -> None:
    """Short help lines, and `--config` after any subcommand too (`newsletter status X --config f`)."""
    if path in SHORT_HELP:
        command.short_help = SHORT_HELP[path]
    if path and not any(p.name == "config" for p in command.params):
        command.params.append(click.Option(
            ["--config"], type=click.Path(path_type=Path, dir_okay=False), expose_value=False, is_eager=True,
            callback=_set_config, help="Settings file (also accepted before the command)."))
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            finish(sub, (*path, name))

"""The CLI explains itself: every option has help, the command list fits 80 columns, --config goes anywhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click
from cli_inprocess import run_newsletter

from newsletter.cli import cli


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` in `cwd`, 80 columns wide (in this process: see cli_inprocess)."""
    return run_newsletter(args, cwd=cwd, env={**os.environ, "COLUMNS": "80"})


def _commands(command: click.Command, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def test_every_option_has_help() -> None:
    missing = [(" ".join(path), p.opts[0]) for path, command in _commands(cli) for p in command.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert missing == []


def test_command_lists_are_not_cut_at_80_columns(tmp_path: Path) -> None:
    for group in ([], ["schedule"], ["subscribers"]):
        r = run(tmp_path, *group, "--help")
        assert r.returncode == 0, r.stderr
        listed = r.stdout.partition("Commands:")[2]
        assert listed.strip(), r.stdout
        assert "..." not in listed and "…" not in listed, listed


def test_config_after_the_subcommand(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = str(project / "newsletter.toml")
    r = run(elsewhere, "compose", "--date", "2026-11-25", "--config", cfg)
    assert r.returncode == 0, r.stderr
    r = run(elsewhere, "status", str(project / "issues/2026-11-25"), "--config", cfg)
    assert r.returncode == 0, r.stderr
    r = run(elsewhere, "subscribers", "list", "--config", cfg)
    assert r.returncode == 0 and "0 subscriber(s)" in r.stdout, r.stderr
    assert (project / "var" / "newsletter.sqlite3").exists() and not (elsewhere / "var").exists()

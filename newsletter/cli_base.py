"""What every command-line entry point shares: lazily loaded settings and one error-reporting runner."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from .errors import CheckFailed, NewsletterError

if TYPE_CHECKING:  # loaded with the settings, so `--help` does not import them
    from .settings import Settings

__all__ = ["Context", "run", "err_console"]

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class Context:
    """Lazily loaded settings, so `--help` never touches the disk."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from .settings import load_settings

            self._settings = load_settings(self.config)
        return self._settings


def run(command: click.Command, argv: list[str] | None, *, prog_name: str) -> None:
    """Run a click command; errors become one clear line and a non-zero exit code, never a traceback."""
    try:
        command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CheckFailed as exc:
        err_console.print(f"[red]check failed:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(1)
    except NewsletterError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)

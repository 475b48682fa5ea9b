"""`python -m newsletter ARGS` run in the test process: the same entry point, exit code, stdout and stderr.

A spawned `python -m newsletter` spends about half a second (more on a loaded machine) starting Python
and importing before it does anything; a test that runs a dozen commands spends most of its time there.
`run_newsletter` calls the same `main()` that `python -m newsletter` calls, in the given folder with the
given environment, and returns what `subprocess.run(..., capture_output=True, text=True)` would:

* the exit code of `sys.exit` (0 when main returns), stdout and stderr as text;
* an exception that escapes main is printed to stderr as the interpreter would ("Traceback (most recent
  call last): ..."), exit code 1, so tests that look for a traceback still see one;
* log records of WARNING and above reach stderr, as Python's last-resort handler prints them in a
  process that configured no logging (pytest's own log capture would otherwise swallow them); only
  those of this thread and of threads the command starts, not of servers the test runs meanwhile.

Tests about the process boundary itself (signals, a second process, a fresh interpreter's imports, a
clean clone) keep spawning a real process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

from click.testing import CliRunner

__all__ = ["run_newsletter"]


def run_newsletter(args: list[str] | tuple[str, ...], *, cwd: Path | str, env: Mapping[str, str] | None = None,
                   input: str | None = None,
                   main: Callable[[list[str]], None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI like `subprocess.run([python, "-m", "newsletter", *args], cwd=cwd, env=env, ...)`.

    `env` is the whole environment the command sees (as for subprocess.run); None keeps this process's.
    `main` is the entry point (default: newsletter.cli.main, what `python -m newsletter` runs).
    """
    if main is None:
        from newsletter.cli import main as newsletter_main

        main = newsletter_main
    overrides: dict[str, str | None] | None = None
    if env is not None:
        overrides = {key: None for key in os.environ if key not in env}
        overrides.update(env)
    code = 0
    with contextlib.chdir(cwd), CliRunner().isolation(input=input or "", env=overrides) as (out, err, _):
        last_resort = logging.StreamHandler(sys.stderr)
        last_resort.setLevel(logging.WARNING)
        others = {thread.ident for thread in threading.enumerate()} - {threading.get_ident()}
        last_resort.addFilter(lambda record: record.thread not in others)
        root = logging.getLogger()
        root.addHandler(last_resort)
        try:
            main(list(args))
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # what the interpreter prints for an uncaught exception
            traceback.print_exc(file=sys.stderr)
            code = 1
        finally:
            root.removeHandler(last_resort)
            sys.stdout.flush()
            sys.stderr.flush()
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return subprocess.CompletedProcess([sys.executable, "-m", "newsletter", *args], code, stdout, stderr)

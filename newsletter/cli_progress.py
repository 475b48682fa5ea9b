"""How a send shows itself on the command line: stop on signals, a progress bar or lines, the final table."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .cli_base import err_console

__all__ = ["stop_on_signals", "progress", "print_send_report", "send_everyone"]

console = Console(highlight=False, soft_wrap=True)


def stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM finish the message in flight, record it, then stop."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        # A plain write, not rich: the handler runs between two bytecodes of the main thread, which may be inside
        # an import of rich's own modules (rich imports some on first use), and printing with rich from here
        # re-entered that import and failed (seen once in the crash loop's SIGTERM test).
        try:
            os.write(2, f"{signal.Signals(signum).name}: finishing the message in flight, then stopping…\n".encode())
        except OSError:
            pass  # stderr closed: the stop still happens

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@contextlib.contextmanager
def progress(total: int) -> Iterator[Callable[[str, Any], None]]:
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:.0f}/s"), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("send", total=total, rate=0.0)
            started = time.monotonic()

            def tick(_outcome: str, _sub: Any) -> None:
                done = bar.tasks[0].completed + 1
                bar.update(task, completed=done, rate=done / max(time.monotonic() - started, 1e-6))

            yield tick
        return
    counter = {"n": 0}
    every = max(1, min(1000, total // 10 or 1))

    def log(outcome: str, sub: Any) -> None:
        counter["n"] += 1
        if outcome != "sent":
            err_console.print(f"{outcome}: {sub.email}", markup=False)
        if counter["n"] % every == 0 or counter["n"] == total:
            console.print(f"progress: {counter['n']}/{total}")

    yield log


def print_send_report(report: Any, folder: Path) -> None:
    table = Table("sent", "deferred", "failed", "skipped", "re-sent after crash", "duration")
    table.add_row(str(report.sent), str(report.deferred), str(report.failed), str(report.skipped),
                  str(report.resent_after_crash), f"{report.duration:.1f} s")
    console.print(table)
    if report.stopped_early:
        err_console.print(f"[red]stopped early:[/] {report.stopped_early}", soft_wrap=True)
    if (report.interrupted or report.deferred or report.stopped_early) and "--no-pause" not in (report.stopped_early or ""):
        console.print(f"Resume with: newsletter send {folder}")


def send_everyone(settings: Any, folder: Path, *, workers: int | None, connections: int | None, rate: float | None,
                  no_pause: bool) -> None:
    """A full send (or this host's part of one) with a progress bar and the final table; exits 3 when it paused
    itself, 130 when interrupted. What `send` and `worker` share."""
    from .jobs import delivery, fleet

    stop = stop_on_signals()
    plan = delivery.dry_run(settings, folder, sample=0)
    with progress(plan.recipients) as tick:
        report = fleet.send(settings, folder, workers=workers, stop=stop, progress=tick, connections=connections,
                            rate=rate, no_pause=no_pause)
    print_send_report(report, folder)
    if report.stopped_early:
        sys.exit(3)
    if report.interrupted:
        sys.exit(130)

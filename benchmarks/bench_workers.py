"""Workers: sends per second with 1, 2 and 4 sender processes (null transport), on SQLite and PostgreSQL, and a
full send with 4 workers on PostgreSQL (time, peak RSS per process) against one process on SQLite.

    python -m benchmarks.bench_workers                          # 1,000,000 for the full send, 20,000 per scaling run
    python -m benchmarks.bench_workers --subscribers 200000 --parts full
    python -m benchmarks.bench_workers --parts full,wide        # also both full sends with 4 connections per process
    python -m benchmarks.bench_workers --quick                  # 20,000 and 5,000 (not part of `python -m benchmarks`:
                                                                # its full size alone takes longer than that suite)

Every send runs in a fresh process (`--child`) so its peak RSS is its own; the workers of `send --workers N`
are that process's children (multiprocessing "spawn"), each registering the benchmark's null transport
(newsletter ships none) before it starts, and writing its own VmHWM when it ends. The PostgreSQL server is
a throwaway cluster (tests/pg_server.py) started for the run. Subscribers are written straight into the
table (COPY on PostgreSQL), since the import is not what is measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .bench_ledger import register_null
from .bench_scale import rss_mb
from .project import (REPO, compose_and_build, create_database, make_project, postgres_cluster, python,
                      settings_for, subscriber_rows, temp_dir)
from .report import Row, info, not_measured, print_table, ratio_row

__all__ = ["run", "main"]

SECTION = "workers"
WORKER_COUNTS = (1, 2, 4)


def _peak_mb() -> float:
    return rss_mb()[1]


def null_worker(spec: Any, pipe: Any) -> None:
    """A worker process's body: the null transport registered, then the real worker; its peak RSS to a file."""
    from newsletter.jobs.fleet import run_worker

    register_null()
    try:
        run_worker(spec, pipe)
    finally:
        rss_dir = spec.settings.root / "rss"
        rss_dir.mkdir(exist_ok=True)
        (rss_dir / f"{spec.index}.json").write_text(json.dumps({"peak_mb": _peak_mb()}))


def _fill(settings: Any, count: int) -> None:
    """`count` subscribed subscribers, written directly (COPY on PostgreSQL)."""
    from newsletter.store import open_store
    from newsletter.store.subscribers import email_key

    now = "2026-11-25T00:00:00+00:00"
    rows = ((email, email_key(email), name, "subscribed", now, now)
            for email, name in subscriber_rows(count))
    columns = ("email", "email_key", "name", "status", "created_at", "updated_at")
    store = open_store(settings)
    with store.connection() as conn:
        if hasattr(conn, "copy_rows"):
            conn.copy_rows("subscribers", columns, rows)
        else:
            conn.executemany(f"INSERT INTO subscribers ({', '.join(columns)}) VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.commit()


def _child(root: Path, workers: int, connections: int = 1) -> None:
    """One send in this fresh process: `workers` processes (0: in this process, the plain `newsletter send`)."""
    from newsletter.jobs.delivery import send_full
    from newsletter.jobs.fleet import send_with_workers

    register_null()
    settings = settings_for(root, transport="null:")
    folder = settings.path(settings.issues_dir) / "2026-11-25"
    start = time.perf_counter()
    if workers:
        report = send_with_workers(settings, folder, workers=workers, target=null_worker, connections=connections)
    else:
        report = send_full(settings, folder, connections=connections)
    seconds = time.perf_counter() - start
    peaks = [json.loads(p.read_text())["peak_mb"] for p in sorted((root / "rss").glob("*.json"))] if workers else []
    print(json.dumps({"sent": report.sent, "seconds": seconds, "parent_peak_mb": _peak_mb(), "worker_peaks_mb": peaks,
                      "stopped_early": report.stopped_early}))


def server_cpu(instance: Any) -> float:
    """CPU seconds the PostgreSQL cluster has used: the postmaster, its ended children (the backends of closed
    connections, reaped by it) and its live children, from /proc (0.0 without a cluster)."""
    if instance is None:
        return 0.0
    postmaster = int((Path(instance.data_dir) / "postmaster.pid").read_text().split()[0])
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(entry.name) == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _send(root: Path, workers: int, connections: int = 1, server: Any = None) -> dict[str, Any]:
    """Send the issue to everyone (the ledger emptied first) in a fresh process; its figures, with the CPU per
    message of the sending processes (user + system, every worker included) and of the PostgreSQL `server`."""
    from .bench_send import reset_ledger

    reset_ledger(settings_for(root))
    for old in (root / "rss").glob("*.json"):
        old.unlink()
    before, cluster = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(server)
    proc = subprocess.run([python(), "-m", "benchmarks.bench_workers", "--child", str(root), str(workers),
                           str(connections)],
                          cwd=REPO, check=True, stdout=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(0.2)  # the backends of the closed connections end and are reaped
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    if figures["stopped_early"]:
        raise RuntimeError(f"the send stopped early: {figures['stopped_early']}")
    sent = max(1, figures["sent"])
    figures["client_us"] = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / sent * 1e6
    figures["server_us"] = (server_cpu(server) - cluster) / sent * 1e6
    figures["load"] = os.getloadavg()[0]
    return figures  # type: ignore[no-any-return]


def _cores_needed(figures: dict[str, Any], reference: dict[str, Any]) -> str:
    """How many cores the send would need to keep busy to take a third of the reference's time at the CPU per
    message measured (senders + PostgreSQL), against the cores this machine has."""
    cpu = (figures["client_us"] + figures["server_us"]) * 1e-6 * figures["sent"]
    return (f"at that CPU per message, a third of the SQLite time needs {cpu / (reference['seconds'] / 3):.1f} "
            f"cores busy; this machine has {os.cpu_count()}")


def _cpu_note(figures: dict[str, Any]) -> str:
    server = f" + PostgreSQL {figures['server_us']:.0f} µs" if figures.get("server_us") else ""
    return (f"CPU per message: senders {figures['client_us']:.0f} µs{server}; "
            f"load average {figures['load']:.1f} at the end")


@contextlib.contextmanager
def _project(work: Path, name: str, count: int, database: str | None) -> Iterator[Path]:
    root = make_project(work / name, transport="null:")
    if database:
        config = root / "newsletter.toml"
        text = config.read_text()
        config.write_text(text.replace('database = "var/newsletter.sqlite3"', f'database = "{database}"'))
        from newsletter.store import open_store

        open_store(settings_for(root)).upgrade()  # type: ignore[attr-defined]
    compose_and_build(root, limit=10)
    _fill(settings_for(root), count)
    yield root


def _scaling(root: Path, store: str, count: int, out: Any, server: Any = None) -> list[Row]:
    rows, runs = [], {}
    _send(root, 0)  # warm-up, not counted: the first send into a fresh ledger grows its file or table
    one = _send(root, 0, server=server)
    out(f"  workers: {store}: one process {one['sent'] / one['seconds']:,.0f}/s ({_cpu_note(one)})")
    for n in WORKER_COUNTS:
        runs[n] = _send(root, n, server=server)
        out(f"  workers: {store}: {n} worker(s) {runs[n]['sent'] / runs[n]['seconds']:,.0f}/s ({_cpu_note(runs[n])})")
    reference = one["sent"] / one["seconds"]
    # The other way to use several cores with one SQLite writer: one process owns the database and hands the
    # messages to its threads (what `newsletter send --connections 4` does).
    writer = _send(root, 0, connections=4, server=server)
    out(f"  workers: {store}: one process, 4 connections {writer['sent'] / writer['seconds']:,.0f}/s")
    rows.append(ratio_row(SECTION, f"{store}: one writer process, 4 connections, {count:,} sends",
                          writer["sent"] / writer["seconds"], "sends/s", reference, "one process, 1 connection",
                          note="one process claims and records everything; its threads only call the transport; "
                               + _cpu_note(writer)))
    for n in WORKER_COUNTS:
        rows.append(ratio_row(SECTION, f"{store}: {n} worker(s), {count:,} sends", runs[n]["sent"] / runs[n]["seconds"],
                              "sends/s", reference, "one process (`newsletter send`), same store",
                              note="wall time from starting the workers to the combined report (process start "
                                   f"included); null transport, 1 connection per worker; {_cpu_note(runs[n])} "
                                   f"(one process: {_cpu_note(one)})"))
    return rows


def run(*, quick: bool, out: Any = print, subscribers: int | None = None,
        scale_subscribers: int | None = None, parts: str = "scale,full") -> list[Row]:
    full = subscribers or (20_000 if quick else 1_000_000)
    scale = scale_subscribers or (5_000 if quick else 20_000)
    rows: list[Row] = []
    with temp_dir("workers-") as work, postgres_cluster(out, SECTION) as pg:
        if "scale" in parts:
            with _project(work, "scale-sqlite", scale, None) as root:
                rows += _scaling(root, "SQLite", scale, out)
            if pg is not None:
                with _project(work, "scale-pg", scale, create_database(pg, "bench_scale")) as root:
                    rows += _scaling(root, "PostgreSQL", scale, out, pg)
        if "full" not in parts:
            return rows
        out(f"  workers: full send to {full:,}: one process on SQLite ...")
        with _project(work, "full-sqlite", full, None) as root:
            reference = _send(root, 0)
            out(f"  workers: one process on SQLite: {reference['seconds']:.0f} s, peak "
                f"{reference['parent_peak_mb']:.0f} MB ({_cpu_note(reference)})")
            wide = _send(root, 0, connections=4) if "wide" in parts else None
        if pg is None:
            rows.append(not_measured(SECTION, f"full send {full:,}, 4 workers, PostgreSQL", "no PostgreSQL here"))
            return rows
        out(f"  workers: full send to {full:,}: 4 workers on PostgreSQL ...")
        with _project(work, "full-pg", full, create_database(pg, "bench_full")) as root:
            four = _send(root, 4, server=pg)
            out(f"  workers: 4 workers on PostgreSQL: {four['seconds']:.0f} s ({_cpu_note(four)})")
            four_wide = _send(root, 4, connections=4, server=pg) if "wide" in parts else None
    rows.append(ratio_row(SECTION, f"full send {full:,}: 4 workers, PostgreSQL", four["seconds"], "s",
                          reference["seconds"], "one process, SQLite", goal="≤ 1/3 of one process on SQLite",
                          check=lambda f, r: r is not None and r <= 1 / 3,
                          note=f"{four['sent'] / four['seconds']:,.0f}/s vs "
                               f"{reference['sent'] / reference['seconds']:,.0f}/s; {_cpu_note(four)}; "
                               f"SQLite one process {_cpu_note(reference)}; {_cores_needed(four, reference)}",
                          samples=four))
    for label, figures in ((f"full send {full:,}: one process, SQLite, 4 connections", wide),
                           (f"full send {full:,}: 4 workers x 4 connections, PostgreSQL", four_wide)):
        if figures is not None:
            rows.append(ratio_row(SECTION, label, figures["seconds"], "s", reference["seconds"],
                                  "one process, SQLite", note=f"{figures['sent'] / figures['seconds']:,.0f}/s; "
                                  f"{_cpu_note(figures)}; the results of up to 4 messages share a commit",
                                  samples=figures))
    rows.append(info(SECTION, f"full send {full:,}: peak RSS per worker", max(four["worker_peaks_mb"]), "MB",
                     note="workers: " + ", ".join(f"{p:.0f}" for p in four["worker_peaks_mb"])
                          + f" MB; parent {four['parent_peak_mb']:.0f} MB; one process on SQLite "
                            f"{reference['parent_peak_mb']:.0f} MB"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, help="subscribers of the full send (default 1,000,000)")
    parser.add_argument("--scale-subscribers", type=int, help="subscribers per scaling run (default 20,000)")
    parser.add_argument("--parts", default="scale,full",
                        help="scale (1, 2, 4 workers), full (the big send), wide (the full send again with 4 "
                             "connections per process), comma-separated")
    parser.add_argument("--quick", action="store_true", help="20,000 and 5,000")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick, out=lambda s: print(s, flush=True), subscribers=args.subscribers,
               scale_subscribers=args.scale_subscribers, parts=args.parts)
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())

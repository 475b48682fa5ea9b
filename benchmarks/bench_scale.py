"""Scale: import 100,000 subscribers and send to all of them (null transport, ledger on); time and peak RSS.
The same import into PostgreSQL (a throwaway cluster, tests/pg_server.py), when one can be started.

Each step runs in its own process so its peak RSS is its own (VmHWM, and ru_maxrss as a cross-check).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .project import (
    compose_and_build,
    create_database,
    make_project,
    postgres_cluster,
    python,
    settings_for,
    temp_dir,
    write_subscribers,
)
from .report import Row, info, not_measured, ratio_row

__all__ = ["run", "rss_mb"]

SECTION = "scale"
GOAL_MB = 200


def rss_mb() -> tuple[float, float]:
    """(current VmRSS, peak VmHWM) of this process in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def _child(step: str, root: str, arg: Path) -> None:
    """One step in this fresh process; `root` is the project folder, or the database's URL for import-pg."""
    from newsletter.store import sqlite as db, subscribers
    from newsletter.jobs.delivery import send_full

    from .bench_ledger import register_null

    register_null()
    settings = settings_for(Path(root), transport="null:") if step != "import-pg" else None
    baseline, _ = rss_mb()
    start = time.perf_counter()
    if step == "import":
        assert settings is not None
        conn = db.connect(settings.path(settings.database))
        report = subscribers.import_csv(conn, arg)
        conn.close()
        count = report.added
    elif step == "import-pg":
        from newsletter.store.pgstore import PostgresStore

        store = PostgresStore(root, pool_size=1, env={})
        with store.connection() as pg:
            report = subscribers.import_csv(pg, arg)
        store.close()
        count = report.added
    else:
        assert settings is not None
        report = send_full(settings, arg)
        count = report.sent
    seconds = time.perf_counter() - start
    _, peak = rss_mb()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "seconds": seconds, "baseline_mb": baseline, "peak_mb": peak,
                      "ru_maxrss_mb": max_rss}))


def _import_postgres(csv_path: Path, out: Any) -> dict[str, Any] | None:
    """The same import into a fresh PostgreSQL database (None, with the reason printed, without a cluster)."""
    from newsletter.store.pgstore import PostgresStore

    with postgres_cluster(out, SECTION) as instance:
        if instance is None:
            return None
        url = create_database(instance, "bench_import")
        PostgresStore(url, env={}).upgrade()
        out("  scale: the same import into PostgreSQL ...")
        return _run_child("import-pg", url, csv_path)


def _run_child(step: str, root: Path | str, arg: Path) -> dict[str, Any]:
    proc = subprocess.run([python(), "-m", "benchmarks.bench_scale", "--child", step, str(root), str(arg)],
                          cwd=Path(__file__).resolve().parent.parent, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(*, quick: bool, out=print, subscribers: int | None = None) -> list[Row]:
    count = subscribers or (10_000 if quick else 100_000)
    goal = f"peak < {GOAL_MB} MB"
    with temp_dir("scale-") as work:
        root = make_project(work / "site")
        folder = compose_and_build(root, limit=10)
        csv_path = write_subscribers(work / "subscribers.csv", count)
        out(f"  scale: importing {count:,} subscribers ...")
        imported = _run_child("import", root, csv_path)
        out(f"  scale: sending to {imported['count']:,} (null transport, ledger on) ...")
        sent = _run_child("send", root, folder)
        on_pg = _import_postgres(csv_path, out)
    rows = []
    for label, step in (("import_csv", imported), ("send, ledger on", sent)):
        rows.append(ratio_row(
            SECTION, f"{label} {count:,}: peak RSS", step["peak_mb"], "MB", step["baseline_mb"],
            "same process after imports", goal=goal, check=lambda f, r: f < GOAL_MB,
            note=f"VmHWM; ru_maxrss says {step['ru_maxrss_mb']:.0f} MB" if label == "import_csv" else "",
            samples=step))
        rows.append(info(SECTION, f"{label} {count:,}: time", step["seconds"], "s",
                         note=f"{step['count'] / step['seconds']:,.0f} per second; "
                              + ("email-validator checks every address" if label == "import_csv" else
                                 "null transport (registered by the benchmark), 1 connection, SQLite file")))
    if on_pg is None:
        rows.append(not_measured(SECTION, f"import_csv {count:,} into PostgreSQL", "no PostgreSQL here"))
        return rows
    rows.append(ratio_row(SECTION, f"import_csv {count:,} into PostgreSQL: peak RSS", on_pg["peak_mb"], "MB",
                          on_pg["baseline_mb"], "same process after imports", goal=goal,
                          check=lambda f, r: f < GOAL_MB, note=f"VmHWM; ru_maxrss says {on_pg['ru_maxrss_mb']:.0f} MB",
                          samples=on_pg))
    rows.append(ratio_row(SECTION, f"import_csv {count:,} into PostgreSQL: time", on_pg["seconds"], "s",
                          imported["seconds"], "the same import into SQLite",
                          note=f"{on_pg['count'] / on_pg['seconds']:,.0f} per second; COPY in batches, a throwaway "
                               "cluster on this host (fsync off), over 127.0.0.1 TCP"))
    return rows


def imports(count: int, out: Any = print) -> None:
    """Only the two imports (`python -m benchmarks.bench_scale --imports N`): SQLite, then PostgreSQL."""
    with temp_dir("scale-") as work:
        root = make_project(work / "site")
        csv_path = write_subscribers(work / "subscribers.csv", count)
        out(f"  scale: importing {count:,} subscribers into SQLite ...")
        lite = _run_child("import", root, csv_path)
        out(f"  scale: SQLite: {lite['seconds']:.0f} s, peak {lite['peak_mb']:.0f} MB (baseline {lite['baseline_mb']:.0f})")
        pg = _import_postgres(csv_path, out)
        if pg is not None:
            out(f"  scale: PostgreSQL: {pg['seconds']:.0f} s, peak {pg['peak_mb']:.0f} MB (baseline {pg['baseline_mb']:.0f})")


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    _child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
elif __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--imports":
    imports(int(sys.argv[2]), out=lambda line: print(line, flush=True))

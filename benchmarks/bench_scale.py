"""Scale: import 100,000 subscribers and send to all of them (null transport, ledger on); time and peak RSS.

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
    make_project,
    python,
    settings_for,
    temp_dir,
    write_subscribers,
)
from .report import Row, info, ratio_row

__all__ = ["run"]

SECTION = "scale"
GOAL_MB = 200


def _rss_mb() -> tuple[float, float]:
    """(current VmRSS, peak VmHWM) of this process in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def _child(step: str, root: Path, arg: Path) -> None:
    from newsletter.store import sqlite as db, subscribers
    from newsletter.jobs.delivery import send_full

    from .bench_ledger import register_null

    register_null()
    settings = settings_for(root, transport="null:")
    baseline, _ = _rss_mb()
    start = time.perf_counter()
    if step == "import":
        conn = db.connect(settings.path(settings.database))
        report = subscribers.import_csv(conn, arg)
        conn.close()
        count = report.added
    else:
        report = send_full(settings, arg)
        count = report.sent
    seconds = time.perf_counter() - start
    _, peak = _rss_mb()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "seconds": seconds, "baseline_mb": baseline, "peak_mb": peak,
                      "ru_maxrss_mb": max_rss}))


def _run_child(step: str, root: Path, arg: Path) -> dict[str, Any]:
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
    return rows


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    _child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))

"""benchmarks.compare: medians, ranges and verdicts from two sides' kept JSON runs (the runs themselves are
`python -m benchmarks`, covered by test_benchmarks_smoke; here the figures are written by the test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.compare import compare

REPO = Path(__file__).resolve().parent.parent


def _row(section: str, name: str, figure: float, unit: str, reference: float | None = None,
         reference_name: str = "") -> dict:
    return {"section": section, "name": name, "figure": figure, "unit": unit, "reference": reference,
            "reference_name": reference_name, "ratio_unit": "x"}


def _write(folder: Path, side: str, n: int, rows: list[dict]) -> None:
    (folder / f"{side}-{n}.json").write_text(json.dumps({"meta": {}, "rows": rows}), encoding="utf-8")


def _runs(folder: Path) -> None:
    before = [  # three rounds
        (1000.0, 10.0, 5.0, 100.0),
        (1100.0, 11.0, 6.0, 90.0),
        (1050.0, 12.0, 7.0, 95.0),
    ]
    after = [
        (700.0, 10.5, 3.0, 101.0),
        (800.0, 11.5, 4.0, 99.0),
        (750.0, 20.0, 3.5, 98.0),
    ]
    for side, values in (("before", before), ("after", after)):
        for n, (rate, ms, rss, ref) in enumerate(values, start=1):
            name = "stage: import pipeline + render" if side == "before" else "stage: import jobs.issues + render"
            _write(folder, side, n, [
                _row("ledger", "sends/s", rate, "msg/s", ref, "ledger off"),
                _row("build", name, ms, "ms"),
                _row("scale", "peak RSS", rss, "MB"),
            ])


def test_verdicts_follow_the_unit_and_the_spread(tmp_path: Path) -> None:
    _runs(tmp_path)
    lines = {line["name"]: line for line in compare(tmp_path)}
    rate = lines["ledger: sends/s"]
    assert rate["before_median"] == 1050.0 and rate["after_median"] == 750.0
    assert rate["verdict"] == "worse"  # a rate: lower is worse, and 800 < 1000 (no overlap)
    assert abs(rate["ratio"] - 750.0 / 1050.0) < 1e-9
    assert lines["ledger: sends/s  ref: ledger off"]["verdict"] == "~"  # 98-101 overlaps 90-100
    # renamed between versions, matched through RENAMED; 10.5-20 overlaps 10-12
    assert lines["build: stage: import jobs.issues + render"]["verdict"] == "~"
    assert lines["scale: peak RSS"]["verdict"] == "better"  # MB: lower is better, 3-4 < 5-7


def test_one_run_per_side_has_no_verdict(tmp_path: Path) -> None:
    _write(tmp_path, "before", 1, [_row("x", "rate", 10.0, "msg/s")])
    _write(tmp_path, "after", 1, [_row("x", "rate", 5.0, "msg/s")])
    assert [line["verdict"] for line in compare(tmp_path)] == ["(1 run)"]


def test_tables_prints_the_comparison_and_lists_what_is_worse(tmp_path: Path) -> None:
    _runs(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--tables", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "1,050 [1,000 - 1,100]" in proc.stdout and "750.0 [700.0 - 800.0]" in proc.stdout
    assert proc.stdout.rstrip().endswith("worse beyond the rounds' spread: 1:\n  ledger: sends/s")


def test_a_folder_without_runs_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--tables", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "no before-N.json" in proc.stderr

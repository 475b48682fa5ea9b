"""Benchmarks: the smallest measurement runs end to end, prints its table and writes valid JSON (no timings checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_smoke_personalise_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", "personalise", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("measurement"))
    for column in ("figure", "reference (same run)", "ratio", "goal", "result"):
        assert column in header
    assert "personalise: spliced messages per second" in proc.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["meta"]["smoke"] is True and data["meta"]["quick"] is True
    assert data["meta"]["only"] == ["personalise"]
    assert data["meta"]["cores"] >= 1
    rows = data["rows"]
    assert rows and all(row["section"] == "personalise" for row in rows)
    for row in rows:
        assert row["verdict"] in {"met", "MISSED", "info", "not measured"}
        assert isinstance(row["figure"], (int, float)) and row["figure"] > 0
        assert isinstance(row["reference"], (int, float)) and row["reference"] > 0
        assert row["goal"]


def test_unknown_measurement_is_refused() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nonsense"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "unknown measurement" in proc.stderr

"""Rows of figures: each one a figure, the reference it is compared with in the same run, a goal and a verdict."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Row",
    "fmt",
    "info",
    "machine",
    "median",
    "not_measured",
    "print_table",
    "ratio_row",
    "timed",
    "write_json",
]


@dataclass
class Row:
    """One line of the table. `met` is True/False against the goal, None when there is no goal or no figure."""

    section: str
    name: str
    figure: float | None
    unit: str
    reference: float | None = None
    reference_name: str = ""
    ratio: float | None = None
    ratio_unit: str = "x"  # "x" (figure / reference) or "%" (figure / reference x 100)
    goal: str = ""
    met: bool | None = None
    note: str = ""
    samples: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.figure is None or (self.goal and self.met is None):
            return "not measured"  # the figure, or the reference its goal needs, could not be measured
        if self.met is None:
            return "info"
        return "met" if self.met else "MISSED"


def not_measured(section: str, name: str, why: str, *, goal: str = "", reference_name: str = "") -> Row:
    return Row(section, name, None, "", reference_name=reference_name, goal=goal, note=why)


def info(section: str, name: str, figure: float, unit: str, *, note: str = "", **kw: Any) -> Row:
    return Row(section, name, figure, unit, note=note, **kw)


def ratio_row(section: str, name: str, figure: float, unit: str, reference: float | None, reference_name: str, *,
              percent: bool = False, goal: str = "", check: Callable[[float, float | None], bool] | None = None,
              note: str = "", samples: dict[str, Any] | None = None) -> Row:
    """A figure against a reference measured in the same run; `check(figure, ratio)` decides met/missed."""
    ratio = None
    if reference:
        ratio = figure / reference * (100.0 if percent else 1.0)
    met = check(figure, ratio) if check is not None else None
    return Row(section, name, figure, unit, reference, reference_name, ratio, "%" if percent else "x", goal, met,
               note, samples or {})


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes (perf_counter)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 10_000:
        return f"{int(value)} {unit}".rstrip()
    if abs(value) >= 10_000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def _ratio_text(row: Row) -> str:
    if row.ratio is None:
        return "-"
    if row.ratio_unit == "%":
        return f"{row.ratio:.0f} %"
    if row.ratio < 0.01:
        return f"1/{1 / row.ratio:,.0f}x"
    return f"{row.ratio:.2f}x" if row.ratio < 100 else f"{row.ratio:.0f}x"


def _reference_text(row: Row) -> str:
    if row.reference is None:
        return row.reference_name or "-"
    return f"{fmt(row.reference, row.unit)} ({row.reference_name})"


def print_table(rows: Sequence[Row], *, out: Callable[[str], None] = print) -> None:
    """A plain-text table (readable in a terminal and in CI logs), then the notes, numbered."""
    headers = ("measurement", "figure", "reference (same run)", "ratio", "goal", "result")
    cells = []
    notes: list[str] = []
    for row in rows:
        name = f"{row.section}: {row.name}"
        if row.note:
            notes.append(row.note)
            name += f" [{len(notes)}]"
        cells.append((name, fmt(row.figure, row.unit), _reference_text(row), _ratio_text(row), row.goal or "-",
                      row.verdict))
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out(line.rstrip())
    out("  ".join("-" * w for w in widths))
    for c in cells:
        out("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    if notes:
        out("")
        for number, note in enumerate(notes, start=1):
            out(f"[{number}] {note}")


def machine() -> dict[str, Any]:
    """Where the figures come from: cores, CPU model, Python, load at the start."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": [round(x, 2) for x in load]}


def write_json(path: Path, rows: Sequence[Row], meta: dict[str, Any]) -> None:
    data = {"meta": meta, "rows": [dict(asdict(r), verdict=r.verdict) for r in rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")

"""Compare two checkouts' `python -m benchmarks --quick`, run interleaved (A, B, A, B, ...) on this machine.

    python -m benchmarks.compare BEFORE AFTER [--rounds 3] [--only build,ledger] [--keep DIR]
    python -m benchmarks.compare --tables DIR          # the table again, from a kept run's JSON files

BEFORE and AFTER are checkouts (a folder, e.g. a `git worktree add --detach ../old f60cf83`) or, with
`--rev`, git revisions of this repository checked out into benchmarks/.work/compare-<rev> for the run.
Each run is a fresh process `python -m benchmarks --quick --json ...` with PYTHONPATH set to its checkout, so
each side measures its own code with its own benchmark scripts. The load average is recorded before each run.
Both checkouts' `newsletter` and `benchmarks` are byte-compiled first (compile_bytecode): a checkout without
__pycache__ (a fresh worktree, with PYTHONDONTWRITEBYTECODE=1 set) would compile every module from source in
every process it starts, and that alone put ~210 M instructions (+10 %) on one side's `newsletter build`.

The table has one line per figure both sides report (and per same-run reference, marked "ref:"): median,
min and max of each side over the rounds, AFTER's median / BEFORE's median, and a verdict:
  worse     AFTER is worse and the two sides' ranges do not overlap (beyond the rounds' spread)
  better    AFTER is better, ranges do not overlap
  ~         ranges overlap: no difference the rounds can show
Which way is better comes from the unit: rates (".../s") higher, everything else (ms, us, s, MB, msgs) lower.
A figure whose name changed between the two versions is matched through RENAMED.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .project import REPO, WORK

__all__ = ["RENAMED", "compare", "compile_bytecode", "main", "run_interleaved"]

#: Old row name -> new row name, for figures that were renamed, not changed.
RENAMED = {
    "build: stage: import pipeline + render": "build: stage: import jobs.issues + render",
}

#: What f60cf83 (before the issue-12 refactor) can run: the default for --only.
COMMON = "build,personalise,send,scale,ledger"


def _checkout(rev: str) -> Path:
    """A detached worktree of `rev` under benchmarks/.work (named by its commit, so a moved branch gets a new
    one), sharing this checkout's npm mjml."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", f"{rev}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    path = WORK / f"compare-{commit}"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=True)
    modules = WORK / "node_modules"
    target = path / "benchmarks" / ".work" / "node_modules"
    if modules.exists() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(modules)
    return path


def compile_bytecode(checkout: Path) -> list[str]:
    """Write the .pyc files of `checkout`'s own packages, as a first run would if it were allowed to: the folders
    compiled. py_compile writes them whatever PYTHONDONTWRITEBYTECODE says; the imports then only read them."""
    folders = [str(checkout / name) for name in ("newsletter", "benchmarks") if (checkout / name).is_dir()]
    if folders:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-x", r"[/\\]\.work[/\\]", *folders], check=True,
                       stdout=subprocess.DEVNULL)  # not benchmarks/.work: temp projects, other worktrees
    return folders


def run_interleaved(before: Path, after: Path, *, rounds: int, only: str, keep: Path,
                    extra: list[str] | None = None, out=print) -> None:
    """A, B, A, B, ...: each run's JSON into `keep` as before-<n>.json / after-<n>.json, loads in loads.json."""
    keep.mkdir(parents=True, exist_ok=True)
    for checkout in (before, after):  # both sides read bytecode, neither compiles its sources in every process
        out(f"byte-compiling {', '.join(compile_bytecode(checkout))}", flush=True)
    loads: dict[str, list[float]] = {}
    for n in range(1, rounds + 1):
        for side, checkout in (("before", before), ("after", after)):
            load = [round(x, 2) for x in os.getloadavg()]
            loads[f"{side}-{n}"] = load
            out(f"round {n}/{rounds} {side:6} {checkout}  load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}  "
                f"{time.strftime('%H:%M:%S')}", flush=True)
            env = dict(os.environ, PYTHONPATH=str(checkout))
            argv = [sys.executable, "-m", "benchmarks", "--quick", "--only", only,
                    "--json", str(keep / f"{side}-{n}.json"), *(extra or [])]
            with open(keep / f"{side}-{n}.txt", "w", encoding="utf-8") as log:
                code = subprocess.run(argv, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
            if code != 0:
                raise SystemExit(f"{side} round {n} failed (exit {code}); see {keep / f'{side}-{n}.txt'}")
    (keep / "loads.json").write_text(json.dumps(loads, indent=1) + "\n", encoding="utf-8")
    (keep / "checkouts.json").write_text(json.dumps({"before": str(before), "after": str(after)}) + "\n",
                                         encoding="utf-8")


def _figures(path: Path) -> dict[str, tuple[float, str]]:
    """name -> (value, unit) for every figure and every numeric same-run reference in one run's JSON."""
    found: dict[str, tuple[float, str]] = {}
    for row in json.loads(path.read_text(encoding="utf-8"))["rows"]:
        name = f"{row['section']}: {row['name']}"
        name = RENAMED.get(name, name)
        if row["figure"] is not None:
            found[name] = (float(row["figure"]), row["unit"])
        if row["reference"] is not None and row["reference_name"]:
            found[f"{name}  ref: {row['reference_name']}"] = (float(row["reference"]), row["unit"])
    return found


def _higher_is_better(unit: str) -> bool:
    return unit.endswith("/s")


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def compare(keep: Path) -> list[dict]:
    """One dict per figure both sides have: medians, ranges, ratio, verdict."""
    runs: dict[str, list[dict[str, tuple[float, str]]]] = {"before": [], "after": []}
    for side in runs:
        for path in sorted(keep.glob(f"{side}-*.json"), key=lambda p: int(p.stem.split("-")[1])):
            runs[side].append(_figures(path))
    if not runs["before"] or not runs["after"]:
        raise SystemExit(f"{keep}: no before-N.json / after-N.json files")
    names = [n for n in runs["after"][0] if all(n in r for side in runs.values() for r in side)]
    lines = []
    for name in names:
        unit = runs["after"][0][name][1]
        a = [r[name][0] for r in runs["before"]]
        b = [r[name][0] for r in runs["after"]]
        ma, mb = statistics.median(a), statistics.median(b)
        up = _higher_is_better(unit)
        if len(a) < 2 or len(b) < 2:
            verdict = "(1 run)"  # no spread to compare a difference with
        elif (min(b) > max(a)) or (max(b) < min(a)):
            verdict = "better" if (min(b) > max(a)) == up else "worse"
        else:
            verdict = "~"
        lines.append(dict(name=name, unit=unit, before=a, after=b, before_median=ma, after_median=mb,
                          ratio=(mb / ma) if ma else None, verdict=verdict))
    return lines


def print_compare(lines: list[dict], keep: Path, out=print) -> None:
    loads_file = keep / "loads.json"
    if loads_file.exists():
        loads = json.loads(loads_file.read_text(encoding="utf-8"))
        out("load average (1, 5, 15 min) before each run: " +
            "; ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}/{v[2]:.2f}" for k, v in loads.items()))
    checkouts = keep / "checkouts.json"
    if checkouts.exists():
        c = json.loads(checkouts.read_text(encoding="utf-8"))
        out(f"before: {c['before']}\nafter:  {c['after']}")
    rounds = (len(lines[0]["before"]), len(lines[0]["after"])) if lines else (0, 0)
    out(f"rounds: {rounds[0]} before, {rounds[1]} after (interleaved); medians, [min - max]; "
        "ratio = after / before (medians)\n")
    headers = ("figure", "unit", "before median [min - max]", "after median [min - max]", "ratio", "verdict")
    cells = [(ln["name"], ln["unit"] or "-",
              f"{_fmt(ln['before_median'])} [{_fmt(min(ln['before']))} - {_fmt(max(ln['before']))}]",
              f"{_fmt(ln['after_median'])} [{_fmt(min(ln['after']))} - {_fmt(max(ln['after']))}]",
              "-" if ln["ratio"] is None else f"{ln['ratio']:.2f}", ln["verdict"]) for ln in lines]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    out("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    out("  ".join("-" * w for w in widths))
    for c in cells:
        out("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    worse = [ln["name"] for ln in lines if ln["verdict"] == "worse"]
    out(f"\nworse beyond the rounds' spread: {len(worse)}" + ("" if not worse else ":\n  " + "\n  ".join(worse)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", nargs="?", help="checkout folder (or revision with --rev) measured first each round")
    p.add_argument("after", nargs="?", help="checkout folder (or revision with --rev)")
    p.add_argument("--rev", action="store_true", help="BEFORE/AFTER are git revisions, not folders")
    p.add_argument("--rounds", type=int, default=3, help="runs per side (default 3)")
    p.add_argument("--only", default=COMMON, help=f"measurements to run (default: {COMMON})")
    p.add_argument("--keep", type=Path, help="where the runs' JSON and output go (default: a new folder "
                                             "under benchmarks/.work)")
    p.add_argument("--tables", type=Path, metavar="DIR", help="only print the table from a kept folder")
    args = p.parse_args(argv)
    if args.tables:
        print_compare(compare(args.tables), args.tables)
        return 0
    if not (args.before and args.after):
        p.error("give BEFORE and AFTER (or --tables DIR)")
    if args.rev:
        before, after = _checkout(args.before), _checkout(args.after)
    else:
        before, after = Path(args.before).resolve(), Path(args.after).resolve()
        for path in (before, after):
            if not (path / "benchmarks" / "__main__.py").exists():
                p.error(f"{path}: not a checkout with benchmarks/")
    keep = args.keep or WORK / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    run_interleaved(before, after, rounds=args.rounds, only=args.only, keep=keep)
    print()
    print_compare(compare(keep), keep)
    print(f"\nruns kept in {keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m benchmarks`: run the measurements, print the table, optionally write JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import sys
import time
from pathlib import Path

from .report import Row, machine, print_table, write_json

MEASUREMENTS = {
    "build": "benchmarks.bench_build",
    "personalise": "benchmarks.bench_personalise",
    "send": "benchmarks.bench_send",
    "scale": "benchmarks.bench_scale",
    "ledger": "benchmarks.bench_ledger",
    "postfix": "benchmarks.bench_postfix",
    "dkim": "benchmarks.bench_dkim",
    "desk": "benchmarks.bench_desk",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--only", metavar="NAMES", default=",".join(MEASUREMENTS),
                   help=f"comma-separated measurements to run (default: all of {', '.join(MEASUREMENTS)})")
    p.add_argument("--quick", action="store_true", help="fewer runs and messages (about a minute in all)")
    p.add_argument("--smoke", action="store_true",
                   help="the smallest size, to show a measurement runs end to end (its figures mean nothing; "
                        "implies --quick where a measurement has no smoke size)")
    p.add_argument("--messages", type=int, metavar="N", help="messages per send run (default 5000, --quick 500)")
    p.add_argument("--subscribers", type=int, metavar="N",
                   help="subscribers for the scale run (default 100000, --quick 10000)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the rows and the machine as JSON")
    p.add_argument("--install", action="store_true",
                   help="install what the references need first (npm mjml into benchmarks/.work; postfix if root)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in MEASUREMENTS]
    if unknown:
        _parser().error(f"unknown measurement(s) {', '.join(unknown)} (choose from {', '.join(MEASUREMENTS)})")
    if args.install:
        from .tools import install

        install()
    quick = args.quick or args.smoke
    meta = dict(machine(), date=dt.date.today().isoformat(), quick=quick, smoke=args.smoke, only=names,
                command="python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"machine: {meta['cores']} cores, {meta['cpu']}, Python {meta['python']}, "
          f"load {meta['loadavg_at_start']}", flush=True)
    rows: list[Row] = []
    started = time.perf_counter()
    for name in names:
        module = importlib.import_module(MEASUREMENTS[name])
        t = time.perf_counter()
        print(f"{name} ...", flush=True)
        options = {}
        if name in ("send", "ledger", "postfix") and args.messages:
            options["messages"] = args.messages
        if name == "scale" and args.subscribers:
            options["subscribers"] = args.subscribers
        if args.smoke and "smoke" in inspect.signature(module.run).parameters:
            options["smoke"] = True
        rows += module.run(quick=quick, out=lambda s: print(s, flush=True), **options)
        print(f"{name}: {time.perf_counter() - t:.1f} s", flush=True)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    print()
    print_table(rows)
    if args.json:
        write_json(args.json, rows, meta)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

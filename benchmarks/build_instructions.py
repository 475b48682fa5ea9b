"""Instructions (callgrind) of `newsletter build` in two checkouts, split into start-up, imports, build work and exit.

    python -m benchmarks.build_instructions BEFORE AFTER [--inputs own|before] [--keep DIR]

BEFORE and AFTER are checkouts (folders). Each side builds the 10-summary sample issue (its own content,
templates and newsletter.toml with --inputs own; BEFORE's for both with --inputs before, so the two sides
render the same email) with its own code, bytecode compiled first (compare.compile_bytecode). Per side:
  - `python -m newsletter build ISSUE` under callgrind: the whole process, as a user runs it;
  - the same build from a driver that calls os.getpgrp() between stages, with callgrind's
    --dump-before=os_getpgrp: interpreter start-up; importing every module the build loads (listed by a plain
    run first, imported in that order); the build itself (runpy of `newsletter`, as `-m` does); interpreter exit.
Instruction counts do not depend on the machine's load, unlike the wall times of `python -m benchmarks`.
Garbage collections fall where allocation counts trip them, so a collection can move between stages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .compare import compile_bytecode
from .project import ENV, WORK

__all__ = ["main", "measure"]

_MAKE = (
    "import sys\n"
    "from pathlib import Path\n"
    "from benchmarks.project import compose_and_build, make_project\n"
    "print(compose_and_build(make_project(Path(sys.argv[1])), limit=10, approve=False))\n"
)

_DRIVER = '''\
import importlib, json, os, runpy, sys
listing = os.environ.get("NL_LIST_MODULES")
if not listing:
    os.getpgrp()  # end of start-up
    for name in json.loads(open(os.environ["NL_MODULES"]).read()):
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:  # a compiled module's internal helper that cannot be imported by name
                pass
    os.getpgrp()  # end of imports
sys.argv = ["newsletter", "build", os.environ["NL_ISSUE"]]
try:
    runpy.run_module("newsletter", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    if exc.code:
        raise
if listing:
    open(listing, "w").write(json.dumps([m for m in sys.modules if m not in ("__main__", "__mp_main__")]))
else:
    os.getpgrp()  # end of the build
'''

STAGES = ("start-up", "imports", "build work", "exit")


def _env(checkout: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(ENV, PYTHONPATH=str(checkout))
    return env


def _instructions(text: str) -> int:
    return int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))


def _callgrind(argv: list[str], *, cwd: Path, env: dict[str, str], out: Path, dump_before: str | None = None) -> None:
    extra = [f"--dump-before={dump_before}"] if dump_before else []
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *extra, *argv], cwd=cwd, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(checkout: Path, project: Path, issue: str, keep: Path, side: str) -> dict[str, int]:
    """Instructions of one checkout's build of `project`'s `issue`: "whole process" and each of STAGES."""
    env = _env(checkout)
    driver = keep / "driver.py"
    driver.write_text(_DRIVER, encoding="utf-8")
    modules = keep / f"{side}-modules.json"
    subprocess.run([sys.executable, str(driver)], cwd=project, env=dict(env, NL_ISSUE=issue,
                   NL_LIST_MODULES=str(modules)), check=True, stdout=subprocess.DEVNULL)
    whole = keep / f"{side}-whole.out"
    _callgrind([sys.executable, "-m", "newsletter", "build", issue], cwd=project, env=env, out=whole)
    staged = keep / f"{side}-stages.out"
    _callgrind([sys.executable, str(driver)], cwd=project, env=dict(env, NL_ISSUE=issue, NL_MODULES=str(modules)),
               out=staged, dump_before="os_getpgrp")
    figures = {"whole process": _instructions(whole.read_text())}
    parts = [Path(f"{staged}.{n}") for n in (1, 2, 3)] + [staged]
    for stage, part in zip(STAGES, parts):
        figures[stage] = _instructions(part.read_text())
    figures["modules loaded"] = len(json.loads(modules.read_text()))
    return figures


def _project(checkout: Path, root: Path) -> tuple[Path, str]:
    proc = subprocess.run([sys.executable, "-c", _MAKE, str(root)], cwd=checkout, env=_env(checkout), check=True,
                          capture_output=True, text=True)
    folder = Path(proc.stdout.strip().splitlines()[-1])
    return root, str(folder.relative_to(root))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.build_instructions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--inputs", choices=("own", "before"), default="own",
                   help="each side's own sample project (default), or BEFORE's for both")
    p.add_argument("--keep", type=Path, help="keep the callgrind files here (default: a temp folder, removed)")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        p.error("valgrind is not installed (apt-get install valgrind)")
    before, after = args.before.resolve(), args.after.resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    keep = args.keep or Path(tempfile.mkdtemp(prefix="instructions-", dir=WORK))
    keep.mkdir(parents=True, exist_ok=True)
    try:
        results = {}
        shared = _project(before, keep / "project-before") if args.inputs == "before" else None
        for side, checkout in (("before", before), ("after", after)):
            compile_bytecode(checkout)
            project, issue = shared or _project(checkout, keep / f"project-{side}")
            print(f"{side}: {checkout}, project {project}, {time.strftime('%H:%M:%S')}", flush=True)
            results[side] = measure(checkout, project, issue, keep, side)
    finally:
        if args.keep is None:
            shutil.rmtree(keep, ignore_errors=True)
    print(f"\ninputs: {'each side its own sample project' if args.inputs == 'own' else 'BEFORE sample project for both'}")
    print(f"{'':16} {'before':>14} {'after':>14} {'after - before':>15} {'ratio':>6}")
    for name in ("whole process", *STAGES, "modules loaded"):
        a, b = results["before"][name], results["after"][name]
        unit = 1 if name == "modules loaded" else 1e6
        fmt = (lambda v: f"{v:,}") if unit == 1 else (lambda v: f"{v / unit:,.1f} M")
        print(f"{name:16} {fmt(a):>14} {fmt(b):>14} {('+' if b >= a else '-') + fmt(abs(b - a)):>15} {b / a:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

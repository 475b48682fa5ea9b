"""Build: `newsletter build` as a whole process and split by stage, against the npm mjml CLI in the same run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .project import (
    ENV,
    compose_and_build,
    make_project,
    python,
    settings_for,
    temp_dir,
)
from .compare import compile_bytecode
from .report import Row, info, median, ratio_row
from .tools import mjml_cli

__all__ = ["run"]

SECTION = "build"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(ENV)
    return env


def _wall(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def _importtime(argv: list[str], cwd: Path) -> tuple[float, list[tuple[str, float]]]:
    """Total import time (ms, sum of the top-level imports' cumulative times) and the heaviest top-level ones."""
    proc = subprocess.run([python(), "-X", "importtime", *argv], cwd=cwd, env=_env(), check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    top: list[tuple[str, float]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith("  "):  # one space follows the bar: a top-level import
            top.append((name.strip(), int(cumulative) / 1000))
    top.sort(key=lambda item: -item[1])
    return sum(ms for _, ms in top), top


def _stages(root: Path, issue: Path, mjml_out: Path) -> dict[str, Any]:
    proc = subprocess.run([python(), "-m", "benchmarks.bench_build", "--child", str(root), str(issue), str(mjml_out)],
                          cwd=Path(__file__).resolve().parent.parent, env=_env(), check=True,
                          stdout=subprocess.PIPE, text=True)
    return json.loads(proc.stdout)


def _child(root: Path, issue: Path, mjml_out: Path) -> None:
    """In a fresh process, so "cold" is cold: each stage of render_email timed on its own (ms)."""
    t: dict[str, Any] = {}
    start = time.perf_counter()
    from newsletter import render
    from newsletter.jobs import issues as jobs
    from newsletter.settings import load_settings

    t["import_build_modules"] = (time.perf_counter() - start) * 1000
    settings = load_settings(root / "newsletter.toml", env=ENV)
    # The feed reader imports feedparser on first use (f60cf83 did at module level, inside the stage above):
    # timed on its own, so that "load issue" is reading and parsing only, in both versions.
    start = time.perf_counter()
    import feedparser  # noqa: F401

    t["feed_import"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    loaded = jobs.load_issue(settings, issue)
    t["load_issue"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    env = render._environment(str(settings.path(settings.templates_dir)))
    ctx = render._context(loaded, settings)
    mjml_source = render._template(env, "email.mjml.j2", autoescape=True).render(ctx)
    t["jinja"] = (time.perf_counter() - start) * 1000
    mjml_out.write_text(mjml_source, encoding="utf-8")
    start = time.perf_counter()
    html = render.compile_mjml(mjml_source)
    t["mjml_first"] = (time.perf_counter() - start) * 1000
    warm = []
    for _ in range(20):
        start = time.perf_counter()
        render.compile_mjml(mjml_source)
        warm.append((time.perf_counter() - start) * 1000)
    t["mjml_warm"] = median(warm)
    start = time.perf_counter()
    render._premailer_class()
    t["premailer_import"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    render.inline_css(html)
    t["inline_cold"] = (time.perf_counter() - start) * 1000
    warm = []
    for _ in range(5):
        start = time.perf_counter()
        render.inline_css(html)
        warm.append((time.perf_counter() - start) * 1000)
    t["inline_warm"] = median(warm)
    start = time.perf_counter()
    text = render._template(env, "email.txt.j2", autoescape=False).render(ctx)
    text = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"
    t["text_part"] = (time.perf_counter() - start) * 1000
    t["html_bytes"] = len(html.encode())
    print(json.dumps(t))


def _process_rows(root: Path, issue: Path, mjml_file: Path, runs: int) -> list[Row]:
    rows: list[Row] = []
    cli = mjml_cli()
    build_argv = [python(), "-m", "newsletter", "build", str(issue.relative_to(root))]
    builds, clis = [], []
    for _ in range(runs):  # interleaved, so both see the same neighbours on a shared machine
        builds.append(_wall(build_argv, root))
        if cli.ok:
            clis.append(_wall([*cli.argv, str(mjml_file), "-o", str(mjml_file.with_suffix(".cli.html"))], root))
    build_ms = median(builds) * 1000
    goal = "<= 1.0x the mjml CLI call"
    samples = {"build_ms": [round(b * 1000, 1) for b in builds], "mjml_cli_ms": [round(c * 1000, 1) for c in clis]}
    if cli.ok:
        rows.append(ratio_row(SECTION, "`newsletter build` process (10 summaries)", build_ms, "ms",
                              median(clis) * 1000, f"npm mjml {cli.version} CLI, same MJML", goal=goal,
                              check=lambda f, r: r is not None and r <= 1.0, samples=samples,
                              note=f"median of {runs} runs each, interleaved; wall time of the whole process "
                                   "(interpreter start, imports, reading summaries and feed, render, check, writes)"))
    else:
        rows.append(ratio_row(SECTION, "`newsletter build` process (10 summaries)", build_ms, "ms", None,
                              "npm mjml CLI: not measured", goal=goal, note=cli.missing, samples=samples))
    bare = median([_wall([python(), "-c", "pass"], root) for _ in range(runs)]) * 1000
    helps = median([_wall([python(), "-m", "newsletter", "--help"], root) for _ in range(runs)]) * 1000
    rows.append(info(SECTION, "interpreter start (`python -c pass`)", bare, "ms",
                     note="part of every process figure; site-packages .pth files run here"))
    rows.append(info(SECTION, "`newsletter --help` process", helps, "ms"))
    for label, argv in (("--help", ["-m", "newsletter", "--help"]),
                        ("build", ["-m", "newsletter", "build", str(issue.relative_to(root))])):
        total, top = _importtime(argv, root)
        heavy = ", ".join(f"{name} {ms:.0f}" for name, ms in top[:6])
        rows.append(info(SECTION, f"imports of `newsletter {label}` (-X importtime)", total, "ms",
                         note=f"`python -X importtime -m newsletter {label}`: sum of top-level cumulative times "
                              f"(importtime itself adds overhead); heaviest top-level imports, ms: {heavy}",
                         samples={"top": top[:15]}))
    return rows


def _stage_rows(stages: dict[str, Any], cli_ms: float | None, cli_name: str) -> list[Row]:
    rows = [
        info(SECTION, "stage: import jobs.issues + render", stages["import_build_modules"], "ms"),
        info(SECTION, "stage: feedparser import (the feed reader's, on first use)", stages["feed_import"], "ms"),
        info(SECTION, "stage: load issue (summaries + feed)", stages["load_issue"], "ms",
             note="feedparser already imported (row above): reading and parsing only"),
        info(SECTION, "stage: Jinja (first render, incl. template compile)", stages["jinja"], "ms"),
        ratio_row(SECTION, "stage: MJML compile, mjml-python in-process (warm)", stages["mjml_warm"], "ms", cli_ms,
                  cli_name, note=f"first call {stages['mjml_first']:.2f} ms; the CLI figure is one whole `mjml` "
                                 "process (node start + compile + write)"),
        info(SECTION, "stage: premailer + cssutils import", stages["premailer_import"], "ms"),
        ratio_row(SECTION, "stage: CSS inlining, cold (first call)", stages["inline_cold"], "ms",
                  stages["inline_warm"], "same call warm"),
        info(SECTION, "stage: CSS inlining, warm", stages["inline_warm"], "ms"),
        info(SECTION, "stage: text part", stages["text_part"], "ms"),
    ]
    return rows


def _flat_rows(work: Path, recipients: int) -> list[Row]:
    """MJML compiles once per issue: count compiles, and per-recipient cost with 3 vs 30 summaries."""
    import newsletter.render as render_module
    from newsletter.jobs.delivery import personaliser_for
    from newsletter.models import Subscriber

    from .project import subscriber_rows

    compiles = {"n": 0}
    original = render_module.mjml2html

    def counting(*args: Any, **kwargs: Any) -> str:
        compiles["n"] += 1
        return original(*args, **kwargs)

    people = [Subscriber(id=i, email=e, name=n) for i, (e, n) in enumerate(subscriber_rows(recipients), start=1)]
    per_recipient: dict[int, float] = {}
    sizes: dict[int, int] = {}
    during_build: dict[int, int] = {}
    during_send = 0
    render_module.mjml2html = counting  # type: ignore[assignment]
    try:
        for count, extra in ((3, 0), (30, 30)):
            root = make_project(work / f"flat-{count}", extra_summaries=extra)
            compiles["n"] = 0
            folder = compose_and_build(root, limit=count)
            during_build[count] = compiles["n"]
            compiles["n"] = 0
            p = personaliser_for(settings_for(root), folder)
            sizes[count] = len(p.message(people[0]).data)
            rounds = []
            for _ in range(5):
                start = time.perf_counter()
                for person in people:
                    p.message(person)
                rounds.append((time.perf_counter() - start) / len(people) * 1e6)
            per_recipient[count] = min(rounds)
            during_send += compiles["n"]
    finally:
        render_module.mjml2html = original  # type: ignore[assignment]
    growth = sizes[30] / sizes[3]
    return [
        ratio_row(SECTION, "MJML compiles: build + personalise, per issue", float(during_build[30] + during_send),
                  "compiles", None, f"{recipients} recipients x 2 issues", goal="1 per issue, 0 per recipient",
                  check=lambda f, r: during_build[3] == 1 and during_build[30] == 1 and during_send == 0,
                  note=f"counted by wrapping mjml2html: build compiled {during_build[3]} (3 summaries) and "
                       f"{during_build[30]} (30 summaries); personalising {2 * recipients} messages compiled "
                       f"{during_send}"),
        ratio_row(SECTION, "personalise per recipient, 30 summaries", per_recipient[30], "us", per_recipient[3],
                  "3 summaries", goal="<= 1.5x (flat)", check=lambda f, r: r is not None and r <= 1.5,
                  note=f"best of 5 rounds of {recipients}; the message grows {growth:.1f}x "
                       f"({sizes[3] / 1024:.0f} -> {sizes[30] / 1024:.0f} KB): what grows is copying bytes, "
                       "not compiling"),
    ]


def _compile_package() -> str:
    """Byte-compile the checkout whose `newsletter` package the child processes import (without importing it
    here; compare.compile_bytecode), so every process figure reads bytecode as an installed or once-run copy
    does: with PYTHONDONTWRITEBYTECODE=1 and no __pycache__ (a fresh worktree), each `newsletter build` compiled
    its ~30 modules from source (~10 % more work)."""
    spec = importlib.util.find_spec("newsletter")
    if not (spec and spec.origin):
        return "nothing"
    return ", ".join(compile_bytecode(Path(spec.origin).parent.parent))


def run(*, quick: bool, out=print) -> list[Row]:
    runs = 3 if quick else 7
    rows: list[Row] = []
    out(f"  build: byte-compiling {_compile_package()} ...")
    with temp_dir("build-") as work:
        root = make_project(work / "site")
        issue = compose_and_build(root, limit=10, approve=False)
        mjml_file = work / "email.mjml"
        out("  build: stages in a fresh process ...")
        stages = _stages(root, issue, mjml_file)
        out(f"  build: {runs} x `newsletter build` and {runs} x mjml CLI ...")
        process = _process_rows(root, issue, mjml_file, runs)
        cli_ms = process[0].reference
        rows += process
        rows += _stage_rows(stages, cli_ms, process[0].reference_name if cli_ms else "npm mjml CLI: not measured")
        out("  build: MJML once per issue (3 vs 30 summaries) ...")
        rows += _flat_rows(work, 500 if quick else 2000)
    return rows


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    _child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))

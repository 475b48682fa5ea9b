"""The CLI end to end, as an editor runs it: compose, build, check, preview, bad input.

The first test spawns `python -m newsletter` for every step, as an editor's shell does; the others run
the same entry point in this process (cli_inprocess), which is the same code without the start-ups.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli_inprocess import run_newsletter

REPO = Path(__file__).resolve().parent.parent


def spawn(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m newsletter ARGS` in a new process."""
    return subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=project, capture_output=True,
                          text=True, timeout=120)


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` in this process."""
    return run_newsletter(args, cwd=project)


def test_compose_build_check_preview(project: Path) -> None:
    r = spawn(project, "compose", "--date", "2026-11-25")
    assert r.returncode == 0, r.stderr
    assert "issues/2026-11-25/issue.toml" in r.stdout
    r = spawn(project, "build", "issues/2026-11-25")
    assert r.returncode == 0, r.stderr
    build = project / "issues/2026-11-25/build"
    assert (build / "email.html").stat().st_size > 10_000
    assert (build / "email.txt").exists() and (build / "preview.html").exists()
    r = spawn(project, "check", "issues/2026-11-25", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["html_bytes"] < 102 * 1024
    r = spawn(project, "preview", "2026-11-25")
    assert r.returncode == 0 and r.stdout.strip().endswith("preview.html")
    assert "__NL_" not in Path(r.stdout.strip()).read_text()


def test_check_exits_non_zero_on_errors(project: Path) -> None:
    assert run(project, "compose", "--date", "2026-11-25").returncode == 0
    toml = project / "issues/2026-11-25/issue.toml"
    toml.write_text(toml.read_text().replace('subject = "', 'subject = "' + "very long " * 10))
    r = run(project, "check", "issues/2026-11-25")
    assert r.returncode == 1
    assert "subject" in r.stdout and "check failed" in r.stderr


def test_compose_twice_refuses(project: Path) -> None:
    assert run(project, "compose", "--date", "2026-11-25").returncode == 0
    r = run(project, "compose", "--date", "2026-11-25")
    assert r.returncode == 1 and "--force" in r.stderr


def test_broken_summary_is_one_clear_line_and_nothing_written(project: Path) -> None:
    (project / "content" / "broken.md").write_bytes("---\ntitle: caf\xe9\n---\n".encode("latin-1"))
    r = run(project, "compose", "--date", "2026-11-25")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "broken.md" in lines[0] and "UTF-8" in lines[0]
    assert not any((project / "issues").iterdir())
    r = run(project, "compose", "--date", "2026-11-25", "--skip-invalid")
    assert r.returncode == 0 and "warning" in r.stderr and "broken.md" in r.stderr


def test_bad_date_and_unknown_issue(project: Path) -> None:
    r = run(project, "compose", "--date", "11/25/2026")
    assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr
    r = run(project, "build", "issues/1999-01-01")
    assert r.returncode == 1 and "1999-01-01" in r.stderr and "Traceback" not in r.stderr


def test_bad_setting_names_the_key(project: Path) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\ntimezone_typo = "x"\n')
    r = run(project, "compose")
    assert r.returncode == 1 and "timezone_typo" in r.stderr
    cfg.write_text(cfg.read_text().replace('timezone_typo = "x"', 'smtp_password = "hunter2"'))
    r = run(project, "compose")
    assert r.returncode == 1 and "environment" in r.stderr and "hunter2" not in r.stderr


def test_urls_and_addresses_in_settings_cannot_inject_headers(project: Path) -> None:
    cfg = project / "newsletter.toml"
    base = cfg.read_text()
    for line, key in [('public_base_url = "https://x.example.org/n\\r\\nBcc: victim@evil.example"', "public_base_url"),
                      ('public_base_url = "http://news.example.org"', "public_base_url"),
                      ('unsubscribe_mailto = "u@x.example.org>\\r\\nX-Evil: 1"', "unsubscribe_mailto")]:
        cfg.write_text(base.replace('public_base_url = "https://ms-research.example.org/newsletter"', line))
        r = run(project, "compose", "--date", "2026-11-25")
        assert r.returncode == 1 and key in r.stderr and "Traceback" not in r.stderr, r.stderr

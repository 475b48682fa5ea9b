"""Once an issue went to anyone, compose --force, build and approve refuse it and say how to send a correction."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cli_inprocess import run_newsletter

ISSUE = "issues/2026-11-25"


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` in `project` (in this process: see cli_inprocess)."""
    return run_newsletter(args, cwd=project)


def test_a_sent_issue_is_frozen(project: Path) -> None:
    for step in (["compose", "--date", "2026-11-25"], ["build", ISSUE], ["approve", ISSUE],
                 ["subscribers", "import", "content/subscribers.csv"]):
        r = run(project, *step)
        assert r.returncode == 0, (step, r.stderr)
    before_build = run(project, "build", ISSUE)  # not sent yet: rebuilding is fine
    assert before_build.returncode == 0, before_build.stderr
    assert run(project, "approve", ISSUE).returncode == 0
    r = run(project, "send", ISSUE)
    assert r.returncode == 0, r.stderr
    toml = project / ISSUE / "issue.toml"
    html = project / ISSUE / "build" / "email.html"
    approval = project / ISSUE / "approval.json"
    frozen = {p: p.read_bytes() for p in (toml, html, approval, project / ISSUE / "build" / "build.json")}
    toml.write_text(toml.read_text().replace('subject = "', 'subject = "Edited after sending: '))
    edited = toml.read_bytes()
    frozen[toml] = edited
    for step in (["compose", "--date", "2026-11-25", "--force"], ["build", ISSUE], ["approve", ISSUE]):
        r = run(project, *step)
        assert r.returncode == 1, step
        assert "already sent to 8 subscriber(s)" in r.stderr and "Traceback" not in r.stderr
        assert "newsletter compose --correction-of 2026-11-25" in " ".join(r.stderr.split())
    assert {p: p.read_bytes() for p in frozen} == frozen  # nothing rewritten
    r = run(project, "check", ISSUE)  # reading is still allowed: it shows the edit would change the subject
    assert "Traceback" not in r.stderr
    r = run(project, "compose", "--correction-of", ISSUE)
    assert r.returncode == 0, r.stderr
    assert "issues/2026-11-25-correction/issue.toml" in r.stdout
    fix = project / "issues/2026-11-25-correction"
    text = (fix / "issue.toml").read_text()
    assert 'subject = "Correction: Edited after sending: ' in text
    (fix / "issue.toml").write_text(re.sub(r'(?m)^subject = .*$', 'subject = "Correction: pregnancy and MS"', text))
    for step in (["build", str(fix)], ["approve", str(fix)], ["send", str(fix)]):
        r = run(project, *step)
        assert r.returncode == 0, (step, r.stderr)
    assert "8" in run(project, "status", str(fix)).stdout


def test_publish_resumes_a_partly_sent_issue_without_rebuilding(project: Path) -> None:
    r = run(project, "publish", "--date", "2026-11-25")
    assert r.returncode == 0, r.stderr
    built = (project / ISSUE / "build" / "build.json").read_bytes()
    r = run(project, "publish", "--date", "2026-11-25")
    assert r.returncode == 0, r.stderr
    assert (project / ISSUE / "build" / "build.json").read_bytes() == built

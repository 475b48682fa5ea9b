"""Running the sample in a fresh clone leaves the repository clean: what publish writes is ignored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to make a clone")
def test_publish_leaves_a_fresh_clone_clean(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    tracked = git(REPO, "ls-files", "-z").split("\0")
    # The working tree's files (committed or not): a fresh clone of this branch as it will be committed.
    for name in filter(None, tracked + git(REPO, "ls-files", "-z", "--others", "--exclude-standard").split("\0")):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-m", "newsletter", "publish"], cwd=clone, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert any(p.name != "2026-09-14" for p in (clone / "issues").iterdir())  # publish made today's issue
    assert git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    assert "issues/2026-09-14/issue.toml" in git(clone, "ls-files", "issues")  # the sample stays tracked

"""`newsletter --help` stays cheap: the CLI modules load the settings (and what they pull in: TOML, markdown,
token signing) only when a command runs, not to print help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_PROBE = (
    "import sys, newsletter.cli\n"
    "heavy = sorted(m for m in ('newsletter.settings', 'newsletter.text', 'newsletter.tokens', 'markdown_it',"
    " 'itsdangerous', 'tomllib') if m in sys.modules)\n"
    "print(','.join(heavy))\n"
)


def test_importing_the_cli_does_not_load_the_settings() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported by newsletter.cli at start-up: {proc.stdout.strip()}"


def test_a_command_still_loads_them_when_it_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(tmp_path / "missing.toml"), "compose"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "missing.toml" in proc.stderr  # load_settings ran, named the file and the CLI reported it in one line
    assert "Traceback" not in proc.stderr

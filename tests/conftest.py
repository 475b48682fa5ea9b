"""Shared fixtures: a throw-away copy of the sample project, loaded settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from newsletter.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATE = "2026-11-25"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled sample content, templates and settings in a fresh folder with no issues yet."""
    root = tmp_path / "site"
    root.mkdir()
    shutil.copytree(REPO / "content", root / "content")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    (root / "issues").mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    monkeypatch.delenv("NEWSLETTER_TRANSPORT", raising=False)
    monkeypatch.setenv("NEWSLETTER_SECRET", "test-secret-not-for-production-use")
    return root


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "newsletter.toml", env={"NEWSLETTER_SECRET": "test-secret-not-for-production-use"})

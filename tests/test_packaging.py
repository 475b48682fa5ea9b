"""What a non-editable install ships: every package folder under newsletter/ is listed in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_for_setuptools() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "newsletter").rglob("__init__.py")}
    assert found - listed == set(), "not shipped by `pip install .`: add these to [tool.setuptools] packages"
    assert listed - found == set(), "listed in pyproject.toml but not a package folder"

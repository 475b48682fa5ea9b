"""The crash-loop engine (scripts/crash_loop.py) loaded once as a module, for the tests that drive it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "crash_loop.py"


def _load_engine() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_loop", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("crash_loop", module)
    spec.loader.exec_module(module)
    return module


crash_loop = sys.modules.get("crash_loop") or _load_engine()

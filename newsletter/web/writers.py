"""One database writer at a time per process, for SQLite: a queue, not state.

SQLite admits one writer at a time. A writer that finds the database locked sleeps and retries
(its busy handler), so with dozens of web threads waiting, some keep losing the race and give up
after `busy_timeout` (the visitor gets a 500). Taking this process's lock first lines the threads
up; only one of them at a time meets the other processes (and a running send) at SQLite's lock.
PostgreSQL has row locks and its own queue: there the context manager does nothing.
"""

from __future__ import annotations

import contextlib
import threading
from contextlib import AbstractContextManager
from typing import Any

from ..settings import Settings
from ..store import SQLiteStore, open_store

__all__ = ["writer"]

_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def writer(settings: Settings) -> AbstractContextManager[Any]:
    """Hold it around a unit of work that writes: the same lock for every part of the app on one SQLite file."""
    store = open_store(settings)
    if not isinstance(store, SQLiteStore):
        return contextlib.nullcontext()
    key = str(store.path.resolve())
    with _GUARD:
        return _LOCKS.setdefault(key, threading.Lock())

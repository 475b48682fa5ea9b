"""SQLite WAL checkpoints on a thread of their own while a sender commits.

A commit that takes the WAL past `wal_autocheckpoint` pages (newsletter.store.sqlite) runs the checkpoint
itself, on the thread that committed: it copies the pages into the database file and syncs both files, two
fdatasyncs of ~4 ms each on an ordinary disk. In the send loop that thread is the one that hands messages
to the transports, so while it checkpoints (about every 30 results) they finish what they have and wait.

`BackgroundCheckpoints` turns the automatic checkpoint off for the sender's connection and checkpoints from
a second connection on its own thread instead, after every `every` results the sender recorded (32: what
the automatic checkpoint's 128 pages held when each result had a commit of its own, about 4 pages), as
PASSIVE checkpoints: they never block or fail the writer, which goes on committing meanwhile. So what a
power loss can undo stays about 32 results (plus those committed while a checkpoint runs), even when the
results of several connections share one commit.
If that thread cannot open the file or a checkpoint fails, the sender's connection gets its automatic
checkpoint back (`check`, from the sender's thread) and the send goes on as before. PostgreSQL: nothing.

A PASSIVE checkpoint copies pages but never lets the WAL start again from its beginning: SQLite restarts the
log only when a write transaction begins with every frame already copied, and a sender that commits back to
back always has new frames by then. So on its own the WAL grew for the whole send (773 MB for 100,000
messages, ~7.7 KB each; file growth and a larger WAL index cost ~15 % more CPU per message by 200,000).
Once the WAL holds `restart_frames` frames the thread therefore asks for a RESTART checkpoint: it waits for
the sender's current transaction to commit, copies the few frames the PASSIVE one left, and makes the next
write start the log again; the sender waits for that one checkpoint (a few milliseconds at most, once
every ~2,000 messages with the default).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from newsletter.store.dbapi import dialect
from newsletter.store.sqlite import BUSY_TIMEOUT_SECONDS, WAL_AUTOCHECKPOINT_PAGES

__all__ = ["BackgroundCheckpoints", "RESULTS_PER_CHECKPOINT", "RESTART_FRAMES", "checkpoint"]

#: Recorded results between checkpoints (a result committed on its own adds ~4 WAL pages: 128 pages).
RESULTS_PER_CHECKPOINT = 32
#: WAL frames (pages) after which the thread restarts the log: 16 MB with 4 KB pages.
RESTART_FRAMES = 4096
_POLL = 0.01  # seconds between looks at the count


def checkpoint(checker: sqlite3.Connection, restart_frames: int | None) -> bool:
    """A PASSIVE checkpoint, then a RESTART if the WAL held `restart_frames` frames or more (waiting, up to the
    connection's busy timeout, for the writer's transaction to end). True if the log was restarted."""
    _, frames, _ = checker.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if restart_frames is None or frames < restart_frames:
        return False
    busy = checker.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
    return not busy  # busy: the writer held on past the timeout; the next checkpoint tries again


class BackgroundCheckpoints:
    """While open: the WAL of `conn`'s database is checkpointed by a thread of its own (SQLite only).

    `recorded()` counts the sender's recorded results (read from the checkpoint thread; a plain int read)."""

    def __init__(self, conn: Any, recorded: Callable[[], int], *, every: int = RESULTS_PER_CHECKPOINT,
                 restart_frames: int | None = RESTART_FRAMES) -> None:
        self.conn, self.recorded, self.every = conn, recorded, max(1, every)
        self.restart_frames = restart_frames  # None: PASSIVE checkpoints only (tests show what that does)
        self.failed: BaseException | None = None
        self.checkpoints = 0
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._restored = True
        if dialect(conn) != "sqlite":
            return
        try:
            row = conn.execute("PRAGMA database_list").fetchone()
            path = row[2] if row else ""
            if not path:
                return  # an in-memory database: no WAL
            checker = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
        except sqlite3.Error:
            return  # the automatic checkpoint stays on
        try:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error:
            checker.close()
            return
        self._restored = False
        self._thread = threading.Thread(target=self._run, args=(checker,), name="newsletter-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self, checker: sqlite3.Connection) -> None:
        last = self.recorded()
        try:
            while not self._stop.wait(_POLL):
                now = self.recorded()
                if now - last >= self.every:
                    last = now
                    self.restarts += checkpoint(checker, self.restart_frames)
                    self.checkpoints += 1
        except sqlite3.Error as exc:
            self.failed = exc
        finally:
            checker.close()

    def check(self) -> None:
        """On the sender's thread: if the checkpoint thread failed, give the connection its own back."""
        if self.failed is not None and not self._restored:
            self._restore()

    def close(self) -> None:
        """Stop the thread (a checkpoint under way finishes first) and restore the automatic checkpoint."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if not self._restored:
            self._restore()

    def _restore(self) -> None:
        self._restored = True
        try:
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        except sqlite3.Error:
            pass  # the connection is failing anyway: its next statement says why

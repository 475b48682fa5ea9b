"""WAL checkpoints on a thread of their own while a sender commits (newsletter.store.checkpoints), on real files."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from newsletter.store import sqlite as db
from newsletter.store.checkpoints import BackgroundCheckpoints, checkpoint


def _autocheckpoint(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_the_thread_checkpoints_while_the_sender_commits(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.db"
    conn = db.connect(path)
    conn.execute("CREATE TABLE t (n INTEGER, pad TEXT)")
    conn.commit()
    commits = [0]
    background = BackgroundCheckpoints(conn, lambda: commits[0], every=10)
    try:
        assert _autocheckpoint(conn) == 0  # the sender's commits never checkpoint now
        for n in range(200):
            conn.execute("INSERT INTO t VALUES (?, ?)", (n, "x" * 3000))
            conn.commit()
            commits[0] += 1
            time.sleep(0.001)
        deadline = time.monotonic() + 5
        while background.checkpoints < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert background.failed is None
        assert background.checkpoints >= 10  # ~one per 10 commits
    finally:
        background.close()
    assert _autocheckpoint(conn) == db.WAL_AUTOCHECKPOINT_PAGES  # given back
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 200
    conn.close()


def test_without_the_thread_the_automatic_checkpoint_stays(tmp_path: Path) -> None:
    memory = sqlite3.connect(":memory:")  # no file, no WAL: nothing to do
    background = BackgroundCheckpoints(memory, lambda: 0)
    background.close()
    assert background.checkpoints == 0 and _autocheckpoint(memory) == 1000  # SQLite's default, untouched
    memory.close()


def test_a_failed_checkpoint_thread_gives_the_sender_its_own_checkpoints_back(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.db"
    conn = db.connect(path)
    background = BackgroundCheckpoints(conn, lambda: 0)
    try:
        assert _autocheckpoint(conn) == 0
        background.check()
        assert _autocheckpoint(conn) == 0  # nothing failed: still off
        background.failed = sqlite3.OperationalError("disk I/O error")  # what the thread records on an error
        background.check()  # the sender's thread notices at its next tick
        assert _autocheckpoint(conn) == db.WAL_AUTOCHECKPOINT_PAGES
    finally:
        background.close()
        conn.close()


def test_a_send_gives_the_connection_its_automatic_checkpoint_back(tmp_path: Path) -> None:
    from smtp_servers import simple_message

    from newsletter.send import SendPolicy, send_issue
    from newsletter.store import subscribers
    from newsletter.transports.memory import MemoryTransport

    path = tmp_path / "newsletter.db"
    conn = db.connect(path)
    for i in range(300):
        subscribers.add(conn, f"reader{i}@example.com", f"Reader {i}")
    report = send_issue(conn, "2024-05-06", make_message=lambda s: simple_message("2024-05-06", s),
                        transport_factory=MemoryTransport, policy=SendPolicy(connections=2))
    assert report.sent == 300
    assert _autocheckpoint(conn) == db.WAL_AUTOCHECKPOINT_PAGES
    conn.close()


def _wal_growth(tmp_path: Path, restart_frames: int | None) -> int:
    """The largest the WAL got (bytes) over 30 rounds of a sender that always has a write transaction open when
    the checkpoint runs (as in a send, where the next results are recorded while the last commit is copied):
    each round commits 20 rows, opens the next transaction, and has a checkpoint run on another connection;
    that one finishes after the sender's commit."""
    path = tmp_path / f"restart-{restart_frames}.db"
    conn = db.connect(path)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (n INTEGER, pad TEXT)")
    conn.commit()
    checker = sqlite3.connect(path, timeout=10, check_same_thread=False)
    wal = Path(f"{path}-wal")
    largest, restarts = 0, []
    for round_ in range(30):
        for n in range(20):
            conn.execute("INSERT INTO t VALUES (?, ?)", (round_ * 100 + n, "x" * 3000))
            conn.commit()
        conn.execute("INSERT INTO t VALUES (?, ?)", (round_ * 100 + 99, "open"))  # the next transaction
        if restart_frames is None:  # PASSIVE only: it never waits, so it runs here, inside the open transaction
            restarts.append(checkpoint(checker, None))
            conn.commit()
        else:  # a RESTART waits for the open transaction: on a thread, while this one commits
            thread = threading.Thread(target=lambda: restarts.append(checkpoint(checker, restart_frames)))
            thread.start()
            time.sleep(0.02)
            conn.commit()
            thread.join()
        largest = max(largest, wal.stat().st_size)
    checker.close()
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 30 * 21
    conn.close()
    assert any(restarts) == (restart_frames is not None)
    return largest


def test_the_wal_is_restarted_so_it_stays_small(tmp_path: Path) -> None:
    """PASSIVE checkpoints alone never let a sender that commits back to back start the WAL over (SQLite restarts
    the log only when a write transaction begins with every frame copied): it grows for the whole send. With a
    RESTART once it holds 64 frames, it stays within one round of that."""
    grown = _wal_growth(tmp_path, None)
    bounded = _wal_growth(tmp_path, 64)
    assert grown > 30 * 20 * 3000  # every row of every round is still in the WAL
    assert bounded < (64 + 2 * 21 * 2) * 4200, (bounded, grown)  # 64 frames and about a round (2 pages a row)

"""The database and the send ledger: the SQLite file's pragmas and refusals, then claims, resume-as-a-query and
batched commits on both stores (the `store` fixture: SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.errors import LedgerError
from newsletter.store import Connection, IntegrityError, Store, ledger, sqlite as db, subscribers
from store_support import Counting, in_threads, pg_database, pg_template, second, store  # noqa: F401 - fixtures

ISSUE = "2024-05-06"


@pytest.fixture()
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "newsletter.db"


@pytest.fixture()
def conn(store: Store) -> Iterator[Connection]:
    with store.connection() as connection:
        for i in range(1, 7):
            subscribers.add(connection, f"user{i}@example.com")
        yield connection


def statuses(store: Store) -> dict[int, str]:
    """What another connection sees: only what was committed."""
    with second(store) as other:
        return dict(other.execute("SELECT subscriber_id, status FROM ledger WHERE issue_id = ?", (ISSUE,)).fetchall())


# -- db.connect --------------------------------------------------------------------------------


def test_connect_applies_pragmas_and_schema(path: Path) -> None:
    conn = db.connect(path)
    assert path.exists()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL (commits per result; see db.py)
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"subscribers", "ledger", "events"} <= tables
    assert isinstance(conn.execute("SELECT 1 AS one").fetchone()["one"], int)  # sqlite3.Row
    conn.close()
    db.connect(path).close()  # idempotent


def test_constraints_are_enforced(conn: Connection) -> None:
    for statement in ("INSERT INTO ledger (issue_id, subscriber_id, status) VALUES (?, 999, 'claimed')",
                      "INSERT INTO ledger (issue_id, subscriber_id, status) VALUES (?, 1, 'maybe')",
                      "UPDATE subscribers SET status = 'gone' WHERE id = 1 AND ? != ''"):
        with pytest.raises(IntegrityError):
            conn.execute(statement, (ISSUE,))
        conn.rollback()


def test_unusable_files_raise_ledger_error_naming_the_path(tmp_path: Path) -> None:
    not_db = tmp_path / "notes.db"
    not_db.write_text("this is not a database" * 100)
    with pytest.raises(LedgerError, match="notes.db.*not an SQLite database"):
        db.connect(not_db)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    with pytest.raises(LedgerError, match="folder.db"):
        db.connect(folder)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LedgerError, match="cannot create the folder"):
        db.connect(blocker / "sub" / "x.db")


def test_newer_schema_is_refused(path: Path) -> None:
    db.connect(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(LedgerError, match="newer"):
        db.connect(path)


def test_locked_database_raises_ledger_error(path: Path) -> None:
    path.parent.mkdir(parents=True)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LedgerError, match="locked"):
            db.connect(path, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_many_connections_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # SQLite answers a journal-mode switch that races another one with SQLITE_BUSY at once (no busy handler):
    # eight threads opening a fresh file failed about one round in thirty before connect retried the switch.
    for round_ in range(40):
        path = tmp_path / f"r{round_}" / "newsletter.db"
        assert in_threads(lambda: db.connect(path).close(), 8) == [], f"round {round_}"  # noqa: B023 - joined here


# -- claims and pending ------------------------------------------------------------------------


def test_claim_is_committed_and_only_for_subscribed(conn: Connection, store: Store) -> None:
    subscribers.unsubscribe(conn, 2)
    claimed = ledger.claim_batch(conn, ISSUE, [1, 2, 3])
    assert claimed == [1, 3]
    assert not conn.in_transaction
    assert statuses(store) == {1: "claimed", 3: "claimed"}


def test_claim_returns_crash_left_and_deferred_rows(conn: Connection) -> None:
    ledger.claim_batch(conn, ISSUE, [1, 2, 3, 4])
    ledger.mark_sent(conn, ISSUE, 1, "m1@x")
    ledger.mark_deferred(conn, ISSUE, 2, 451, "try later")
    ledger.mark_failed(conn, ISSUE, 3, 550, "5.1.1 no such user")
    conn.commit()
    # Row 4 stays 'claimed', as if the process died after handing it to the server.
    result = ledger.claim(conn, ISSUE, [1, 2, 3, 4, 5])
    assert result.claimed == (2, 4, 5)
    assert result.resumed == frozenset({4})


def pending_ids(conn: Connection, issue_id: str, *, batch: int = 500) -> Iterator[int]:
    """The ids of ledger.pending_subscribers, streamed as it streams them."""
    return (subscriber.id for subscriber in ledger.pending_subscribers(conn, issue_id, batch=batch))


def test_pending_is_a_query(conn: Connection) -> None:
    assert list(pending_ids(conn, ISSUE, batch=2)) == [1, 2, 3, 4, 5, 6]
    ledger.claim_batch(conn, ISSUE, [1, 2, 3, 4])
    ledger.mark_sent(conn, ISSUE, 1, "m1@x")
    ledger.mark_failed(conn, ISSUE, 2, 550, "no")
    ledger.mark_deferred(conn, ISSUE, 3, 451, "later")
    subscribers.unsubscribe(conn, 6)
    assert list(pending_ids(conn, ISSUE, batch=2)) == [3, 4, 5]
    assert list(pending_ids(conn, "another-issue")) == [1, 2, 3, 4, 5]
    assert ledger.counts(conn, ISSUE) == ledger.LedgerCounts(sent=1, deferred=1, failed=1, claimed=1, remaining=3)


def test_pending_streams_in_pages(conn: Connection) -> None:
    counting = Counting(conn, "LIMIT")
    ids = pending_ids(counting, ISSUE, batch=4)
    assert next(ids) == 1
    assert counting.count == 1
    assert list(ids) == [2, 3, 4, 5, 6]
    assert counting.count == 2


def test_marks_record_attempts_codes_and_times(conn: Connection) -> None:
    ledger.claim_batch(conn, ISSUE, [1, 2])
    ledger.mark_deferred(conn, ISSUE, 1, 451, "greylisted")
    ledger.claim_batch(conn, ISSUE, [1])
    ledger.mark_sent(conn, ISSUE, 1, "abc@example.com")
    ledger.mark_failed(conn, ISSUE, 2, 550, "5.1.1 unknown user")
    rows = {r["subscriber_id"]: r for r in conn.execute("SELECT * FROM ledger")}
    assert rows[1]["status"] == "sent" and rows[1]["attempts"] == 2 and rows[1]["message_id"] == "abc@example.com"
    assert rows[1]["code"] is None and rows[1]["sent_at"].endswith("+00:00")
    assert rows[2]["status"] == "failed" and rows[2]["code"] == 550 and rows[2]["reason"] == "5.1.1 unknown user"
    assert rows[2]["sent_at"] is None and rows[2]["claimed_at"] and rows[2]["updated_at"]


def test_marks_refuse_unclaimed_or_final_rows(conn: Connection) -> None:
    with pytest.raises(LedgerError, match="never claimed"):
        ledger.mark_sent(conn, ISSUE, 1, "x@y")
    ledger.claim_batch(conn, ISSUE, [1])
    ledger.mark_sent(conn, ISSUE, 1, "x@y")
    with pytest.raises(LedgerError, match="already 'sent'"):
        ledger.mark_failed(conn, ISSUE, 1, 550, "late")


def test_release_undoes_unsent_claims(conn: Connection) -> None:
    ledger.claim_batch(conn, ISSUE, [1, 2])
    ledger.mark_deferred(conn, ISSUE, 2, 451, "later")
    ledger.claim_batch(conn, ISSUE, [1, 2])
    ledger.release(conn, ISSUE, [1, 2])
    assert dict(conn.execute("SELECT subscriber_id, status FROM ledger").fetchall()) == {2: "deferred"}
    assert conn.execute("SELECT reason FROM ledger WHERE subscriber_id = 2").fetchone()[0] == "later"


# -- the Ledger wrapper: batched commits ------------------------------------------------------


def test_results_are_committed_in_batches(conn: Connection, store: Store) -> None:
    book = ledger.Ledger(conn, ISSUE, commit_every=3, commit_interval=3600)
    assert book.claim_batch([1, 2, 3, 4]) == [1, 2, 3, 4]
    book.mark_sent(1, "m1")
    book.mark_sent(2, "m2")
    assert statuses(store) == {1: "claimed", 2: "claimed", 3: "claimed", 4: "claimed"}
    book.mark_sent(3, "m3")
    assert statuses(store)[3] == "sent"
    book.mark_sent(4, "m4")
    assert statuses(store)[4] == "claimed"
    book.claim_batch([5])  # a claim commits the results recorded before it
    assert statuses(store)[4] == "sent" and statuses(store)[5] == "claimed"


def test_results_are_committed_after_the_interval(conn: Connection, store: Store) -> None:
    now = [0.0]
    book = ledger.Ledger(conn, ISSUE, commit_every=50, commit_interval=0.5, clock=lambda: now[0])
    book.claim_batch([1, 2])
    book.mark_sent(1, "m1")
    assert statuses(store)[1] == "claimed"
    now[0] = 0.6
    book.mark_sent(2, "m2")
    assert statuses(store) == {1: "sent", 2: "sent"}


def test_was_claimed_before(conn: Connection) -> None:
    ledger.claim_batch(conn, ISSUE, [1])  # an earlier run that died
    book = ledger.Ledger(conn, ISSUE)
    book.claim_batch([1, 2])
    assert book.was_claimed_before(1) and not book.was_claimed_before(2)

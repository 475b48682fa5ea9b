"""The send loop's two promises about each hand-off, checked from outside on a real SQLite file.

* An unsubscribe committed before a message is handed to a transport stops that message.
* At any moment at most 2 x connections messages have reached the transport without their 'sent' being
  committed: the crash window of docs/reliability.md (results are committed before the next hand-off).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from smtp_servers import simple_message

from newsletter.models import Message, Subscriber
from newsletter.send import SendPolicy, send_issue
from newsletter.store import sqlite as db, subscribers
from newsletter.transports.memory import MemoryTransport

ISSUE = "2024-05-06"


def _populate(path: Path, count: int) -> None:
    conn = db.connect(path)
    try:
        for i in range(count):
            subscribers.add(conn, f"reader{i}@example.com", f"Reader {i}")
    finally:
        conn.close()


def _make(subscriber: Subscriber) -> Message:
    return simple_message(ISSUE, subscriber)


@pytest.mark.parametrize("connections", [1, 2, 4])
def test_an_unsubscribe_stops_every_message_not_handed_over_yet(tmp_path: Path, connections: int) -> None:
    # Another process unsubscribes everyone during the send (the web page, a bounce webhook). The messages
    # that reach the server after its commit returned can only be those already handed over then, or
    # checked just before: never more than 2 x connections (the sender's bound on messages out).
    path = tmp_path / "newsletter.db"
    _populate(path, 200)
    arrivals: list[float] = []
    lock = threading.Lock()
    first = threading.Event()
    done_at: list[float] = []

    def arrive(message: Message) -> None:
        with lock:
            arrivals.append(time.monotonic())
        first.set()
        time.sleep(0.005)

    def unsubscribe_everyone() -> None:
        first.wait(10)
        time.sleep(0.01)  # into the send (which takes ~0.25 s or more at 4 connections)
        other = db.connect(path)
        try:
            other.execute("UPDATE subscribers SET status = 'unsubscribed'")
            other.commit()
            done_at.append(time.monotonic())
        finally:
            other.close()

    thread = threading.Thread(target=unsubscribe_everyone)
    thread.start()
    conn = db.connect(path)
    try:
        report = send_issue(conn, ISSUE, make_message=_make,
                            transport_factory=lambda: MemoryTransport(fail=arrive),
                            policy=SendPolicy(connections=connections))
        claimed = conn.execute("SELECT COUNT(*) FROM ledger WHERE status <> 'sent'").fetchone()[0]
    finally:
        conn.close()
        thread.join()
    assert done_at and report.sent == len(arrivals) < 200
    after = [t for t in arrivals if t > done_at[0]]
    assert len(after) <= 2 * connections, (len(after), len(arrivals))
    assert claimed == 0  # every other claim was given back


@pytest.mark.parametrize("connections", [1, 2, 4])
def test_messages_out_without_a_committed_sent_never_exceed_twice_the_connections(tmp_path: Path,
                                                                                  connections: int) -> None:
    path = tmp_path / "newsletter.db"
    _populate(path, 120)
    delivered: list[int] = []
    lock = threading.Lock()
    worst = [0]
    local = threading.local()

    def arrive(message: Message) -> None:
        """The server takes the message: how many that reached it have no committed 'sent' (a lower bound)?"""
        sid = int(message.recipient.split("@")[0].removeprefix("reader")) + 1  # ids follow the import order
        with lock:
            delivered.append(sid)
            reached = set(delivered)
        if not hasattr(local, "conn"):
            local.conn = sqlite3.connect(path, check_same_thread=False)
        committed = {row[0] for row in local.conn.execute(
            "SELECT subscriber_id FROM ledger WHERE issue_id = ? AND status = 'sent'", (ISSUE,))}
        open_ = len(reached - committed)
        with lock:
            worst[0] = max(worst[0], open_)
        time.sleep(0.002)

    conn = db.connect(path)
    try:
        report = send_issue(conn, ISSUE, make_message=_make,
                            transport_factory=lambda: MemoryTransport(fail=arrive),
                            policy=SendPolicy(connections=connections))
    finally:
        conn.close()
    assert report.sent == 120 and sorted(delivered) == list(range(1, 121))
    assert 1 <= worst[0] <= 2 * connections

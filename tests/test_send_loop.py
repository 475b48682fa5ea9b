"""The send loop end to end: real SQLite ledger, real aiosmtpd servers, crashes, stops, retries, threads."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from smtp_servers import Fault, FaultHandler, simple_message, smtp_server

from newsletter.store import ledger, sqlite as db, subscribers
from newsletter.errors import ConnectionRefusedForAll, HeaderError
from newsletter.models import Message, Subscriber
from newsletter.send import RetryPolicy, SendPolicy, SendReport, send_issue
from newsletter.transports.smtp_replies import is_bounce
from newsletter.transports import open_transport
from newsletter.transports.memory import MemoryTransport

ISSUE = "2024-05-06"
TESTS = Path(__file__).resolve().parent


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "newsletter.db"


@pytest.fixture()
def conn(db_path: Path) -> sqlite3.Connection:
    connection = db.connect(db_path)
    yield connection
    connection.close()


def populate(conn: sqlite3.Connection, emails: list[str]) -> list[Subscriber]:
    return [subscribers.add(conn, address, f"Reader {i}") for i, address in enumerate(emails, 1)]


def make_message(subscriber: Subscriber) -> Message:
    return simple_message(ISSUE, subscriber)


def smtp_factory(url: str):  # type: ignore[no-untyped-def]
    return lambda: open_transport(url, local_hostname="client.test", timeout=5.0)


def send(conn: sqlite3.Connection, url: str, **kwargs: object) -> SendReport:
    kwargs.setdefault("sleep", lambda seconds: None)
    batching = {key: kwargs.pop(key) for key in list(kwargs) if key in SendPolicy.__dataclass_fields__}
    return send_issue(conn, ISSUE, make_message=make_message, transport_factory=smtp_factory(url),  # type: ignore[arg-type]
                      policy=SendPolicy(**batching), **kwargs)  # type: ignore[arg-type]


def ledger_rows(conn: sqlite3.Connection) -> dict[str, str]:
    return {
        row["email"]: row["status"]
        for row in conn.execute(
            "SELECT s.email, l.status FROM ledger l JOIN subscribers s ON s.id = l.subscriber_id WHERE l.issue_id = ?",
            (ISSUE,),
        )
    }


def test_sends_to_every_subscribed_reader_once(conn: sqlite3.Connection) -> None:
    people = populate(conn, [f"r{i}@example.com" for i in range(8)])
    subscribers.unsubscribe(conn, people[1].id)
    subscribers.mark_bounced(conn, people[2].id)
    events: list[tuple[str, int]] = []
    with smtp_server() as server:
        report = send(conn, server.url(query="starttls=off"), progress=lambda kind, s: events.append((kind, s.id)))
        received = server.handler.recipients()
        ids = set(server.handler.message_ids)
    expected = {p.email for p in people} - {people[1].email, people[2].email}
    assert received == Counter({address: 1 for address in expected})
    assert (report.sent, report.failed, report.deferred, report.skipped, report.resent_after_crash) == (6, 0, 0, 0, 0)
    assert report.stopped_early is None and not report.interrupted and report.duration > 0
    assert sorted(events) == sorted(("sent", p.id) for p in people if p.email in expected)
    assert {r[0] for r in conn.execute("SELECT message_id FROM ledger")} == ids
    assert ledger.counts(conn, ISSUE) == ledger.LedgerCounts(sent=6, deferred=0, failed=0, claimed=0, remaining=0)
    kinds = [r[0] for r in conn.execute("SELECT kind FROM events ORDER BY id")]
    assert kinds == ["send.start", "send.finish"]
    # A second run finds nothing left and counts the finished rows as skipped.
    with smtp_server() as server:
        again = send(conn, server.url(query="starttls=off"))
        assert server.handler.messages == []
    assert (again.sent, again.skipped) == (0, 6)


def test_permanent_and_transient_failures(conn: sqlite3.Connection) -> None:
    populate(conn, [f"{who}@example.com" for who in ("ok", "nouser", "flaky", "spam", "slow")])
    handler = FaultHandler(
        [
            Fault(r"^nouser@", "550 5.1.1 <nouser@example.com>: Recipient address rejected: no such user"),
            Fault(r"^flaky@", "451 4.7.1 greylisted, come back later", times=2),
            Fault(r"^spam@", "550 5.7.1 message refused by policy"),
            Fault(r"^slow@", "452 4.2.2 mailbox full"),
        ]
    )
    delays: list[float] = []
    retry = RetryPolicy(attempts=3, base_delay=1.0, max_delay=30.0, jitter=0.5)
    with smtp_server(handler) as server:
        report = send(conn, server.url(query="starttls=off"), retry=retry, sleep=delays.append)
        assert server.handler.recipients() == Counter({"ok@example.com": 1, "flaky@example.com": 1})
    assert handler.rcpt_attempts["flaky@example.com"] == 3
    assert handler.rcpt_attempts["slow@example.com"] == 3
    assert handler.rcpt_attempts["nouser@example.com"] == 1  # permanent: never retried
    assert (report.sent, report.failed, report.deferred, report.bounced) == (2, 2, 1, 1)
    # Two retries each for flaky@ and slow@: exponential backoff with up to 50 % jitter.
    assert len(delays) == 4
    assert sorted(delays)[:2] == pytest.approx([1.25, 1.25], abs=0.25)
    assert sorted(delays)[2:] == pytest.approx([2.5, 2.5], abs=0.5)
    assert ledger_rows(conn) == {
        "ok@example.com": "sent",
        "flaky@example.com": "sent",
        "nouser@example.com": "failed",
        "spam@example.com": "failed",
        "slow@example.com": "deferred",
    }
    row = conn.execute("SELECT code, reason, attempts FROM ledger WHERE subscriber_id = 2").fetchone()
    assert row["code"] == 550 and "no such user" in row["reason"] and row["attempts"] == 1
    statuses = {s.email: s.status for s in subscribers.list_subscribers(conn)}
    assert statuses["nouser@example.com"] == "bounced"
    assert statuses["spam@example.com"] == "subscribed"  # 5.7.1 is policy, not a bad address
    assert conn.execute("SELECT attempts, code FROM ledger WHERE subscriber_id = 5").fetchone()[:] == (1, 452)
    # The deferred row is retried by the next run, and only it.
    with smtp_server() as server:
        again = send(conn, server.url(query="starttls=off"))
        assert server.handler.recipients() == Counter({"slow@example.com": 1})
    assert (again.sent, again.skipped) == (1, 3)  # nouser@ is bounced now: no longer in the audience


def test_is_bounce() -> None:
    assert is_bounce(550, "5.1.1 no such user")
    assert is_bounce(554, "5.1.0 address rejected")
    assert is_bounce(551, "user not local")
    assert not is_bounce(550, "5.7.1 spam")
    assert not is_bounce(552, "mailbox full")


def test_refused_for_all_stops_after_the_first_message(conn: sqlite3.Connection) -> None:
    populate(conn, [f"r{i}@example.com" for i in range(40)])
    handler = FaultHandler(mail_reply="530 5.7.0 Authentication required")
    with smtp_server(handler) as server:
        report = send(conn, server.url(query="starttls=off"), connections=1)
    assert handler.mail_attempts == 1
    assert report.stopped_early is not None and "530" in report.stopped_early
    assert (report.sent, report.failed, report.deferred) == (0, 0, 0)
    # Nothing burnt: no final rows, nothing left claimed, everyone still pending.
    assert ledger.counts(conn, ISSUE) == ledger.LedgerCounts(sent=0, deferred=0, failed=0, claimed=0, remaining=40)
    with smtp_server() as server:
        fixed = send(conn, server.url(query="starttls=off"))
        assert len(server.handler.messages) == 40
    assert fixed.sent == 40 and fixed.resent_after_crash == 0


def test_unopenable_transport_stops_before_claiming(conn: sqlite3.Connection, tmp_path: Path) -> None:
    populate(conn, ["a@example.com"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    report = send_issue(conn, ISSUE, make_message=make_message,
                        transport_factory=lambda: open_transport(f"maildir:{blocker}"))
    assert report.stopped_early and "file" in report.stopped_early
    assert ledger.counts(conn, ISSUE).remaining == 1 and not ledger_rows(conn)


def test_resume_after_crash_resends_claimed_rows_once(conn: sqlite3.Connection) -> None:
    people = populate(conn, [f"r{i}@example.com" for i in range(10)])
    # What a crashed run leaves: two rows confirmed sent, three claimed but never confirmed.
    ledger.claim_batch(conn, ISSUE, [p.id for p in people[:5]])
    ledger.mark_sent(conn, ISSUE, people[0].id, "old-0")
    ledger.mark_sent(conn, ISSUE, people[1].id, "old-1")
    conn.commit()
    with smtp_server() as server:
        report = send(conn, server.url(query="starttls=off"))
        received = server.handler.recipients()
    assert received == Counter({p.email: 1 for p in people[2:]})
    assert (report.sent, report.resent_after_crash, report.skipped) == (8, 3, 2)
    assert ledger.counts(conn, ISSUE).sent == 10


CRASHING_RUN = """
import os, sys
from pathlib import Path
from newsletter.store import sqlite as db
from newsletter.send import SendPolicy, send_issue
from newsletter.transports import open_transport
from smtp_servers import simple_message

conn = db.connect(Path(sys.argv[1]))
built = 0

def make(subscriber):
    global built
    built += 1
    if built > int(sys.argv[3]):
        os._exit(17)  # kill -9 style: no cleanup, no commit
    return simple_message("2024-05-06", subscriber)

send_issue(conn, "2024-05-06", make_message=make, policy=SendPolicy(connections=2, claim_size=20),
           transport_factory=lambda: open_transport("maildir:" + sys.argv[2]))
"""


def test_real_crash_then_resume_loses_nobody(conn: sqlite3.Connection, db_path: Path, tmp_path: Path) -> None:
    people = populate(conn, [f"r{i}@example.com" for i in range(150)])
    box = tmp_path / "maildir"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    crashed = subprocess.run([sys.executable, "-c", CRASHING_RUN, str(db_path), str(box), "90"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 17, crashed.stderr
    after_crash = ledger.counts(conn, ISSUE)
    assert after_crash.claimed > 0 and after_crash.remaining >= 60  # at most the 90 messages built went out
    report = send_issue(conn, ISSUE, make_message=make_message, policy=SendPolicy(connections=2),
                        transport_factory=lambda: open_transport(f"maildir:{box}"))
    delivered = Counter(
        line.split(b"<", 1)[1].rstrip(b">").decode()
        for path in (box / "new").iterdir()
        for line in path.read_bytes().split(b"\n")
        if line.startswith(b"To: ")
    )
    assert set(delivered) == {p.email for p in people}
    duplicates = sum(n - 1 for n in delivered.values())
    assert duplicates <= report.resent_after_crash
    assert report.resent_after_crash <= after_crash.claimed
    assert ledger.counts(conn, ISSUE) == ledger.LedgerCounts(sent=150, deferred=0, failed=0, claimed=0, remaining=0)


def test_stop_event_finishes_in_flight_without_duplicates(conn: sqlite3.Connection) -> None:
    people = populate(conn, [f"r{i}@example.com" for i in range(40)])
    stop = threading.Event()

    def progress(kind: str, subscriber: Subscriber) -> None:
        if kind == "sent" and subscriber.id >= 5:
            stop.set()

    with smtp_server() as server:
        report = send(conn, server.url(query="starttls=off"), connections=2, stop=stop, progress=progress)
        first = server.handler.recipients()
    assert report.interrupted and report.stopped_early is None
    assert 5 <= report.sent < 40
    # Everything the server accepted is recorded as sent; nothing is left claimed.
    assert set(first) == {e for e, status in ledger_rows(conn).items() if status == "sent"}
    assert ledger.counts(conn, ISSUE).claimed == 0
    with smtp_server() as server:
        rest = send(conn, server.url(query="starttls=off"), connections=2)
        second = server.handler.recipients()
    assert first + second == Counter({p.email: 1 for p in people})
    assert rest.resent_after_crash == 0 and rest.skipped == report.sent


def test_three_connections_send_each_subscriber_exactly_once(conn: sqlite3.Connection) -> None:
    people = populate(conn, [f"r{i}@example.com" for i in range(90)])
    with smtp_server() as server:
        report = send(conn, server.url(query="starttls=off"), connections=3, claim_size=7, page_size=20)
        received = server.handler.recipients()
        peers = {m.peer for m in server.handler.messages}
    assert received == Counter({p.email: 1 for p in people})
    assert report.sent == 90 and 1 < len(peers) <= 3  # one connection per worker thread
    assert ledger.counts(conn, ISSUE).sent == 90


def test_sending_streams_from_the_database(conn: sqlite3.Connection) -> None:
    populate(conn, [f"r{i}@example.com" for i in range(30)])
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    report = send_issue(conn, ISSUE, make_message=make_message, transport_factory=MemoryTransport,
                        policy=SendPolicy(claim_size=8))
    conn.set_trace_callback(None)
    # Each claim reads the next 8 subscribers after its cursor; at the end one claim finds nothing after
    # the cursor and one sweep from the start finds nothing either.
    reads = [s for s in statements if s.lstrip().startswith("SELECT s.id FROM subscribers s")]
    assert report.sent == 30 and all("LIMIT" in s for s in reads)
    assert [s.split("s.id > ", 1)[1].split(" ", 1)[0] for s in reads] == ["0", "8", "16", "24", "30", "0"]


def test_rate_limit(conn: sqlite3.Connection) -> None:
    populate(conn, [f"r{i}@example.com" for i in range(11)])
    started = time.monotonic()
    report = send_issue(conn, ISSUE, make_message=make_message, transport_factory=MemoryTransport,
                        policy=SendPolicy(rate=50.0, connections=2))
    assert report.sent == 11 and time.monotonic() - started >= 0.19


def test_header_error_fails_one_subscriber(conn: sqlite3.Connection) -> None:
    populate(conn, ["a@example.com", "b@example.com"])

    def build(subscriber: Subscriber) -> Message:
        if subscriber.email.startswith("b"):
            raise HeaderError("To", "cannot be encoded")
        return make_message(subscriber)

    sent: list[Message] = []
    report = send_issue(conn, ISSUE, make_message=build, transport_factory=lambda: MemoryTransport(sent))
    assert (report.sent, report.failed) == (1, 1)
    assert ledger_rows(conn) == {"a@example.com": "sent", "b@example.com": "failed"}


def test_a_transport_bug_propagates_and_leaves_rows_pending(conn: sqlite3.Connection) -> None:
    populate(conn, [f"r{i}@example.com" for i in range(5)])

    def explode(message: Message) -> None:
        if message.recipient == "r2@example.com":
            raise RuntimeError("bug in transport")

    with pytest.raises(RuntimeError, match="bug in transport"):
        send_issue(conn, ISSUE, make_message=make_message, transport_factory=lambda: MemoryTransport(fail=explode))
    counts = ledger.counts(conn, ISSUE)
    assert counts.sent == 2 and counts.claimed == 0 and counts.remaining == 3


def test_refusal_from_a_memory_transport(conn: sqlite3.Connection) -> None:
    populate(conn, [f"r{i}@example.com" for i in range(5)])

    def refuse(message: Message) -> None:
        raise ConnectionRefusedForAll("disk full")

    report = send_issue(conn, ISSUE, make_message=make_message, transport_factory=lambda: MemoryTransport(fail=refuse),
                        policy=SendPolicy(connections=3))
    assert report.stopped_early == "disk full" and report.sent == 0
    assert ledger.counts(conn, ISSUE).claimed == 0


def test_the_same_refusal_in_a_row_stops_the_run_and_leaves_rows_pending(conn: sqlite3.Connection) -> None:
    """A quota or policy block answers 5xx for everyone: not the recipients' fault, so nobody is failed
    for good or marked bounced, and a later run sends the rest."""
    from newsletter.errors import PermanentDeliveryError, RecipientBounced
    from newsletter.send import REFUSAL_LIMIT

    people = populate(conn, [f"reader{i}@example.org" for i in range(40)])
    quota = {"open": False}

    def fail(message: Message) -> None:
        if message.recipient == "reader9@example.org":
            raise RecipientBounced("5.1.1 <reader9@example.org>: no such user", code=550,
                                         recipient=message.recipient)
        if quota["open"] is False and message.recipient[6:8].isdigit() and message.recipient.startswith("reader2"):
            raise PermanentDeliveryError(f"5.4.5 Daily sending quota exceeded for <{message.recipient}>",
                                         code=550, recipient=message.recipient)

    transport = MemoryTransport(fail=fail)
    report = send_issue(conn, ISSUE, make_message=make_message, transport_factory=lambda: transport)
    assert report.stopped_early and "refused 5 messages in a row" in report.stopped_early
    assert report.failed == 1 and report.bounced == 1  # only the real "no such user"
    rows = ledger_rows(conn)
    assert rows["reader9@example.org"] == "failed"
    assert not any(rows.get(f"reader2{i}@example.org") == "failed" for i in range(REFUSAL_LIMIT))
    assert subscribers.count(conn, "bounced") == 1
    quota["open"] = True  # the next day
    again = send_issue(conn, ISSUE, make_message=make_message, transport_factory=lambda: transport)
    assert again.stopped_early is None
    assert report.sent + again.sent == len(people) - 1

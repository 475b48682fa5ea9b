"""Delivery against a fault-injecting SMTP server: every kind of refusal, deferral and dropped connection.

After each send (and the resumes that follow), every subscribed recipient has either received the
issue exactly once — except the accept-then-drop window of RFC 1047, one duplicate per injection —
or has a final ledger row with the server's permanent code and reason. Transient failures are
retried with exponential backoff, and the run's report agrees with what the server recorded.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import REPLIES, FaultInjectingHandler, Rule, fault_server, prepare_issue, write_subscribers_csv

from newsletter.store import sqlite as db
from newsletter.jobs.delivery import personaliser_for, send_full
from newsletter.transports import transport_factory
from newsletter.send import RetryPolicy, SendPolicy, SendReport, send_issue
from newsletter.settings import Settings

#: Faults injected by this module's tests, per kind (printed when the module finishes).
INJECTED: Counter[str] = Counter()
PERMANENT = {"550", "551", "553", "554"}


@pytest.fixture(scope="module", autouse=True)
def _report_injected() -> Iterator[None]:
    yield
    print(f"\nfaults injected per kind: {dict(sorted(INJECTED.items()))} (total {sum(INJECTED.values())})")


def over(settings: Settings, server_url: str) -> Settings:
    return dataclasses.replace(settings, transport=server_url)


def fast_send(settings: Settings, folder: Path, delays: list[float], **kwargs: object) -> SendReport:
    """send_issue with the real Personaliser and transport, but backoff recorded instead of slept.

    send_full takes no RetryPolicy and no sleep function, so tests that count backoff delays go one
    level down, exactly as send_full does.
    """
    conn = db.connect(settings.path(settings.database))
    try:
        return send_issue(conn, folder.name, make_message=personaliser_for(settings, folder).message,
                          transport_factory=transport_factory(settings), sleep=delays.append,
                          policy=SendPolicy(connections=int(kwargs.pop("connections", 1))),  # type: ignore[call-overload]
                          **kwargs)  # type: ignore[arg-type]
    finally:
        conn.close()


def ledger_rows(settings: Settings, issue_id: str) -> dict[str, sqlite3.Row]:
    conn = db.connect(settings.path(settings.database))
    try:
        return {
            row["email"]: row
            for row in conn.execute(
                "SELECT s.email, s.status AS subscriber_status, l.status, l.code, l.reason, l.message_id"
                " FROM subscribers s LEFT JOIN ledger l ON l.subscriber_id = s.id AND l.issue_id = ?",
                (issue_id,),
            )
        }
    finally:
        conn.close()


def assert_each_once_or_failed(settings: Settings, issue_id: str, handler: FaultInjectingHandler,
                               *, duplicates: Counter[str] | None = None) -> Counter[str]:
    """The invariant of a finished send; returns the ledger statuses counted."""
    duplicates = duplicates or Counter()
    received = handler.recipients()
    accepted = handler.accepted_ids()
    statuses: Counter[str] = Counter()
    for email, row in ledger_rows(settings, issue_id).items():
        statuses[row["status"]] += 1
        if row["status"] == "sent":
            assert received[email] == 1 + duplicates[email], email
            assert accepted[row["message_id"]] == received[email], email
        else:
            assert row["status"] == "failed", f"{email} is {row['status']!r} after the send"
            assert str(row["code"]) in PERMANENT and row["reason"], dict(row)
            assert received[email] == 0, email
    return statuses


def duplicates_injected(handler: FaultInjectingHandler) -> Counter[str]:
    return Counter(i.recipient for i in handler.injections if i.kind == "accept-then-drop" and i.recipient)


def test_every_fault_kind_is_retried_recorded_or_refused(settings: Settings, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    write_subscribers_csv(csv, 40)
    issue = prepare_issue(settings, subscribers_csv=csv).folder
    rules = [
        # By message number (the n-th transaction the server sees), early in the run.
        Rule("421", messages={2}, stage="data"),
        Rule("drop", messages={5}),
        Rule("accept-then-drop", messages={8}),
        Rule("451", messages={11}, stage="data"),
        # By recipient, later in the run.
        Rule("421", recipient="^r0021@", times=1),
        Rule("450", recipient="^r0022@", times=1),
        Rule("451", recipient="^r0023@", times=2, stage="data"),
        Rule("452", recipient="^r0024@"),
        Rule("454", recipient="^r0025@", times=1),
        Rule("550", recipient="^r0026@"),
        Rule("551", recipient="^r0027@"),
        Rule("553", recipient="^r0028@"),
        Rule("554", recipient="^r0029@", stage="data"),
        Rule("drop", recipient="^r0030@", times=1),
        Rule("accept-then-drop", recipient="^r0031@", times=1),
        Rule("421", recipient="^r0032@"),
    ]
    handler = FaultInjectingHandler(rules)
    retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=1.0, jitter=0.0)
    delays: list[float] = []
    with fault_server(handler) as server:
        smtp = over(settings, server.url(query="starttls=off&timeout=5"))
        first = fast_send(smtp, issue, delays, retry=retry)
        rows = ledger_rows(settings, issue.name)
        assert {e for e, r in rows.items() if r["status"] == "deferred"} == {"r0024@example.org", "r0032@example.org"}
        # The report agrees with the server: distinct Message-IDs = sent, extra copies = accept-then-drop.
        assert (first.sent, first.failed, first.deferred, first.bounced) == (34, 4, 2, 3)
        assert first.sent == len(handler.accepted_ids())
        assert len(handler.messages) == first.sent + handler.injected["accept-then-drop"]
        # Backoff: jitter 0, so the n-th retry waits base * 2**(n-1). Transient failures with a retry:
        # message 11 (451 once), r0022/r0025 (once), r0023 (twice), r0024 and r0032 (every attempt).
        assert Counter(delays) == Counter({0.01: 6, 0.02: 3})
        # Permanent failures are never retried; a 421 on every attempt costs two transactions per attempt.
        for who in ("r0026", "r0027", "r0028", "r0029"):
            assert handler.rcpt_attempts[f"{who}@example.org"] == 1
        assert handler.rcpt_attempts["r0032@example.org"] == 6
        assert handler.rcpt_attempts["r0024@example.org"] == 3
        # Resume once the server is healthy: only the deferred rows go out.
        handler.rules = []
        second = fast_send(smtp, issue, delays, retry=retry)
        assert (second.sent, second.failed, second.deferred, second.skipped) == (2, 0, 0, 35)
        INJECTED.update(handler.injected)
    assert set(handler.injected) == {"421", "450", "451", "452", "454", "550", "551", "553", "554", "drop",
                                     "accept-then-drop"}
    statuses = assert_each_once_or_failed(settings, issue.name, handler, duplicates=duplicates_injected(handler))
    assert statuses == Counter({"sent": 36, "failed": 4})
    rows = ledger_rows(settings, issue.name)
    for who, kind in (("r0026", "550"), ("r0027", "551"), ("r0028", "553"), ("r0029", "554")):
        row = rows[f"{who}@example.org"]
        assert row["code"] == int(kind) and row["reason"] in REPLIES[kind]
    assert {e: r["subscriber_status"] for e, r in rows.items() if r["status"] == "failed"} == {
        "r0026@example.org": "bounced", "r0027@example.org": "bounced", "r0028@example.org": "bounced",
        "r0029@example.org": "subscribed",  # 5.7.1 is a policy refusal, not a bad address
    }
    assert sum(n - 1 for n in handler.accepted_ids().values()) == 2  # the two accept-then-drop windows


def test_send_full_with_faults_and_real_backoff(settings: Settings, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    write_subscribers_csv(csv, 12)
    issue = prepare_issue(settings, subscribers_csv=csv).folder
    handler = FaultInjectingHandler([
        Rule("451", recipient="^r0003@", times=1),
        Rule("550", recipient="^r0005@"),
        Rule("accept-then-drop", messages={7}),
        Rule("drop", recipient="^r0009@", times=1),
        Rule("421", recipient="^r0010@", times=1, stage="data"),
    ])
    with fault_server(handler) as server:
        smtp = over(settings, server.url(query="starttls=off&timeout=5"))
        report = send_full(smtp, issue)
        again = send_full(smtp, issue)
        INJECTED.update(handler.injected)
    assert (report.sent, report.failed, report.deferred, report.bounced) == (11, 1, 0, 1)
    assert report.sent == len(handler.accepted_ids())
    assert len(handler.messages) == report.sent + 1
    assert (again.sent, again.skipped) == (0, 11)
    # The default policy waited at least its base delay (1 s) before retrying the 451.
    first, second = handler.rcpt_times["r0003@example.org"]
    assert second - first >= 1.0
    assert_each_once_or_failed(settings, issue.name, handler, duplicates=duplicates_injected(handler))


def test_auth_required_for_everyone_stops_the_run_and_burns_nobody(settings: Settings, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    write_subscribers_csv(csv, 25)
    issue = prepare_issue(settings, subscribers_csv=csv).folder
    handler = FaultInjectingHandler([Rule("530")])
    with fault_server(handler) as server:
        smtp = over(settings, server.url(query="starttls=off&timeout=5"))
        report = send_full(smtp, issue)
        assert report.stopped_early and "530" in report.stopped_early
        assert handler.transactions == 1 and handler.messages == []
        assert all(r["status"] is None for r in ledger_rows(settings, issue.name).values())
        handler.rules = []
        fixed = send_full(smtp, issue)
        INJECTED.update(handler.injected)
    assert fixed.sent == 25 and fixed.resent_after_crash == 0
    assert_each_once_or_failed(settings, issue.name, handler)


def test_faults_across_parallel_connections(settings: Settings, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    write_subscribers_csv(csv, 60)
    issue = prepare_issue(settings, subscribers_csv=csv).folder
    handler = FaultInjectingHandler([
        Rule("421", messages={3, 17, 31}, stage="data"),
        Rule("drop", messages={6, 22, 40}),
        Rule("accept-then-drop", messages={9, 27}),
        Rule("451", messages={12, 35}),
        Rule("550", recipient="^r004[0-4]@"),
        Rule("452", recipient="^r005[0-2]@", times=1),
    ])
    delays: list[float] = []
    retry = RetryPolicy(attempts=4, base_delay=0.01, max_delay=1.0, jitter=0.0)
    with fault_server(handler) as server:
        smtp = over(settings, server.url(query="starttls=off&timeout=5"))
        report = fast_send(smtp, issue, delays, retry=retry, connections=3)
        INJECTED.update(handler.injected)
    assert report.deferred == 0 and report.failed == 5 and report.sent == 55
    assert report.sent == len(handler.accepted_ids())
    assert len(handler.messages) == report.sent + handler.injected["accept-then-drop"]
    assert handler.injected["accept-then-drop"] == 2
    assert_each_once_or_failed(settings, issue.name, handler, duplicates=duplicates_injected(handler))

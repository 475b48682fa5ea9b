"""The Store protocol and the store modules on both databases: every test runs on a fresh SQLite file and on a
fresh PostgreSQL database (the `store` fixture, tests/store_support.py). Ledger and subscriber details are in
test_ledger.py and test_subscribers.py, on the same fixture."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.errors import LedgerError
from newsletter.store import (
    Connection, DatabaseError, DigestMark, LedgerCounts, Store, desk, events, ledger, records, safeguards, subscribers,
)
from newsletter.store.dbapi import transaction
from store_support import conn, in_threads, pg_database, pg_template, second, store  # noqa: F401 - fixtures

ISSUE = "2026-11-25"


def _people(conn: Connection, n: int) -> list[int]:
    return [subscribers.add(conn, f"p{i}@example.org", f"Person {i}").id for i in range(1, n + 1)]


# -- the Store protocol --------------------------------------------------------------------------


def test_counts_pending_and_seeding(store: Store, tmp_path: Path) -> None:
    csv_file = tmp_path / "seed.csv"
    csv_file.write_text("email,name\na@example.org,A\nb@example.org,B\nc@example.org,C\n", encoding="utf-8")
    report = store.seed_subscribers(csv_file)
    assert report is not None and report.added == 3
    assert store.seed_subscribers(csv_file) is None  # only while the list is empty
    assert store.pending(ISSUE, sample=2) == (3, ["a@example.org", "b@example.org"])
    with store.connection() as conn:
        ledger.claim_batch(conn, ISSUE, [1, 2])
        ledger.mark_sent(conn, ISSUE, 1, "m1@x")
        conn.commit()
    assert store.counts(ISSUE) == LedgerCounts(sent=1, deferred=0, failed=0, claimed=1, remaining=2)
    assert store.pending(ISSUE, sample=5) == (2, ["b@example.org", "c@example.org"])


def test_events_log_and_schedule_records(store: Store) -> None:
    store.log_event("test.hello", issue_id=ISSUE, detail="one")
    due = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    store.record_job("send:x", "scheduled", what="send x", timezone="Europe/Berlin", issue_id=ISSUE, due_at=due,
                     event="schedule.add")
    store.record_job("send:x", "done", "sent 8", insert=False, event="schedule.done")
    store.record_job("digest:weekly", "scheduled", what="weekly digest")
    record = store.job("send:x")
    assert record is not None and (record.state, record.result, record.timezone) == ("done", "sent 8", "Europe/Berlin")
    assert record.due_at == due and record.issue_id == ISSUE
    assert [j.job_id for j in store.jobs()] == ["digest:weekly", "send:x"]
    store.delete_job("send:x")
    assert store.job("send:x") is None
    store.record_job("gone", "done", insert=False)  # a job cancelled while it ran stays cancelled
    assert store.job("gone") is None
    assert store.last_digest("weekly") is None
    store.record_digest("weekly", dt.date(2026, 11, 25), ISSUE, summaries=4)
    store.record_digest("weekly", dt.date(2026, 12, 2), "2026-12-02", summaries=5)
    assert store.last_digest("weekly") == DigestMark(dt.date(2026, 12, 2), "2026-12-02")
    assert store.job("digest:weekly").issue_id == "2026-12-02"  # type: ignore[union-attr]
    with store.connection() as conn:
        kinds = [(r["kind"], r["detail"]) for r in conn.execute("SELECT kind, detail FROM events ORDER BY id")]
    assert kinds == [("test.hello", "one"), ("schedule.add", "send:x"), ("schedule.done", "send:x: sent 8"),
                     ("schedule.cancel", "send:x"), ("digest.compose", "weekly: 4 summaries"),
                     ("digest.compose", "weekly: 5 summaries")]


def test_apscheduler_job_store_url(store: Store) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    job_store = SQLAlchemyJobStore(url=store.jobstore_url(), engine_options=store.jobstore_engine_options())
    scheduler = BackgroundScheduler(jobstores={"default": job_store}, timezone="UTC")
    scheduler.start(paused=True)
    try:
        scheduler.add_job("builtins:print", "date", run_date="2099-01-01T09:00:00+00:00", id="probe")
    finally:
        scheduler.shutdown(wait=False)
    with store.connection() as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM apscheduler_jobs").fetchall()] == ["probe"]


def test_a_failure_inside_a_unit_of_work_names_the_database(store: Store) -> None:
    with pytest.raises(LedgerError, match=r"(newsletter\.db|@127\.0\.0\.1:\d+/s_).*reading or updating"):
        with store.connection() as conn:
            conn.execute("SELECT no_such_column FROM subscribers")


# -- the connection: one dialect for the store modules -------------------------------------------


def test_rows_by_position_and_name_and_placeholders_outside_literals(conn: Connection) -> None:
    subscribers.add(conn, "x@example.org", "X 100%")
    row = conn.execute("SELECT id, email, '?' AS mark, 'a%b' AS pct, name FROM subscribers WHERE name LIKE ? ESCAPE '\\'",
                       ("%100\\%%",)).fetchone()
    assert (row[0], row["email"], row["mark"], row["pct"], row[4]) == (1, "x@example.org", "?", "a%b", "X 100%")
    assert list(row.keys()) == ["id", "email", "mark", "pct", "name"]
    assert tuple(row) == (1, "x@example.org", "?", "a%b", "X 100%")
    assert conn.dialect in ("sqlite", "postgresql")


def test_reads_open_no_write_transaction_and_errors_are_database_errors(store: Store) -> None:
    with store.connection() as conn:
        subscribers.count(conn)
        assert not conn.in_transaction  # a read leaves nothing to commit, as on SQLite
        with transaction(conn):  # so this commits what it wrote
            subscribers.add(conn, "w@example.org")
        assert not conn.in_transaction
        with pytest.raises(DatabaseError):
            conn.execute("INSERT INTO subscribers (email, email_key, status) VALUES ('a', 'a', 'nonsense')")
        conn.rollback()
    with second(store) as other:
        assert subscribers.count(other) == 1


def test_lease_columns_on_the_ledger(conn: Connection) -> None:
    _people(conn, 1)
    ledger.claim_batch(conn, ISSUE, [1])
    conn.execute("UPDATE ledger SET claimed_by = ?, claimed_until = ? WHERE subscriber_id = 1",
                 ("worker-1", "2026-11-25T10:00:00+00:00"))
    row = conn.execute("SELECT status, claimed_by, claimed_until FROM ledger").fetchone()
    assert tuple(row) == ("claimed", "worker-1", "2026-11-25T10:00:00+00:00")


# -- events, safeguards, the desk ---------------------------------------------------------------


def test_delivery_events(conn: Connection) -> None:
    a, b = _people(conn, 2)
    ledger.claim_batch(conn, ISSUE, [a, b])
    ledger.mark_sent(conn, ISSUE, a, "m-a")
    ledger.mark_failed(conn, ISSUE, b, 550, "no such user")
    day = dt.datetime(2026, 11, 26, 8, tzinfo=dt.UTC)
    assert events.insert_event(conn, events.Event(b, "hard", "smtp", issue_id=ISSUE, code="550", ref="r1", at=day))
    assert not events.insert_event(conn, events.Event(b, "hard", "smtp", issue_id=ISSUE, ref="r1", at=day))
    for hours in (0, 5, 30):
        events.insert_event(conn, events.Event(a, "soft", "mailbox", issue_id=ISSUE, at=day + dt.timedelta(hours=hours)))
    events.insert_event(conn, events.Event(a, "complaint", "ses", issue_id=ISSUE, at=day))
    conn.commit()
    assert events.soft_days(conn, a, day - dt.timedelta(days=1)) == [dt.date(2026, 11, 26), dt.date(2026, 11, 27)]
    assert events.has_complained(conn, a) and not events.has_complained(conn, b)
    assert events.latest_issue_for(conn, a) == ISSUE
    assert [(e.kind, e.code) for e in events.events_for(conn, b)] == [("hard", "550")]
    rates = events.issue_rates(conn, ISSUE)
    assert (rates.delivered, rates.attempted, rates.hard, rates.soft, rates.complained) == (1, 2, 1, 1, 1)
    assert rates.hard_rate == 0.5 and rates.complaint_rate == 1.0
    with pytest.raises(ValueError):
        events.insert_event(conn, events.Event(a, "odd", "smtp"))


def test_the_pause_check_counts_only_as_far_as_a_pause_is_possible(conn: Connection) -> None:
    """pause_reason decides exactly as the full rates would, for thresholds on either side of the rates, while
    counting ledger rows only up to where the rate could still pass (none at all without reports)."""
    from newsletter.bounces.pause import Thresholds, pause_reason

    people = _people(conn, 40)
    ledger.claim_batch(conn, ISSUE, people)
    for sid in people[:34]:
        ledger.mark_sent(conn, ISSUE, sid, f"m-{sid}")
    for sid in people[34:]:
        ledger.mark_failed(conn, ISSUE, sid, 550, "no such user")
    conn.commit()
    assert events.count_rows_upto(conn, ISSUE, ("sent",), 10) == 10
    assert events.count_rows_upto(conn, ISSUE, ("sent", "failed"), 1000) == 40
    assert events.count_rows_upto(conn, "1999-01-01", ("sent",), 5) == 0

    def full_rule(limits: Thresholds) -> bool:  # the rule as it reads in pause_reason, on the full rates
        rates = events.issue_rates(conn, ISSUE)
        return ((rates.delivered >= limits.min_delivered and rates.complaint_rate > limits.complaint_rate)
                or (rates.attempted >= limits.min_delivered and rates.hard_rate > limits.hard_bounce_rate))

    grid = [Thresholds(complaint_rate=c, hard_bounce_rate=h, min_delivered=m)
            for c in (0.0, 0.02, 2 / 34, 0.06, 0.5) for h in (0.0, 0.1, 6 / 40, 0.2) for m in (0, 10, 34, 40, 41)]
    assert all(pause_reason(conn, ISSUE, t) is None for t in grid)  # no reports yet: never a pause
    for sid in people[34:]:
        events.insert_event(conn, events.Event(sid, "hard", "smtp", issue_id=ISSUE))
    events.insert_event(conn, events.Event(people[0], "complaint", "ses", issue_id=ISSUE))
    events.insert_event(conn, events.Event(people[1], "complaint", "ses", issue_id=ISSUE))
    conn.commit()
    decisions = [(pause_reason(conn, ISSUE, t) is not None, full_rule(t)) for t in grid]
    assert all(ours == full for ours, full in decisions)
    assert 0 < sum(full for _, full in decisions) < len(grid)  # both answers occur in the grid


def test_safeguards(conn: Connection) -> None:
    secret = "test-secret-not-for-production-use"
    took = [safeguards.allow_confirmation(conn, secret, "A@example.org", limit=(2, 60), now=1000 + i) for i in range(3)]
    assert took == [True, True, False]
    assert safeguards.allow_confirmation(conn, secret, "a@example.org", limit=(2, 60), now=1061)  # window moved on
    assert safeguards.use_link(conn, "token-1", keep_for=3600, now=10.0)
    assert not safeguards.use_link(conn, "token-1", keep_for=3600, now=11.0)
    assert safeguards.use_link(conn, "token-1", keep_for=3600, now=5000.0)  # forgotten once expired anyway
    (sid,) = _people(conn, 1)
    for issue, key in (("i1", "k-old"), ("i2", "k-new"), ("i3", "k-old")):
        safeguards.record_send_key(conn, issue, key)
        safeguards.record_send_key(conn, issue, key)  # once per (issue, key)
        ledger.claim_batch(conn, issue, [sid])
        if issue != "i3":
            ledger.mark_sent(conn, issue, sid, f"m-{issue}")
    conn.commit()
    assert safeguards.issues_sent_under_other_keys(conn, "k-new") == ["i1"]
    assert conn.execute("SELECT COUNT(*) FROM send_keys").fetchone()[0] == 3


def test_the_confirmation_limit_holds_across_concurrent_connections(store: Store) -> None:
    secret, results = "test-secret-not-for-production-use", []

    def ask() -> None:
        with store.connection() as conn:
            results.append(safeguards.allow_confirmation(conn, secret, "race@example.org", limit=(3, 60), now=5.0))

    assert in_threads(ask, 8) == [] and sorted(results) == [False] * 5 + [True] * 3


def test_desk_tables(conn: Connection) -> None:
    ann = desk.add_editor(conn, "Ann@Example.org", "ann@example.org", "Ann", "editor", "hash-1")
    assert ann is not None and ann.email == "Ann@Example.org"
    assert desk.add_editor(conn, "ann@example.org", "ann@example.org", "Ann 2", "approver", "h") is None
    bob = desk.add_editor(conn, "bob@example.org", "bob@example.org", "Bob", "approver", "hash-2")
    assert bob is not None and [e.name for e in desk.editors(conn)] == ["Ann", "Bob"] and desk.count_editors(conn) == 2
    desk.create_session(conn, "sess-1", ann.id, 100.0)
    desk.touch_session(conn, "sess-1", 150.5)
    found = desk.session(conn, "sess-1")
    assert found is not None and (found.editor.id, found.created_at, found.last_seen) == (ann.id, 100.0, 150.5)
    assert desk.set_password(conn, "ann@example.org", "hash-3")
    assert desk.session(conn, "sess-1") is None  # a new password ends every session
    assert desk.editor_by_email(conn, "ann@example.org").password_hash == "hash-3"  # type: ignore[union-attr]
    for at, ok in ((10.0, False), (20.0, False), (30.0, True)):
        desk.record_attempt(conn, "ann@example.org", "192.0.2.1", ok=ok, now=at, keep_seconds=1000)
    assert desk.failed_attempts(conn, email_key="ann@example.org", address="192.0.2.1", since=15.0) == (1, 1)
    desk.record_attempt(conn, "bob@example.org", "192.0.2.9", ok=False, now=2000.0, keep_seconds=1000)
    assert desk.failed_attempts(conn, email_key="ann@example.org", address="192.0.2.1", since=0.0) == (0, 0)
    desk.audit(conn, ann, "compose", issue_id=ISSUE, version="v1")
    desk.audit(conn, None, "send", issue_id=ISSUE, detail="8 sent")
    desk.audit(conn, bob, "edit", issue_id=ISSUE, version="v2")
    assert [e.action for e in desk.audit_entries(conn, issue_id=ISSUE, limit=2)] == ["edit", "send"]
    assert desk.last_edit(conn, ISSUE).editor_name == "Bob <bob@example.org>"  # type: ignore[union-attr]
    assert desk.remove_editor(conn, "bob@example.org") and not desk.remove_editor(conn, "bob@example.org")
    assert desk.audit_entries(conn)[0].editor_name == "Bob <bob@example.org>"  # history stays


def test_desk_subscriber_views(conn: Connection) -> None:
    for address in ("zed@example.org", "a_b@example.org", "axb@example.org", "100%@example.org", "amy@other.org"):
        subscribers.add(conn, address)
    subscribers.remove(conn, "amy@other.org")
    assert desk.search_subscribers(conn, "a_b", status=None, limit=10, offset=0) == (
        1, [("a_b@example.org", "", "subscribed")])  # `_` is a letter here, not a wildcard
    assert desk.search_subscribers(conn, "%", status=None, limit=10, offset=0)[0] == 1
    total, page = desk.search_subscribers(conn, "example.org", status="subscribed", limit=2, offset=1)
    assert total == 4 and [p[0] for p in page] == ["a_b@example.org", "axb@example.org"]
    pages = list(desk.subscriber_pages(conn, batch=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [p[0] for page in pages for p in page] == sorted(
        ["zed@example.org", "a_b@example.org", "axb@example.org", "100%@example.org", "amy@other.org"])
    ledger.claim_batch(conn, ISSUE, [1, 2])
    ledger.mark_failed(conn, ISSUE, 1, 550, "no such user")
    subscribers.mark_bounced(conn, 1)
    assert desk.bounced(conn, ISSUE) == 1


# -- records module directly ---------------------------------------------------------------------


def test_records_keep_the_first_insert(conn: Connection) -> None:
    records.save_job(conn, "j", "scheduled", what="first", timezone="UTC")
    records.save_job(conn, "j", "running", what=None)
    conn.commit()
    job = records.job(conn, "j")
    assert job is not None and (job.what, job.state, job.due_at) == ("first", "running", None)


# -- who imports what ------------------------------------------------------------------------------


def _modules_loaded_by_a_send_setup(path: Path) -> list[str]:
    code = ("import sys; from pathlib import Path; from newsletter.store import SQLiteStore, subscribers\n"
            f"s = SQLiteStore(Path({str(path)!r}))\n"
            "with s.connection() as c: subscribers.add(c, f'a{len(sys.argv)}@example.org'); c.commit()\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'psycopg', 'psycopg_pool', 'alembic'})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.split()


def test_sqlite_users_never_import_psycopg_and_import_alembic_only_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    # A new file is brought to the first revision with plain SQL (sqlite._baseline); at the head the start
    # check is one plain SELECT: Alembic is imported only for revisions after the first.
    assert _modules_loaded_by_a_send_setup(path) == []
    assert _modules_loaded_by_a_send_setup(path) == []


def test_small_lookups_the_send_loop_and_the_web_use(conn: Connection) -> None:
    a, b = _people(conn, 2)
    ledger.claim_batch(conn, ISSUE, [a])
    assert ledger.has_row(conn, ISSUE, a) and not ledger.has_row(conn, ISSUE, b)
    subscribers.unsubscribe(conn, b)
    assert (subscribers.status_of(conn, a), subscribers.status_of(conn, b), subscribers.status_of(conn, 99)) == (
        "subscribed", "unsubscribed", None)
    assert subscribers.unsubscribed_at(conn, a) is None
    assert dt.datetime.fromisoformat(subscribers.unsubscribed_at(conn, b) or "").tzinfo is not None

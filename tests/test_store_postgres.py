"""PostgreSQL only: connection settings, the versioned schema and its refusal, the same tables as SQLite, the
settings' URL, and a whole issue composed, built, sent and unsubscribed from on a PostgreSQL database.

Without PostgreSQL these tests skip, unless NEWSLETTER_REQUIRE_POSTGRES=1 (CI), when they fail. The Store's
behaviour on both databases is tests/test_store.py (one suite, parametrised over the two stores).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import mailbox
import re
import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from newsletter.approval import approve
from newsletter.errors import ConfigError, LedgerError
from newsletter.freeze import IssueFrozen
from newsletter.jobs.delivery import send_full, status
from newsletter.jobs.issues import build, compose
from newsletter.settings import Settings, load_settings
from newsletter.store import open_store, postgres, sqlite as db, subscribers
from newsletter.store.pgstore import PostgresStore, close_shared

pytestmark = pytest.mark.postgres
SECRET = "test-secret-not-for-production-use"


def test_password_comes_from_the_environment_and_tls_options_pass_through() -> None:
    info = postgres.conninfo("postgresql://mail@db.example.org/news?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                             {postgres.PASSWORD_ENV: "s3cret"})
    params = psycopg.conninfo.conninfo_to_dict(info)
    assert params["password"] == "s3cret"
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", "/etc/ca.pem")
    url = postgres.jobstore_url(info)
    assert url.startswith("postgresql+psycopg://mail:s3cret@db.example.org/news?")
    assert "sslmode=verify-full" in url


def test_a_password_in_the_url_is_refused() -> None:
    with pytest.raises(LedgerError, match=postgres.PASSWORD_ENV):
        postgres.conninfo("postgresql://mail:oops@db.example.org/news", {})


def test_unreachable_server_names_where(postgres_server) -> None:
    info = postgres.conninfo(f"postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", {})
    with pytest.raises(LedgerError, match=r"nobody@127.0.0.1:1/none: cannot connect"):
        postgres.connect(info)


def test_apscheduler_job_store_on_the_same_database(postgres_url: str) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    url = postgres.jobstore_url(postgres.conninfo(postgres_url, {}))
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone="UTC")
    scheduler.start(paused=True)
    try:
        scheduler.add_job("builtins:print", "date", run_date="2099-01-01T09:00:00+00:00", id="probe")
    finally:
        scheduler.shutdown(wait=False)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT id FROM apscheduler_jobs").fetchall() == [("probe",)]


def test_both_stores_hold_the_same_tables_and_columns(postgres_url: str, tmp_path: Path) -> None:
    PostgresStore(postgres_url, env={}).upgrade()
    with psycopg.connect(postgres_url) as pg:
        pg_columns = {(t, c) for t, c in pg.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND table_name != 'schema_version'")}
    lite = db.connect(tmp_path / "x.db")
    tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    lite_columns = {(t, r[1]) for t in tables for r in lite.execute(f"PRAGMA table_info({t})")}
    lite.close()
    assert pg_columns == lite_columns
    assert {("ledger", "claimed_by"), ("ledger", "claimed_until"), ("desk_audit", "version"),
            ("used_links", "digest"), ("delivery_events", "ref")} <= pg_columns


def test_settings_take_a_database_url(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text('database = "postgresql://mail@db.example.org:5433/news?sslmode=verify-full"\n')
    settings = load_settings(config, env={})
    assert settings.database_url == "postgresql://mail@db.example.org:5433/news?sslmode=verify-full"
    for bad, word in (("mysql://mail@db/news", "mysql"), ("postgresql://mail:pw@db/news", "NEWSLETTER_DATABASE_PASSWORD")):
        config.write_text(f'database = "{bad}"\n')
        with pytest.raises(ConfigError, match=f"database.*{word}"):
            load_settings(config, env={})


def test_open_store_shares_one_pool_per_database(postgres_url: str, tmp_path: Path) -> None:
    settings = dataclasses.replace(load_settings(root=tmp_path, env={}), database_url=postgres_url)
    PostgresStore(postgres_url, env={}).upgrade()
    try:
        first, again = open_store(settings), open_store(settings)
        assert isinstance(first, PostgresStore) and first is again
        assert first.counts("x").remaining == 0
    finally:
        close_shared()


def _outbox(settings: Settings) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(settings.root / "outbox", create=False)
    return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)  # type: ignore[misc]
            for key in box.keys()]


def _site_on(project: Path, postgres_url: str) -> tuple[Settings, Path]:
    """The sample project on this PostgreSQL database: upgraded, its issue composed, built and approved, and
    the sample list imported; (settings, the issue's folder)."""
    config = project / "newsletter.toml"
    text, found = re.subn(r'(?m)^database = .*$', f'database = "{postgres_url}"', config.read_text(encoding="utf-8"))
    assert found == 1
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config, env={"NEWSLETTER_SECRET": SECRET})
    assert settings.database_url == postgres_url
    PostgresStore(postgres_url, env={}).upgrade()
    folder = compose(settings, date=dt.date(2026, 11, 25)).folder
    build(settings, folder)
    with open_store(settings).connection() as conn:
        assert subscribers.import_csv(conn, project / "content" / "subscribers.csv").added == 8
    approve(folder)
    return settings, folder


def test_an_issue_goes_out_and_a_reader_unsubscribes_on_postgresql(project: Path, postgres_url: str) -> None:
    from test_serve import running  # uvicorn on 127.0.0.1 in a thread

    from newsletter.serve import create_app

    settings, folder = _site_on(project, postgres_url)
    try:
        report = send_full(settings, folder)
        assert (report.sent, report.failed, report.deferred) == (8, 0, 0)
        assert status(settings, folder).remaining == 0
        assert send_full(settings, folder).sent == 0  # resume is a query: nothing left
        with pytest.raises(IssueFrozen):  # what went out stays as it went out
            build(settings, folder)
        assert not (project / "var" / "newsletter.sqlite3").exists()  # everything went to PostgreSQL
        messages = _outbox(settings)
        assert len(messages) == 8
        (msg,) = [m for m in messages if m["To"].addresses[0].addr_spec == "amara.okafor@example.org"]
        url = re.match(r"<([^>]+)>", msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
        with running(create_app(settings)) as base, httpx.Client(base_url=base, timeout=10) as client:
            r = client.post(url.removeprefix(settings.public_base_url), data={"List-Unsubscribe": "One-Click"})
            assert r.status_code == 200 and "You are unsubscribed" in r.text
    finally:
        close_shared()
    with psycopg.connect(postgres_url) as pg:
        rows = dict(pg.execute("SELECT email, status FROM subscribers").fetchall())
        assert rows.pop("amara.okafor@example.org") == "unsubscribed"
        assert set(rows.values()) == {"subscribed"}
        assert pg.execute("SELECT COUNT(*) FROM ledger WHERE status = 'sent'").fetchone()[0] == 8
        assert pg.execute("SELECT kind FROM events WHERE kind = 'web.unsubscribe'").fetchall() == [("web.unsubscribe",)]


def test_placeholders_are_rewritten_outside_literals_identifiers_and_comments() -> None:
    from newsletter.store.pgconn import translate, writes

    assert translate("SELECT '?', \"a?\", ? -- why?\n, 'x%' LIKE ?") == "SELECT '?', \"a?\", %s -- why?\n, 'x%%' LIKE %s"
    assert translate("SELECT 'it''s ?' , ?") == "SELECT 'it''s ?' , %s"
    # What counts as "writes waiting for a commit" (in_transaction), as SQLite counts them.
    assert writes("  insert into t values (1)") and writes("WITH x AS (UPDATE l SET a = 1 RETURNING *) SELECT * FROM x")
    assert writes("SELECT id FROM ledger WHERE status = 'claimed' FOR UPDATE SKIP LOCKED")
    assert not writes("SELECT updated_at FROM ledger") and not writes("WITH a AS (SELECT 1) SELECT * FROM a")


def test_a_connection_lost_mid_send_names_the_database_and_resume_loses_no_one(project: Path,
                                                                              postgres_url: str) -> None:
    settings, folder = _site_on(project, postgres_url)
    admin = psycopg.connect(postgres_url, autocommit=True)
    results: list[str] = []

    def cut_after_three(status: str, _subscriber: object) -> None:
        results.append(status)
        if len(results) == 3:  # the server ends the send's session, as a failover or a restart would
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()")

    try:
        with pytest.raises(LedgerError, match=r"newsletter@127\.0\.0\.1:\d+/t_\w+: "):
            send_full(settings, folder, progress=cut_after_three)
        sent_rows = admin.execute("SELECT COUNT(*) FROM ledger WHERE status = 'sent'").fetchone()[0]
        delivered = len(_outbox(settings))
        assert 3 <= delivered < 8 and sent_rows <= delivered  # a row says sent only for a delivered message
        report = send_full(settings, folder)  # the pool replaces the dead connection
        assert report.sent + sent_rows == 8 and report.failed == 0
        rows = admin.execute("SELECT status, COUNT(*) FROM ledger GROUP BY status").fetchall()
        assert rows == [("sent", 8)]
        got = {m["To"].addresses[0].addr_spec for m in _outbox(settings)}
        assert len(got) == 8  # everyone has the issue; at most the unconfirmed ones twice
    finally:
        admin.close()
        close_shared()

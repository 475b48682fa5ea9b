"""Alembic migrations on both databases: `newsletter db upgrade` on a fresh database, files and databases made
before Alembic adopted with their rows, an unknown (newer) revision refused naming the database, an older
PostgreSQL schema refused until upgraded, and concurrent upgrades taking turns."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from newsletter.errors import LedgerError
from newsletter.store import SQLiteStore, ledger, migrate, schema, sqlite as db, subscribers

REPO = Path(__file__).resolve().parent.parent
SECRET = "test-secret-not-for-production-use"


def test_the_scripts_are_the_revisions_the_start_check_knows() -> None:
    assert migrate.script_revisions() == list(schema.REVISIONS)
    migrate.check_scripts()


def test_a_new_file_made_without_alembic_is_what_the_first_revision_makes(tmp_path: Path) -> None:
    # sqlite._baseline stands in for revision 0001 on open; the file must be the one Alembic's run of it leaves.
    db.connect(tmp_path / "plain.db").close()
    migrate.upgrade_sqlite(tmp_path / "alembic.db")

    def picture(path: Path) -> tuple[object, ...]:
        with sqlite3.connect(path) as raw:
            return (sorted(raw.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()),
                    raw.execute("PRAGMA user_version").fetchone(), raw.execute("SELECT * FROM alembic_version").fetchall())

    assert picture(tmp_path / "plain.db") == picture(tmp_path / "alembic.db")
    assert picture(tmp_path / "plain.db")[2] == [(schema.REVISIONS[0],)]


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEWSLETTER_SECRET": SECRET}
    return subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def _use_database(project: Path, database: str) -> None:
    config = project / "newsletter.toml"
    text, found = re.subn(r"(?m)^database = .*$", f'database = "{database}"', config.read_text(encoding="utf-8"))
    assert found == 1
    config.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_db_upgrade_on_a_fresh_database_then_nothing_to_do(kind: str, project: Path,
                                                           request: pytest.FixtureRequest) -> None:
    if kind == "postgresql":
        _use_database(project, request.getfixturevalue("postgres_url"))
    first = _cli(project, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert f"upgraded from no schema to {schema.HEAD}" in first.stdout
    if kind == "sqlite":
        assert "var/newsletter.sqlite3" in first.stdout
    else:
        assert re.search(r"newsletter@127\.0\.0\.1:\d+/t_", first.stdout)
    again = _cli(project, "db", "upgrade")
    assert again.returncode == 0 and f"already at {schema.HEAD}, nothing to do" in again.stdout
    listed = _cli(project, "subscribers", "list")
    assert listed.returncode == 0, listed.stderr


def _old_sqlite_file(path: Path, version: int) -> None:
    """A file as the release at `version` left it (the legacy steps up to it), with rows in every old table."""
    raw = sqlite3.connect(path)
    for step in range(version):
        if callable(db._MIGRATIONS[step]):
            db._MIGRATIONS[step](raw)
        else:
            for statement in db._MIGRATIONS[step]:
                raw.execute(statement)
    raw.execute("INSERT INTO subscribers (email, email_key, status, created_at) VALUES"
                " ('old@example.org', 'old@example.org', 'subscribed', '2025-01-01T00:00:00+00:00'),"
                " ('gone@example.org', 'gone@example.org', 'unsubscribed', '2025-01-01T00:00:00+00:00')")
    raw.execute("INSERT INTO ledger (issue_id, subscriber_id, status, attempts, message_id, sent_at)"
                " VALUES ('2025-01-06', 1, 'sent', 1, 'm1@x', '2025-01-06T09:00:00+00:00')")
    raw.execute("INSERT INTO events (at, kind, detail) VALUES ('2025-01-06T09:00:00+00:00', 'send.finish', 'old')")
    raw.execute(f"PRAGMA user_version = {version}")
    raw.commit()
    raw.close()


@pytest.mark.parametrize("version", [1, 4, 5])
def test_a_file_made_before_alembic_is_adopted_with_its_rows(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.sqlite3"
    _old_sqlite_file(path, version)
    store = SQLiteStore(path)
    assert store.counts("2025-01-06").sent == 1  # opening it upgraded it in place
    with store.connection() as conn:
        assert schema.current_revision(conn) == schema.HEAD
        assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
        assert [(s.email, s.status) for s in subscribers.list_subscribers(conn)] == [
            ("old@example.org", "subscribed"), ("gone@example.org", "unsubscribed")]
        row = conn.execute("SELECT message_id, sent_at, claimed_by, claimed_until FROM ledger").fetchone()
        assert tuple(row) == ("m1@x", "2025-01-06T09:00:00+00:00", None, None)
        assert conn.execute("SELECT detail FROM events").fetchone()[0] == "old"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"used_links", "delivery_events", "schedule_jobs", "desk_editors", "alembic_version"} <= tables
        ledger.claim_batch(conn, "2025-01-13", [1])  # and it works as a current file
    assert migrate.upgrade_sqlite(path).changed is False


def test_an_sqlite_file_at_an_unknown_revision_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "news.sqlite3"
    db.connect(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(LedgerError, match=r"news\.sqlite3: .*'9999_from_the_future'.*newer newsletter"):
        db.connect(path)
    with pytest.raises(LedgerError, match=r"news\.sqlite3: .*'9999_from_the_future'"):
        migrate.upgrade_sqlite(path)
    with sqlite3.connect(path) as raw:  # refused, not touched
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "9999_from_the_future"


def test_two_processes_opening_a_new_sqlite_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    code = ("import sys; from pathlib import Path; from newsletter.store import SQLiteStore\n"
            f"print(SQLiteStore(Path({str(path)!r})).counts('x').remaining)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM alembic_version").fetchone()[0] == 1


# -- PostgreSQL ---------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_refuses_an_empty_or_older_schema_until_upgraded(postgres_url: str) -> None:
    import psycopg

    from newsletter.store import postgres
    from newsletter.store.pgstore import PostgresStore

    store = PostgresStore(postgres_url, env={})
    with pytest.raises(LedgerError, match=r"@127\.0\.0\.1:\d+/t_\w+: the database schema is empty.*newsletter db upgrade"):
        store.counts("x")
    done = store.upgrade()
    assert (done.before, done.after, done.changed) == (None, schema.HEAD, True)
    assert store.counts("x").remaining == 0
    store.close()
    with psycopg.connect(postgres_url) as raw:  # a database whose revision row was never written: older
        raw.execute("DELETE FROM alembic_version")
    with pytest.raises(LedgerError, match="newsletter db upgrade"):
        postgres.connect(postgres.conninfo(postgres_url, {}))


@pytest.mark.postgres
def test_postgres_at_an_unknown_revision_is_refused_naming_it(postgres_url: str) -> None:
    import psycopg

    from newsletter.store import postgres
    from newsletter.store.pgstore import PostgresStore

    PostgresStore(postgres_url, env={}).upgrade()
    with psycopg.connect(postgres_url) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    info = postgres.conninfo(postgres_url, {})
    for attempt in (lambda: postgres.connect(info), lambda: migrate.upgrade_postgres(info)):
        with pytest.raises(LedgerError, match=r"@127\.0\.0\.1:\d+/t_\w+: .*'9999_from_the_future'.*newer newsletter"):
            attempt()


@pytest.mark.postgres
def test_a_postgres_database_made_before_alembic_is_adopted_with_its_rows(postgres_url: str) -> None:
    import psycopg

    from newsletter.store import postgres
    from newsletter.store.pgstore import PostgresStore

    with psycopg.connect(postgres_url) as raw:  # as the schema_version store left it at version 3
        for step in range(3):
            for statement in postgres._MIGRATIONS[step]:
                raw.execute(statement)
        raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        raw.execute("INSERT INTO schema_version VALUES (3)")
        raw.execute("INSERT INTO subscribers (email, email_key, status) VALUES ('old@example.org', 'old@example.org',"
                    " 'subscribed')")
    store = PostgresStore(postgres_url, env={})
    assert store.upgrade().before is None
    with store.connection() as conn:
        assert [s.email for s in subscribers.list_subscribers(conn)] == ["old@example.org"]
        assert conn.execute("SELECT to_regclass('public.schema_version') IS NULL").fetchone()[0]
        assert conn.execute("SELECT COUNT(*) FROM ledger WHERE claimed_by IS NULL").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM desk_editors").fetchone()[0] == 0
    store.close()


@pytest.mark.postgres
def test_concurrent_postgres_upgrades_take_turns(postgres_url: str) -> None:
    from newsletter.store import postgres

    info = postgres.conninfo(postgres_url, {})
    results, errors = [], []

    def upgrade() -> None:
        try:
            results.append(migrate.upgrade_postgres(info))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted((r.before or "") for r in results) == ["", schema.HEAD, schema.HEAD]
    assert {r.after for r in results} == {schema.HEAD}

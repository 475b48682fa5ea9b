"""The PostgreSQL database layer: connection settings, the versioned schema and its refusal, APScheduler's job store.

Without PostgreSQL these tests skip, unless NEWSLETTER_REQUIRE_POSTGRES=1 (CI), when they fail.
The full Store on PostgreSQL is not built yet (issue #18); this covers the layer it will stand on.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from newsletter.errors import LedgerError
from newsletter.store import postgres


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


def test_an_empty_database_is_refused_until_upgraded(postgres_url: str) -> None:
    info = postgres.conninfo(postgres_url, {})
    with pytest.raises(LedgerError, match="schema version 0.*newsletter db upgrade"):
        postgres.connect(info)
    with postgres.connect(info, upgrade=True) as conn:
        assert postgres.schema_version(conn) == postgres.SCHEMA_VERSION
        conn.execute("INSERT INTO subscribers (email, email_key, status, first_name) "
                     "VALUES ('a@example.org', 'a@example.org', 'subscribed', 'A')")
        conn.commit()
    with postgres.connect(info) as conn:  # now accepted without upgrading, and the row is there
        assert conn.execute("SELECT first_name FROM subscribers").fetchone()[0] == "A"


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    info = postgres.conninfo(postgres_url, {})
    with postgres.connect(info, upgrade=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (postgres.SCHEMA_VERSION + 1,))
        conn.commit()
    for upgrade in (False, True):
        with pytest.raises(LedgerError, match="written by a newer newsletter"):
            postgres.connect(info, upgrade=upgrade)


def test_two_processes_upgrading_at_once_take_turns(postgres_url: str) -> None:
    info = postgres.conninfo(postgres_url, {})
    starts: list[int] = []
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            with psycopg.connect(info) as conn:
                starts.append(postgres.apply_schema(conn, info))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(starts) == [0, postgres.SCHEMA_VERSION, postgres.SCHEMA_VERSION]


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

"""The throwaway PostgreSQL cluster the store tests run on: it starts, accepts SQL, isolates databases.

Without PostgreSQL these tests skip, unless NEWSLETTER_REQUIRE_POSTGRES=1 (CI), when they fail.
"""

from __future__ import annotations

import psycopg


def test_cluster_answers_sql_on_loopback(postgres_server) -> None:
    assert postgres_server.host == "127.0.0.1"
    with psycopg.connect(postgres_server.url()) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        address = conn.execute("SELECT inet_server_addr()::text").fetchone()[0]
    assert int(version) >= 150000
    assert address.startswith("127.0.0.1")


def test_each_test_gets_its_own_empty_database(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        conn.execute("CREATE TABLE probe (id integer PRIMARY KEY)")
        conn.execute("INSERT INTO probe VALUES (1)")
        # SKIP LOCKED is what the cross-process claims rest on: check the server honours it.
        conn.commit()
        with psycopg.connect(postgres_url) as other:
            conn.execute("SELECT id FROM probe FOR UPDATE")
            skipped = other.execute("SELECT id FROM probe FOR UPDATE SKIP LOCKED").fetchall()
    assert tables == 0
    assert skipped == []

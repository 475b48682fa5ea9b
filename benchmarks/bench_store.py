"""The two stores side by side: a 100k-row CSV import, the ledger's per-message cost, and the start check.

    PYTHONPATH=. python3 -m benchmarks.bench_store [--rows 100000] [--ledger 20000]

Runs a throwaway PostgreSQL (tests/pg_server.py) on 127.0.0.1 next to a SQLite file on the same disk and prints
each figure with SQLite's as the reference, measured in the same run. No goal: PostgreSQL pays a round trip per
statement that SQLite does not, and what matters is whether that is tolerable, which the numbers show.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pg_server import postgres_instance  # noqa: E402

from newsletter.store import SQLiteStore, Store, ledger, sqlite, subscribers  # noqa: E402
from newsletter.store.pgstore import PostgresStore  # noqa: E402


def _import(store: Store, csv_file: Path) -> float:
    with store.connection() as conn:
        started = time.perf_counter()
        report = subscribers.import_csv(conn, csv_file)
        took = time.perf_counter() - started
    assert report.ok and report.added > 0
    return took


def _ledger(store: Store, n: int) -> float:
    """Seconds per message for claim (in chunks of 100) + mark_sent, committing every 50 results, as send does."""
    with store.connection() as conn:
        ids = [s.id for s in subscribers.iter_subscribed(conn)][:n]
        book = ledger.Ledger(conn, "bench", commit_every=50, commit_interval=3600)
        started = time.perf_counter()
        for start in range(0, len(ids), 100):
            for sid in book.claim_batch(ids[start:start + 100]):
                book.mark_sent(sid, f"m{sid}@bench")
        book.flush()
        return (time.perf_counter() - started) / len(ids)


def _start_check(store: Store, rounds: int = 200) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        with store.connection() as conn:
            conn.execute("SELECT 1").fetchone()
    return (time.perf_counter() - started) / rounds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--ledger", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, postgres_instance() as server:
        csv_file = Path(tmp) / "list.csv"
        with csv_file.open("w", encoding="utf-8") as out:
            out.write("email,name\n")
            out.writelines(f"reader{i}@example.org,Reader {i}\n" for i in range(args.rows))
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute('CREATE DATABASE "bench"')
        pg = PostgresStore(server.url("bench"), pool_size=2, env={})
        pg.upgrade()
        lite = SQLiteStore(Path(tmp) / "bench.sqlite3")
        stores: dict[str, Any] = {"sqlite": lite, "postgresql": pg}
        figures = {name: (_import(s, csv_file), _ledger(s, args.ledger), _start_check(s)) for name, s in stores.items()}
        pg.close()
    print(f"{'measure':<44}{'postgresql':>14}{'sqlite (reference)':>20}{'ratio':>9}")
    labels = (f"import {args.rows} CSV rows (s)", f"ledger claim+mark_sent, per message (us, {args.ledger})",
              "connection() + SELECT 1 (us; pool vs open+check)")
    scale = (1.0, 1e6, 1e6)
    for i, label in enumerate(labels):
        p, s = figures["postgresql"][i] * scale[i], figures["sqlite"][i] * scale[i]
        print(f"{label:<44}{p:>14.1f}{s:>20.1f}{p / s:>8.2f}x")
    print(f"(sqlite: WAL, synchronous=NORMAL, checkpoints every {sqlite.WAL_AUTOCHECKPOINT_PAGES} pages; "
          "postgresql: the test cluster, fsync off, over 127.0.0.1 TCP)")


if __name__ == "__main__":
    main()

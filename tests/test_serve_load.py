"""Serving under load on two processes over one database while a send runs (issue 18, item 4).

4,000 subscribers; `newsletter send` delivers the issue to the Maildir outbox in its own process while
4,000 RFC 8058 one-click unsubscribes (POST `List-Unsubscribe=One-Click` to the link of each
subscriber's List-Unsubscribe header) arrive 200 at a time, spread over two `newsletter serve`
processes. None may be lost (every subscriber is unsubscribed afterwards, each logged once) and none
may be answered 5xx. The figures (throughput, p50/p99 latency) are printed, not asserted: timings on a
shared machine are noise, and speed goals belong in benchmarks/.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import email
import email.policy
import email.utils
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import sample_project

from serve_processes import SECRET, STORES, cli_env, post_one_click, serve_processes, server_logs, write_config
from newsletter.approval import approve
from newsletter.jobs.issues import build, compose
from newsletter.settings import Settings, load_settings
from newsletter.store import open_store, subscribers
from newsletter.tokens import make_token

SUBSCRIBERS = 4000
CONCURRENCY = 200
DATE = "2026-11-25"

pytestmark = pytest.mark.slow


def _site(root: Path, database_url: str | None) -> Settings:
    sample_project(root)
    (root / "content" / "subscribers.csv").unlink()  # the sample's 8: this list is the 4,000 below
    config = write_config(root, public="https://news.example.org", database=database_url)
    if database_url is not None:
        from newsletter.store.pgstore import PostgresStore  # psycopg: only for the PostgreSQL run

        PostgresStore(database_url, env={}).upgrade()
    settings = load_settings(config, env={"NEWSLETTER_SECRET": SECRET}, overrides={"max_age_days": 3650})
    people = root / "people.csv"
    with people.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "first_name"])
        writer.writerows([f"reader{n:04d}@example.net", f"Reader {n}", "Reader"] for n in range(SUBSCRIBERS))
    with open_store(settings).connection() as conn:
        assert subscribers.import_csv(conn, people).added == SUBSCRIBERS
    issue = compose(settings, date=dt.date.fromisoformat(DATE))
    build(settings, issue.folder)
    approve(issue.folder)
    return settings


def _first_link(outbox: Path, deadline: float) -> tuple[str, str]:
    """(recipient, List-Unsubscribe https link) of a message the running send already delivered."""
    while time.monotonic() < deadline:
        for path in sorted((outbox / "new").glob("*"))[:1]:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            links = re.findall(r"<(https://[^>]+)>", str(message["List-Unsubscribe"]))
            return email.utils.parseaddr(str(message["To"]))[1], links[0]
        time.sleep(0.05)
    raise AssertionError("the send delivered nothing in time")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.fixture(params=STORES)
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the SQLite file, else a fresh PostgreSQL database (this process's pools closed after)."""
    if request.param == "sqlite":
        yield None
        return
    from newsletter.store.pgstore import close_shared

    try:
        yield request.getfixturevalue("postgres_url")
    finally:
        close_shared()


def test_4000_one_click_unsubscribes_on_two_processes_during_a_send(tmp_path: Path, database_url: str | None) -> None:
    settings = _site(tmp_path / "site", database_url)
    config = settings.root / "newsletter.toml"
    with open_store(settings).connection() as conn:
        people = [(s.id, s.email) for s in subscribers.list_subscribers(conn)]
    with serve_processes(config, 2, logs=tmp_path) as urls:
        send_log = (tmp_path / "send.log").open("wb")
        sender = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), "send", DATE,
                                   "--rate", "250"], cwd=settings.root, env=cli_env(), stdout=send_log,
                                  stderr=subprocess.STDOUT)
        try:
            recipient, link = _first_link(settings.root / "outbox", time.monotonic() + 60)
            # The links below are the ones the send writes: checked against a delivered message.
            by_email = dict((e, i) for i, e in people)
            assert link == f"https://news.example.org/unsubscribe/{make_token(SECRET, 'unsubscribe', by_email[recipient], recipient)}"
            paths = [f"/unsubscribe/{make_token(SECRET, 'unsubscribe', sid, address)}" for sid, address in people]
            assert sender.poll() is None, "the send must still run while the unsubscribes arrive"
            started = time.perf_counter()
            results = asyncio.run(post_one_click(urls, paths, CONCURRENCY))
            elapsed = time.perf_counter() - started
            still_sending = sender.poll() is None
            assert sender.wait(300) == 0, (tmp_path / "send.log").read_text("utf-8", "replace")
        finally:
            if sender.poll() is None:
                sender.kill()
            send_log.close()
        logs = server_logs(tmp_path)
    codes: dict[int, int] = {}
    for status, _ in results:
        codes[status] = codes.get(status, 0) + 1
    latencies = [seconds for _, seconds in results]
    print(f"\n{SUBSCRIBERS} one-click unsubscribes, {CONCURRENCY} concurrent, 2 processes, "
          f"{'PostgreSQL' if database_url else 'SQLite'}: "
          f"{elapsed:.1f} s, {SUBSCRIBERS / elapsed:.0f} requests/s, p50 {_percentile(latencies, 0.5) * 1000:.0f} ms, "
          f"p99 {_percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
          f"statuses {codes}; send still running at the end: {still_sending}")
    assert codes == {200: SUBSCRIBERS}, f"{codes}\n{logs[-5000:]}"
    assert "Traceback" not in logs, logs[-5000:]
    with open_store(settings).connection() as conn:
        left = {s.status for s in subscribers.list_subscribers(conn)}
        logged = conn.execute("SELECT COUNT(*), COUNT(DISTINCT detail) FROM events"
                              " WHERE kind = 'web.unsubscribe'").fetchone()
        claimed = conn.execute("SELECT COUNT(*) FROM ledger WHERE status = 'claimed'").fetchone()[0]
    assert left == {"unsubscribed"}  # none lost
    assert tuple(logged) == (SUBSCRIBERS, SUBSCRIBERS)  # each one recorded once
    assert claimed == 0  # the send finished cleanly around them

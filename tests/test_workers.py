"""Several sender processes on one issue (`send --workers N`, `worker`), on SQLite and on PostgreSQL.

Real processes, a real aiosmtpd server on 127.0.0.1 and real databases (a SQLite file; a fresh database on
the session's throwaway PostgreSQL cluster). The leases are checked from both sides: a killed sender's rows
are taken over only once its lease has run out (a sender on another host, whose death nobody here can see),
and a live sender's rows are never taken, even when sending one claim batch takes longer than the lease.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from faults import FaultInjectingHandler, fault_server

from newsletter.models import Subscriber
from newsletter.settings import Settings

TESTS = Path(__file__).resolve().parent


from crash_support import crash_loop  # noqa: E402


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str | None:
    """None for the project's SQLite file, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


def _env(server: Any) -> dict[str, str]:
    return {**crash_loop.sender_env(server), "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}


def _newsletter(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "newsletter", *args], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _rows(settings: Settings, sql: str, *args: object) -> list[tuple[object, ...]]:
    return crash_loop._query(settings, sql, *args)  # type: ignore[no-any-return]


def _addresses(settings: Settings) -> set[str]:
    return {str(r[0]) for r in _rows(settings, "SELECT email FROM subscribers WHERE status = 'subscribed'")}


def _wait_for_deliveries(handler: FaultInjectingHandler, count: int, sender: subprocess.Popen[str]) -> None:
    """Until the server has taken `count` messages; the sender must still be running meanwhile."""
    while len(handler.messages) < count:
        assert sender.poll() is None, sender.communicate()[0]
        time.sleep(0.005)


@pytest.mark.slow
def test_workers_and_a_joining_worker_deliver_each_recipient_once(tmp_path: Path, database: str | None) -> None:
    settings, folder = crash_loop._prepare(tmp_path / "site", 240, database)
    handler = FaultInjectingHandler(delay=0.04)  # about 5 s of sending: the joining worker arrives mid-send
    with fault_server(handler) as server:
        env = _env(server)
        send = _newsletter(settings.root, env, "send", folder.name, "--workers", "2")
        while not handler.messages and send.poll() is None:
            time.sleep(0.01)
        join = _newsletter(settings.root, env, "worker", folder.name)  # another host would run the same
        out_send, _ = send.communicate(timeout=120)
        out_join, _ = join.communicate(timeout=120)
        received = handler.recipients()
    assert send.returncode == 0 and join.returncode == 0, out_send + out_join
    assert "Traceback" not in out_send + out_join
    assert received == Counter({address: 1 for address in _addresses(settings)})
    senders = _rows(settings, "SELECT claimed_by, COUNT(*) FROM ledger WHERE issue_id = ? AND status = 'sent'"
                              " GROUP BY claimed_by", folder.name)
    assert len(senders) == 3 and all(int(n) > 0 for _, n in senders)  # type: ignore[call-overload]
    assert sum(int(n) for _, n in senders) == 240  # type: ignore[call-overload]


ELSEWHERE = """
import sys
from newsletter.jobs import delivery
from newsletter.send import Lease, send_issue
from newsletter.settings import load_settings
from newsletter.store import open_store
from newsletter.transports import transport_factory
from newsletter.policies import SendPolicy

settings = load_settings()
folder = settings.path(settings.issues_dir) / sys.argv[1]
personaliser = delivery.personaliser_for(settings, folder)
# A sender on another host: nobody here can see whether its process is alive, only its lease.
lease = Lease("other-host:1:4242:" + sys.argv[2], seconds=float(sys.argv[3]))
with open_store(settings).connection() as conn:
    send_issue(conn, folder.name, make_message=personaliser.message, transport_factory=transport_factory(settings),
               policy=SendPolicy(connections=1, claim_size=20), lease=lease)
"""


@pytest.mark.slow
def test_a_killed_workers_rows_are_taken_over_only_after_its_lease(tmp_path: Path, database: str | None) -> None:
    from newsletter.jobs.delivery import send_full

    settings, folder = crash_loop._prepare(tmp_path / "site", 60, database)
    handler = FaultInjectingHandler(delay=0.05)
    with fault_server(handler) as server:
        env = _env(server)
        other = subprocess.Popen([sys.executable, "-c", ELSEWHERE, folder.name, "0badc0de", "4"], cwd=settings.root,
                                 env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _wait_for_deliveries(handler, 3, other)
        other.send_signal(signal.SIGKILL)
        other.wait()
        held = _rows(settings, "SELECT s.email, l.claimed_until FROM ledger l JOIN subscribers s ON s.id ="
                               " l.subscriber_id WHERE l.issue_id = ? AND l.status = 'claimed'", folder.name)
        assert len(held) >= 15  # its claim batch of 20, less what it had sent
        lapses = {str(email): dt.datetime.fromisoformat(str(until)).timestamp() for email, until in held}
        sent_at: dict[str, float] = {}
        here = dataclasses.replace(settings, transport=env["NEWSLETTER_TRANSPORT"])
        report = send_full(here, folder, progress=lambda kind, s: sent_at.setdefault(s.email, time.time()))
        received = handler.recipients()
    assert report.stopped_early is None and set(received) == _addresses(settings)
    assert _rows(settings, "SELECT COUNT(*) FROM ledger WHERE status = 'sent'")[0][0] == 60
    # At most the message in flight when it died (and one queued) went out twice; never a held row otherwise.
    assert sum(n - 1 for n in received.values()) <= 2
    assert report.resent_after_crash == len(held)
    for email, lapse in lapses.items():
        assert sent_at[email] >= lapse - 0.05, f"{email} was taken over before its lease ended"
    # The others went out first, without waiting for the lease.
    assert min(sent_at[e] for e in sent_at if e not in lapses) < min(lapses.values())


@pytest.mark.slow
def test_a_live_workers_rows_are_never_taken_even_when_a_batch_outlasts_the_lease(tmp_path: Path,
                                                                                 database: str | None) -> None:
    # A 3 s lease while each worker's claim batch of 50 takes 50 x 0.1 s = 5 s to send: without renewals the
    # other worker would take over the rest of the batch and send it a second time.
    settings, folder = crash_loop._prepare(tmp_path / "site", 120, database, settings_lines="lease_seconds = 3")
    assert settings.lease_seconds == 3
    handler = FaultInjectingHandler(delay=0.1)
    with fault_server(handler) as server:
        send = _newsletter(settings.root, _env(server), "send", folder.name, "--workers", "2")
        output, _ = send.communicate(timeout=120)
        received = handler.recipients()
    assert send.returncode == 0, output
    assert received == Counter({address: 1 for address in _addresses(settings)})
    assert _rows(settings, "SELECT COUNT(*) FROM events WHERE kind = 'send.takeover'")[0][0] == 0
    assert "re-sent" in output and _rows(settings, "SELECT COUNT(*) FROM ledger WHERE status = 'sent'")[0][0] == 120


@pytest.mark.slow
def test_sigterm_stops_every_worker_gracefully(tmp_path: Path, database: str | None) -> None:
    settings, folder = crash_loop._prepare(tmp_path / "site", 200, database)
    handler = FaultInjectingHandler(delay=0.02)
    with fault_server(handler) as server:
        env = _env(server)
        send = _newsletter(settings.root, env, "send", folder.name, "--workers", "3")
        _wait_for_deliveries(handler, 10, send)
        send.send_signal(signal.SIGTERM)  # the parent passes it on to its workers
        output, _ = send.communicate(timeout=60)
        first = handler.recipients()
        assert send.returncode == 130, output
        assert "SIGTERM: finishing the message in flight, then stopping" in output
        claimed = _rows(settings, "SELECT COUNT(*) FROM ledger WHERE status = 'claimed'")[0][0]
        again = _newsletter(settings.root, env, "send", folder.name, "--workers", "3")
        rest, _ = again.communicate(timeout=120)
        received = handler.recipients()
    assert claimed == 0  # every worker recorded what it sent and gave the rest back
    assert again.returncode == 0, rest
    assert received == Counter({address: 1 for address in _addresses(settings)})
    assert 10 <= sum(first.values()) < 200


def test_a_progress_callback_sees_every_workers_outcomes(tmp_path: Path) -> None:
    """In-process: the parent relays its workers' outcomes to one progress callback (the CLI's bar)."""
    from newsletter.jobs.fleet import send_with_workers

    settings, folder = crash_loop._prepare(tmp_path / "site", 30, None)
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def progress(kind: str, subscriber: Subscriber) -> None:
        with lock:
            seen.append((kind, subscriber.id))

    maildir = dataclasses.replace(settings, transport=f"maildir:{tmp_path / 'box'}")
    report = send_with_workers(maildir, folder, workers=2, progress=progress)
    assert report.sent == 30 and report.skipped == 0 and not report.interrupted
    assert sorted(sid for _, sid in seen) == sorted(int(r[0]) for r in _rows(settings, "SELECT id FROM subscribers"))
    assert len(list((tmp_path / "box" / "new").iterdir())) == 30


def test_an_unapproved_issue_or_a_short_lease_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    from newsletter.errors import ApprovalError, ConfigError
    from newsletter.jobs.fleet import send_with_workers

    settings, folder = crash_loop._prepare(tmp_path / "site", 5, None)
    with pytest.raises(ConfigError, match="lease_seconds"):
        send_with_workers(dataclasses.replace(settings, lease_seconds=1.0), folder, workers=2)
    (folder / "approval.json").unlink()
    with pytest.raises(ApprovalError):
        send_with_workers(settings, folder, workers=2)
    assert _rows(settings, "SELECT COUNT(*) FROM ledger")[0][0] == 0

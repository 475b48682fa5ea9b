"""The send loop: pending ledger rows -> claimed (leased) -> Message -> transport -> sent | deferred | failed.

`send_issue` is one sender: a process's connection to the database plus `connections` threads, each with its
own transport (newsletter.send.pool). Several senders, in one process or on several hosts, may send the same
issue at once: each holds the rows it claimed under a lease (newsletter.store.claims), so none sends a row
another live sender holds, and the rows of a sender that died are taken over once its lease has lapsed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from newsletter.errors import StopRun
from newsletter.models import Message, Subscriber
from newsletter.policies import RetryPolicy, SendPolicy, SendReport
from newsletter.store.checkpoints import BackgroundCheckpoints
from newsletter.store.claims import Claims, Lease
from newsletter.store.dbapi import DatabaseError, ledger_error, log_event
from newsletter.store.ledger import already_final
from newsletter.transports import Transport

from .pool import Pool
from .run import REFUSAL_LIMIT, Progress, Run

__all__ = ["RetryPolicy", "SendPolicy", "SendReport", "send_issue", "REFUSAL_LIMIT", "Lease", "DEFAULT_LEASE"]

#: Seconds a claim lasts unrenewed (the `lease_seconds` setting); renewed every third of it.
DEFAULT_LEASE = 60.0
#: Longest pause between looks while other live senders hold the rows still to do.
_WAIT_STEP = 0.5


def send_issue(
    conn: Any,
    issue_id: str,
    *,
    make_message: Callable[[Subscriber], Message],
    transport_factory: Callable[[], Transport],
    policy: SendPolicy = SendPolicy(),
    retry: RetryPolicy = RetryPolicy(),
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] | None = None,
    pause_check: Callable[[], str | None] | None = None,
    pause_interval: float = 2.0,
    lease: Lease | None = None,
) -> SendReport:
    """Send `issue_id` to every subscribed subscriber without a final ledger row, claiming a batch at a time.

    Returns when nothing is left to claim and no other live sender holds rows of the issue (their rows are
    taken over if their lease lapses). `lease` names this sender, its run (rows deferred by senders of the
    same run are left for a later one) and how long its claims last unrenewed.
    `sleep` replaces the (interruptible) wait used for backoff and rate limiting, for tests.
    `pause_check` (newsletter.bounces.pause) is asked at most every `pause_interval` seconds whether the
    issue's bounce or complaint rate says to stop; its answer becomes `stopped_early`.
    """
    connections, rate = policy.connections, policy.rate
    if connections < 1:
        raise ValueError("connections must be at least 1")
    started = time.monotonic()
    stop = stop if stop is not None else threading.Event()
    # commit_every=1 (the default): each result is committed before the next message is handed over, with the
    # results that arrived together in one commit (newsletter.send.run); never more than 2 x connections of
    # them are out uncommitted, so the ledger's own count is only a backstop, set one above that: at 2 x
    # connections it fired whenever every message out had come back before the next hand-off, a commit of its
    # own just before the hand-off's (on PostgreSQL a round trip of its own: 8 % of the messages of 4 workers
    # with one connection each, from pg_stat_statements). commit_every > 1: its batches.
    grouped = policy.commit_every <= 1
    claims = Claims(conn, issue_id, lease or Lease.new(DEFAULT_LEASE),
                    commit_every=2 * connections + 1 if grouped else policy.commit_every,
                    commit_interval=policy.commit_interval)
    run = Run(conn, claims, stop, progress, pause_check, pause_interval, group_commits=grouped)
    try:
        skipped = already_final(conn, issue_id)
        log_event(conn, "send.start", issue_id=issue_id,
                  detail=f"connections={connections} rate={rate} worker={claims.lease.worker}")
        conn.commit()
    except DatabaseError as exc:
        claims.end()
        raise ledger_error(conn, exc, what=f"sending issue {issue_id}") from exc
    transports: list[Transport] = []
    try:
        try:
            for _ in range(connections):
                transports.append(transport_factory())
        except StopRun as exc:
            run.stopped_early = str(exc)
        if run.stopped_early is None:
            _send_all(run, transports, make_message, retry, rate, sleep, policy.claim_size)
    finally:
        for transport in transports:
            transport.close()
        claims.end()
    report = SendReport(
        issue_id=issue_id, sent=run.sent, deferred=run.deferred, failed=run.failed, skipped=skipped,
        resent_after_crash=run.resent, duration=time.monotonic() - started, stopped_early=run.stopped_early,
        interrupted=stop.is_set(), bounced=run.bounced,
    )
    try:
        lost = f" lost_leases={claims.lost}" if claims.lost else ""
        log_event(conn, "send.finish", issue_id=issue_id, detail=report.log_line() + lost)
        conn.commit()
    except DatabaseError as exc:
        raise ledger_error(conn, exc, what=f"sending issue {issue_id}") from exc
    return report


def _claim_loop(run: Run, make_message: Callable[[Subscriber], Message], claim_size: int) -> None:
    """Claim and dispatch until nothing is left; while other live senders hold rows, wait and look again."""
    assert run.workers is not None
    while not run.should_stop():
        batch = run.ledger.next_batch(max(1, claim_size))
        if batch:
            run.dispatch(batch, make_message)
            continue
        wait = run.ledger.look_around()
        if wait is None:
            return
        run.workers.collect(run.record, timeout=None)
        run.ledger.flush()
        # 0: rows to take over now (a dead holder's); a moment's pause in case another claimer is taking them
        run.stop.wait(min(wait + 0.05, _WAIT_STEP))


def _send_all(run: Run, transports: list[Transport], make_message: Callable[[Subscriber], Message],
              retry: RetryPolicy, rate: float | None, sleep: Callable[[float], None] | None,
              claim_size: int) -> None:
    # SQLite: the WAL is checkpointed on a thread of its own, so the thread that hands messages over never
    # stops for a checkpoint's fsyncs while the transports run dry (newsletter.store.checkpoints).
    checkpoints = BackgroundCheckpoints(run.conn, lambda: run.ledger.recorded)
    run.on_tick = checkpoints.check
    run.workers = workers = Pool(transports, retry, rate, sleep)
    try:
        _claim_loop(run, make_message, claim_size)
    except KeyboardInterrupt:
        # No handler was installed for SIGINT: treat Ctrl-C like the stop event.
        run.stop.set()
        workers.abort.set()
    except DatabaseError as exc:
        workers.abort.set()
        raise ledger_error(run.conn, exc, what=f"sending issue {run.ledger.issue_id}") from exc
    except BaseException:
        workers.abort.set()
        raise
    finally:
        try:
            workers.finish(run.record, run.ledger.renew_if_due)
            run.ledger.release_all()  # every outcome is recorded: what is still held never went out
        except DatabaseError as exc:  # the database failed again while recording the messages in flight
            workers.abort.set()
            raise ledger_error(run.conn, exc,
                               what=f"recording the messages in flight of {run.ledger.issue_id}") from exc
        finally:
            checkpoints.close()
    if run.error is not None:
        raise run.error

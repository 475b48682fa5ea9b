"""Crash loop: `newsletter send` killed at random moments and resumed until done; prints losses and duplicates.

    python scripts/crash_loop.py                      # full size: 2,000 recipients, 20 kills, SIGKILL and SIGTERM
    python scripts/crash_loop.py --recipients 300 --kills 6 --signal KILL --json

A sample project is prepared in a temporary folder (composed, built, approved, N subscribers
imported); a recording aiosmtpd server runs in this process on 127.0.0.1, slowed a little so the
kills land mid-run. Each run is `python -m newsletter send ISSUE` in a subprocess; after a random
pause following its first delivery it gets the signal, and right after it dies the ledger rows
still 'claimed' are counted from the SQLite file: those are the messages that may have been in
flight, the bound on duplicates. The last run goes to completion.

Measured: lost (subscribers whose Message-ID the server never accepted), duplicates (Message-IDs
accepted more than once), and the in-flight bound. tests/test_crash_loop.py runs a smaller size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from faults import FaultInjectingHandler, copy_sample_project, fault_server, prepare_issue, write_subscribers_csv  # noqa: E402

from newsletter.personalise import message_id_for  # noqa: E402
from newsletter.settings import Settings, load_settings  # noqa: E402

__all__ = ["CrashLoopResult", "run_crash_loop", "main"]

SECRET = "crash-loop-signing-secret-not-for-production"
_RESENT = re.compile(r"resent_after_crash=(\d+)")
_CLAIMED = "SELECT COUNT(*) FROM ledger WHERE issue_id = ? AND status = 'claimed'"


@dataclass(frozen=True)
class CrashLoopResult:
    """What one crash loop measured."""

    recipients: int
    signal: str
    runs: int
    kills: int
    lost: int  # subscribers whose message the server never accepted
    not_sent_in_ledger: int  # ledger rows not 'sent' at the end (must be 0)
    duplicates: int  # extra acceptances of a Message-ID already accepted
    in_flight_bound: int  # sum of 'claimed' rows right after each kill
    claimed_after_kills: tuple[int, ...]
    resent_after_crash: int  # what the completed runs reported as "re-sent after crash"
    accepted: int  # messages the server accepted in all
    seconds: float


def _prepare(root: Path, recipients: int) -> tuple[Settings, Path]:
    copy_sample_project(root)
    csv_path = root / "people.csv"
    write_subscribers_csv(csv_path, recipients)
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})
    return settings, prepare_issue(settings, subscribers_csv=csv_path).folder


def _query(db_path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _wait_for_delivery(proc: subprocess.Popen[bytes], handler: FaultInjectingHandler, before: int,
                       timeout: float) -> bool:
    """True once the server accepted a message from this run; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(handler.messages) > before:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise TimeoutError(f"no delivery within {timeout} s")


def run_crash_loop(root: Path, *, recipients: int, kills: int, sig: signal.Signals = signal.SIGKILL,
                   seed: int = 1, delay: float = 0.005, max_pause: float = 0.3, kill_after: int | None = None,
                   run_timeout: float = 300.0) -> CrashLoopResult:
    """Prepare a project in `root`, then send, kill and resume until the issue is done.

    Each of the first `kills` runs gets `sig` a random 0..`max_pause` seconds after its first delivery,
    or, with `kill_after`, as soon as the server has accepted that many messages from the run.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    settings, folder = _prepare(root, recipients)
    db_path = settings.path(settings.database)
    handler = FaultInjectingHandler(delay=delay)
    claimed: list[int] = []
    runs = 0
    with fault_server(handler) as server:
        env = {**os.environ, "NEWSLETTER_SECRET": SECRET,
               "NEWSLETTER_TRANSPORT": server.url(query="starttls=off&timeout=30")}
        env.pop("NEWSLETTER_CONFIG", None)
        while True:
            runs += 1
            before = len(handler.messages)
            log = root / f"run-{runs}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "newsletter", "send", folder.name], cwd=root,
                                        env=env, stdout=out, stderr=subprocess.STDOUT)
                killed = False
                try:
                    if len(claimed) < kills and _wait_for_delivery(proc, handler, before + (kill_after or 1) - 1,
                                                                   run_timeout):
                        if kill_after is None:
                            time.sleep(rng.uniform(0.0, max_pause))
                        if proc.poll() is None:
                            proc.send_signal(sig)
                            killed = True
                    code = proc.wait(timeout=run_timeout)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            output = log.read_text(errors="replace")
            if "Traceback" in output:
                raise RuntimeError(f"run {runs} crashed with a traceback:\n{output}")
            if killed:
                expected = (-signal.SIGKILL,) if sig == signal.SIGKILL else (130, 0)
                if code not in expected:
                    raise RuntimeError(f"run {runs} exited {code} after {sig.name}:\n{output}")
                claimed.append(int(_query(db_path, _CLAIMED, folder.name)[0][0]))
                continue
            if code != 0:
                raise RuntimeError(f"run {runs} exited {code}:\n{output}")
            break
    accepted = handler.accepted_ids()
    domain = settings.sender_email.rpartition("@")[2]
    ids = [int(r[0]) for r in _query(db_path, "SELECT id FROM subscribers WHERE status = 'subscribed'")]
    expected = {message_id_for(SECRET, folder.name, sid, domain) for sid in ids}
    not_sent = _query(db_path, "SELECT COUNT(*) FROM subscribers s LEFT JOIN ledger l ON l.subscriber_id = s.id"
                               " AND l.issue_id = ? WHERE l.status IS NOT 'sent'", folder.name)[0][0]
    details = _query(db_path, "SELECT detail FROM events WHERE kind = 'send.finish' AND issue_id = ?", folder.name)
    resent = sum(int(m.group(1)) for (detail,) in details if (m := _RESENT.search(str(detail))))
    return CrashLoopResult(
        recipients=recipients, signal=sig.name, runs=runs, kills=len(claimed),
        lost=len(expected - set(accepted)), not_sent_in_ledger=int(not_sent),  # type: ignore[call-overload]
        duplicates=sum(n - 1 for n in accepted.values()), in_flight_bound=sum(claimed),
        claimed_after_kills=tuple(claimed), resent_after_crash=resent, accepted=sum(accepted.values()),
        seconds=round(time.monotonic() - started, 1),
    )


def _line(result: CrashLoopResult) -> str:
    return (f"{result.signal}: {result.recipients} recipients, {result.runs} runs, {result.kills} kills, "
            f"lost {result.lost}, duplicates {result.duplicates} (in-flight bound {result.in_flight_bound}; "
            f"reported re-sent after crash {result.resent_after_crash}), {result.accepted} accepted, "
            f"{result.seconds} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--signal", choices=("KILL", "TERM", "both"), default="both")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--max-pause", type=float, default=0.5, help="longest pause after a run's first delivery")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    signals = [signal.SIGKILL, signal.SIGTERM] if args.signal == "both" else [signal.Signals[f"SIG{args.signal}"]]
    results = []
    for sig in signals:
        with tempfile.TemporaryDirectory(prefix="crash-loop-") as tmp:
            result = run_crash_loop(Path(tmp) / "site", recipients=args.recipients, kills=args.kills, sig=sig,
                                    seed=args.seed, max_pause=args.max_pause)
        results.append(result)
        if not args.json:
            print(_line(result), flush=True)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    ok = all(r.lost == 0 and r.not_sent_in_ledger == 0 and r.duplicates <= r.in_flight_bound for r in results)
    ok = ok and all(r.duplicates == 0 for r in results if r.signal == "SIGTERM")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

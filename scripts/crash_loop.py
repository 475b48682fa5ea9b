"""Crash loop: `newsletter send` killed at random moments and resumed until done; prints losses and duplicates.

    python scripts/crash_loop.py                      # full size: 2,000 recipients, 20 kills, SIGKILL and SIGTERM
    python scripts/crash_loop.py --recipients 300 --kills 6 --signal KILL --json
    python scripts/crash_loop.py --workers 3          # `send --workers 3`; random workers killed (see below)
    python scripts/crash_loop.py --workers 3 --database postgresql://USER@HOST:PORT/postgres

A sample project is prepared in a temporary folder (composed, built, approved, N subscribers
imported); a recording aiosmtpd server runs in this process on 127.0.0.1, slowed a little so the
kills land mid-run. Each run is `python -m newsletter send ISSUE` in a subprocess; after a random
pause following its first delivery it gets the signal, and right after it dies the ledger rows
still 'claimed' are counted from the SQLite file: those are the messages that may have been in
flight, the bound on duplicates. The last run goes to completion.

With `--workers N` (scripts/crash_loop_workers.py) one `newsletter send ISSUE --workers N` runs while the
loop kills random sender processes: SIGKILL one worker at a time (a `newsletter worker ISSUE` joins in
its place, so N keep working; the others take the dead one's rows over), or SIGTERM to all of them at
once (then the send is started again). The in-flight bound of a SIGKILL is the rows the killed worker
held when it died: what the others took over from it (the `send.takeover` events) plus any it still
holds at the end. `--database postgresql://...` names a PostgreSQL server: each loop runs in a fresh
database created there (and dropped afterwards).

Measured: lost (subscribers whose Message-ID the server never accepted), duplicates (Message-IDs
accepted more than once), and the in-flight bound. tests/test_crash_loop.py runs a smaller size.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from faults import FaultInjectingHandler, copy_sample_project, fault_server, write_subscribers_csv  # noqa: E402

from newsletter.personalise import message_id_for  # noqa: E402
from newsletter.settings import Settings, load_settings  # noqa: E402

__all__ = ["CrashLoopResult", "sender_env", "run_crash_loop", "run_workers_crash_loop", "fresh_postgres_database", "main"]

SECRET = "crash-loop-signing-secret-not-for-production"
_RESENT = re.compile(r"resent_after_crash=(\d+)")
_TAKEOVER = re.compile(r"rows=(\d+) from=(\S+)")
_CLAIMED = "SELECT COUNT(*) FROM ledger WHERE issue_id = ? AND status = 'claimed'"


def sender_env(server: Any) -> dict[str, str]:
    """The environment of a `newsletter send`/`worker` process of the loop: our secret, the recording server."""
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET, "NEWSLETTER_TRANSPORT": server.url(query="starttls=off&timeout=30")}
    env.pop("NEWSLETTER_CONFIG", None)
    return env


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
    workers: int = 1  # sender processes (`send --workers N`); 1: the plain `newsletter send`
    database: str = "sqlite"


def _prepare(root: Path, recipients: int, database: str | None = None, *, settings_lines: str = "") -> tuple[Settings, Path]:
    """A sample project in `root` with `recipients` subscribers and an approved issue (database: a URL or SQLite;
    `settings_lines` are added to its newsletter.toml)."""
    from newsletter.approval import approve
    from newsletter.jobs.issues import build, compose
    from newsletter.store import open_store, subscribers

    copy_sample_project(root)
    config = root / "newsletter.toml"
    if database is not None:
        config.write_text(re.sub(r"(?m)^database = .*$", f"database = {json.dumps(database)}", config.read_text()))
    if settings_lines:
        config.write_text(re.sub(r"(?m)^(database = .*)$", lambda m: m.group(1) + "\n" + settings_lines,
                                 config.read_text()))
    csv_path = root / "people.csv"
    write_subscribers_csv(csv_path, recipients)
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})
    store = open_store(settings)
    if hasattr(store, "upgrade"):
        store.upgrade()  # a fresh PostgreSQL database: create the schema
    issue = compose(settings, date=dt.date(2026, 11, 25))
    build(settings, issue.folder)
    approve(issue.folder)
    with store.connection() as conn:
        report = subscribers.import_csv(conn, csv_path)
    assert report.ok and report.added == recipients, report.errors
    return settings, issue.folder


def _query(settings: Settings, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows from the project's database (SQLite file or PostgreSQL), through the store's own connection."""
    from newsletter.store import open_store

    with open_store(settings).connection() as conn:
        rows = [tuple(row) for row in conn.execute(sql, args).fetchall()]
        conn.rollback()
    return rows


@contextlib.contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of `server_url` (dropped afterwards); yields its URL."""
    import psycopg
    import psycopg.conninfo

    name = f"crash_loop_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    url = f"postgresql://{params.get('user', '')}@{params.get('host', 'localhost')}:{params.get('port', 5432)}/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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
    handler = FaultInjectingHandler(delay=delay)
    claimed: list[int] = []
    runs = 0
    with fault_server(handler) as server:
        env = sender_env(server)
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
                claimed.append(int(_query(settings, _CLAIMED, folder.name)[0][0]))  # type: ignore[call-overload]
                continue
            if code != 0:
                raise RuntimeError(f"run {runs} exited {code}:\n{output}")
            break
    return _measure(settings, folder, handler, recipients=recipients, sig=sig, runs=runs, claimed=claimed,
                    started=started)


def _measure(settings: Settings, folder: Path, handler: FaultInjectingHandler, *, recipients: int,
             sig: signal.Signals, runs: int, claimed: list[int], started: float, workers: int = 1,
             database: str = "sqlite") -> CrashLoopResult:
    accepted = handler.accepted_ids()
    domain = settings.sender_email.rpartition("@")[2]
    ids = [int(r[0]) for r in _query(settings, "SELECT id FROM subscribers WHERE status = 'subscribed'")]  # type: ignore[call-overload]
    expected = {message_id_for(SECRET, folder.name, sid, domain) for sid in ids}
    not_sent = _query(settings, "SELECT COUNT(*) FROM subscribers s LEFT JOIN ledger l ON l.subscriber_id = s.id"
                                " AND l.issue_id = ? WHERE COALESCE(l.status, '') <> 'sent'", folder.name)[0][0]
    details = _query(settings, "SELECT detail FROM events WHERE kind = 'send.finish' AND issue_id = ?", folder.name)
    resent = sum(int(m.group(1)) for (detail,) in details if (m := _RESENT.search(str(detail))))
    return CrashLoopResult(
        recipients=recipients, signal=sig.name, runs=runs, kills=len(claimed),
        lost=len(expected - set(accepted)), not_sent_in_ledger=int(not_sent),  # type: ignore[call-overload]
        duplicates=sum(n - 1 for n in accepted.values()), in_flight_bound=sum(claimed),
        claimed_after_kills=tuple(claimed), resent_after_crash=resent, accepted=sum(accepted.values()),
        seconds=round(time.monotonic() - started, 1), workers=workers, database=database,
    )


# --- several sender processes: `send --workers N`, random workers killed -----------------------------------

def _spawn(args: list[str], root: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "newsletter", *args], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _pid_state(pid: int) -> str | None:
    """The process's state letter (Z: a zombie), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def _family(root_pids: list[int]) -> set[int]:
    """The given processes and their descendants that are still running (zombies excluded)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != b"Z":
                parents[int(entry.name)] = int(fields[1])
    found = {pid for pid in root_pids if pid in parents}
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def _holders(settings: Settings, issue_id: str) -> list[str]:
    rows = _query(settings, "SELECT DISTINCT claimed_by FROM ledger WHERE issue_id = ? AND status = 'claimed'"
                            " AND claimed_by IS NOT NULL", issue_id)
    return [str(row[0]) for row in rows]


def _worker_pid(worker: str) -> int:
    return int(worker.rsplit(":", 3)[2])


def _held_at_death(settings: Settings, issue_id: str, victim: str) -> int:
    """The rows a killed worker held when it died: what the others took over from it, plus what it still holds."""
    rows = _query(settings, "SELECT detail FROM events WHERE kind = 'send.takeover' AND issue_id = ?", issue_id)
    taken = sum(int(m.group(1)) for (detail,) in rows if (m := _TAKEOVER.search(str(detail))) and m.group(2) == victim)
    held = _query(settings, "SELECT COUNT(*) FROM ledger WHERE issue_id = ? AND status = 'claimed' AND claimed_by = ?",
                  issue_id, victim)[0][0]
    return taken + int(held)  # type: ignore[call-overload]


def _wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))


def run_workers_crash_loop(root: Path, *, recipients: int, kills: int, workers: int = 3,
                           sig: signal.Signals = signal.SIGKILL, seed: int = 1, delay: float = 0.02,
                           max_pause: float = 0.3, database: str | None = None,
                           run_timeout: float = 300.0) -> CrashLoopResult:
    """`newsletter send ISSUE --workers N` with random workers killed; see the module's docstring."""
    started = time.monotonic()
    rng = random.Random(seed)
    settings, folder = _prepare(root, recipients, database)
    handler = FaultInjectingHandler(delay=delay)
    claimed: list[int] = []
    victims: list[str] = []
    runs = 0
    with fault_server(handler) as server:
        env = sender_env(server)
        procs: list[subprocess.Popen[bytes]] = []
        logs: list[Path] = []

        def start(*args: str) -> subprocess.Popen[bytes]:
            logs.append(root / f"proc-{len(logs) + 1}.log")
            procs.append(_spawn(list(args), root, env, logs[-1]))
            return procs[-1]

        def progressed(before: int) -> bool:
            deadline = time.monotonic() + run_timeout
            while time.monotonic() < deadline:
                if len(handler.messages) > before:
                    return True
                if all(p.poll() is not None for p in procs):
                    return False
                time.sleep(0.002)
            raise TimeoutError(f"no delivery within {run_timeout} s")

        runs += 1
        main_run = start("send", folder.name, "--workers", str(workers))
        done = 0
        while done < kills:
            if not progressed(len(handler.messages)):
                break  # the send finished before all the kills
            time.sleep(rng.uniform(0.0, max_pause))
            if sig == signal.SIGTERM:
                for proc in procs:  # every sender at once, as `systemctl stop` or Ctrl-C in a terminal would
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
                _wait_all(procs, run_timeout)
                claimed.append(int(_query(settings, _CLAIMED, folder.name)[0][0]))  # type: ignore[call-overload]
                done += 1
                runs += 1
                main_run = start("send", folder.name, "--workers", str(workers))
                continue
            family = _family([p.pid for p in procs if p.poll() is None])
            candidates = [w for w in _holders(settings, folder.name) if _worker_pid(w) in family]
            if not candidates:
                continue
            victim = rng.choice(candidates)
            os.kill(_worker_pid(victim), signal.SIGKILL)
            while _pid_state(_worker_pid(victim)) not in (None, "Z"):
                time.sleep(0.001)
            victims.append(victim)
            done += 1
            start("worker", folder.name)  # keep N at work: one joins in the killed one's place
        _wait_all(procs, run_timeout)
        for proc, log in zip(procs, logs, strict=True):
            output = log.read_text(errors="replace")
            if "Traceback" in output:
                raise RuntimeError(f"{log.name} crashed with a traceback:\n{output}")
            allowed = (0, 3) if proc is main_run and sig == signal.SIGKILL else (0, 130) if sig == signal.SIGTERM else (0,)
            if proc.returncode not in allowed and proc.returncode != -signal.SIGKILL:
                raise RuntimeError(f"{log.name} exited {proc.returncode}:\n{output}")
        if sig == signal.SIGKILL:
            claimed = [_held_at_death(settings, folder.name, victim) for victim in victims]
    kind = "postgresql" if database else "sqlite"
    return _measure(settings, folder, handler, recipients=recipients, sig=sig, runs=runs, claimed=claimed,
                    started=started, workers=workers, database=kind)


def _line(result: CrashLoopResult) -> str:
    workers = f" ({result.workers} workers, {result.database})" if result.workers > 1 or result.database != "sqlite" else ""
    return (f"{result.signal}{workers}: {result.recipients} recipients, {result.runs} runs, {result.kills} kills, "
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
    parser.add_argument("--workers", type=int, default=0,
                        help="`send --workers N`, random workers killed (0: the plain one-process loop)")
    parser.add_argument("--database", help="postgresql://USER@HOST:PORT/DB of a server to run in (default SQLite)")
    parser.add_argument("--delay", type=float, help="seconds the server takes per message (default 0.005, "
                                                    "0.02 with --workers so the kills land mid-send)")
    args = parser.parse_args(argv)
    signals = [signal.SIGKILL, signal.SIGTERM] if args.signal == "both" else [signal.Signals[f"SIG{args.signal}"]]
    results = []
    for sig in signals:
        with tempfile.TemporaryDirectory(prefix="crash-loop-") as tmp, contextlib.ExitStack() as stack:
            database = stack.enter_context(fresh_postgres_database(args.database)) if args.database else None
            if args.workers or database:
                result = run_workers_crash_loop(Path(tmp) / "site", recipients=args.recipients, kills=args.kills,
                                                workers=args.workers or 1, sig=sig, seed=args.seed,
                                                max_pause=args.max_pause, database=database,
                                                delay=args.delay if args.delay is not None else 0.02)
            else:
                result = run_crash_loop(Path(tmp) / "site", recipients=args.recipients, kills=args.kills, sig=sig,
                                        seed=args.seed, max_pause=args.max_pause,
                                        delay=args.delay if args.delay is not None else 0.005)
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

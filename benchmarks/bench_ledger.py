"""Ledger cost: sends/s with the ledger's durability settings vs no ledger, and what a crash can cost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .project import (
    compose_and_build,
    import_subscribers,
    make_project,
    python,
    settings_for,
    temp_dir,
)
from newsletter.store.checkpoints import RESULTS_PER_CHECKPOINT
from newsletter.store.sqlite import WAL_AUTOCHECKPOINT_PAGES

from .report import Row, info, ratio_row

__all__ = ["NullTransport", "register_null", "run"]

SECTION = "ledger"


class NullTransport:
    """Takes a message and drops it: what is left is personalising, the ledger and the send loop."""

    def send(self, message: Any) -> None:
        if not message.data:
            raise ValueError("empty message")

    def close(self) -> None:
        return None


def register_null() -> None:
    """`null:` URLs, registered from the benchmark (the package ships no such transport)."""
    from newsletter.transports import register, schemes

    if "null" not in schemes():
        register("null")(lambda url, **_: NullTransport())


def _send_issue(conn: sqlite3.Connection, folder: Path, p, *,
                connections: int = 1) -> tuple[float, int]:
    from newsletter.send import SendPolicy, send_issue

    conn.execute("DELETE FROM ledger")
    conn.commit()
    start = time.perf_counter()
    report = send_issue(conn, folder.name, make_message=p.message, transport_factory=NullTransport,
                        policy=SendPolicy(connections=connections))
    return time.perf_counter() - start, report.sent


def _ledger_off(conn: sqlite3.Connection, p) -> tuple[float, int]:
    """The same messages without the database in the loop: personalise + transport.send."""
    from newsletter.store.subscribers import iter_subscribed

    people = list(iter_subscribed(conn))
    transport = NullTransport()
    start = time.perf_counter()
    for person in people:
        transport.send(p.message(person))
    transport.close()
    return time.perf_counter() - start, len(people)


def _variants(conn: sqlite3.Connection, folder: Path, p) -> list[tuple[str, tuple[float, int]]]:
    """One round of every variant, in a fixed order: (label, (seconds, messages))."""
    from newsletter.store.claims import Claims
    from newsletter.store.subscribers import iter_subscribed

    prebuilt = {s.id: p.message(s) for s in iter_subscribed(conn)}
    out = [("normal", _send_issue(conn, folder, p)), ("off", _ledger_off(conn, p))]

    class Prebuilt:
        message = staticmethod(lambda s: prebuilt[s.id])

    out.append(("prebuilt", _send_issue(conn, folder, Prebuilt)))
    # The ledger's writes stubbed out: the send loop claims and marks through Claims (leased claims), so
    # that is what is replaced: batches come from the list in memory and marks write nothing.
    people = list(iter_subscribed(conn))

    def unclaimed(self: Claims, limit: int) -> list:
        start = getattr(self, "stub_at", 0)
        self.stub_at = start + limit
        batch = people[start:start + limit]
        self.held.update(s.id for s in batch)
        return batch

    def unrecorded(self: Claims, sid: int, status: str, **details: object) -> None:
        self.held.discard(sid)
        self._recorded()

    next_batch, mark = Claims.next_batch, Claims._mark
    Claims.next_batch, Claims._mark = unclaimed, unrecorded  # type: ignore[method-assign]
    try:
        out.append(("stubbed", _send_issue(conn, folder, Prebuilt)))
    finally:
        Claims.next_batch, Claims._mark = next_batch, mark  # type: ignore[method-assign]
    transport = NullTransport()
    start = time.perf_counter()
    for message in prebuilt.values():
        transport.send(message)
    out.append(("bare", (time.perf_counter() - start, len(prebuilt))))
    conn.execute("PRAGMA synchronous = FULL")
    out.append(("full", _send_issue(conn, folder, p)))
    conn.execute("PRAGMA synchronous = NORMAL")  # the ledger's own setting (newsletter/store/sqlite.py)
    return out


def _wal_frames_per_message(db_path: Path, folder: Path, p) -> float:
    """WAL frames one message's ledger writes cost, counted with automatic checkpoints off for the count."""
    from newsletter.store import sqlite as db

    conn = db.connect(db_path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("DELETE FROM ledger")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _, sent = _send_issue(conn, folder, p)
        frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    finally:
        conn.close()
    return frames / sent


def _crash_child(root: Path, folder: Path, log: Path, kill_after: int, connections: int) -> None:
    """Send with a transport that records each accepted message, then dies like kill -9 after `kill_after`."""
    from newsletter.store import sqlite as db
    from newsletter.jobs.delivery import personaliser_for
    from newsletter.send import SendPolicy, send_issue

    settings = settings_for(root)
    p = personaliser_for(settings, folder)
    accepted = {"n": 0}
    with open(log, "ab", buffering=0) as handle:

        class Dying(NullTransport):
            def send(self, message: Any) -> None:
                handle.write(message.message_id.encode() + b"\n")  # unbuffered: survives os._exit
                accepted["n"] += 1
                if accepted["n"] >= kill_after:
                    os._exit(137)

        conn = db.connect(settings.path(settings.database))
        send_issue(conn, folder.name, make_message=p.message, transport_factory=Dying,
                  policy=SendPolicy(connections=connections))


def _crash_once(root: Path, folder: Path, work: Path, kill_after: int, connections: int) -> dict[str, int]:
    from newsletter.store import sqlite as db

    settings = settings_for(root)
    conn = db.connect(settings.path(settings.database))
    conn.execute("DELETE FROM ledger")
    conn.commit()
    conn.close()
    log = work / f"accepted-{kill_after}-{connections}.log"
    log.unlink(missing_ok=True)
    proc = subprocess.run([python(), "-m", "benchmarks.bench_ledger", "--crash-child", str(root), str(folder),
                           str(log), str(kill_after), str(connections)], cwd=Path(__file__).resolve().parent.parent,
                          check=False)
    if proc.returncode != 137:
        raise RuntimeError(f"the crash child exited with {proc.returncode}, not 137")
    accepted = set(log.read_text().split())
    conn = db.connect(settings.path(settings.database))
    try:
        rows = conn.execute("SELECT status, message_id FROM ledger").fetchall()
        sent_ids = {r[1] for r in rows if r[0] == "sent"}
        claimed = sum(1 for r in rows if r[0] == "claimed")
    finally:
        conn.close()
    return {"kill_after": kill_after, "connections": connections, "accepted": len(accepted),
            "committed_sent": len(sent_ids), "claimed": claimed, "resent_on_resume": len(accepted - sent_ids)}


def run(*, quick: bool, out=print, messages: int | None = None) -> list[Row]:
    from newsletter.store import sqlite as db
    from newsletter.jobs.delivery import personaliser_for

    messages = messages or (1000 if quick else 5000)
    rounds = 2 if quick else 3
    kill_points = tuple(k for k in ((137, 777) if quick else (137, 777, 1601, 2999)) if k < messages)
    rows: list[Row] = []
    with temp_dir("ledger-") as work:
        root = make_project(work / "site")
        folder = compose_and_build(root, limit=10)
        import_subscribers(root, messages)
        settings = settings_for(root)
        p = personaliser_for(settings, folder)
        db_path = settings.path(settings.database)
        out(f"  ledger: {rounds} alternating rounds of {messages} messages, ledger on (NORMAL, FULL) and off ...")
        rates: dict[str, list[float]] = {}
        for _ in range(rounds):
            conn = db.connect(db_path)
            for label, seconds_sent in _variants(conn, folder, p):
                rates.setdefault(label, []).append(seconds_sent[1] / seconds_sent[0])
            conn.close()
        best = {label: max(values) for label, values in rates.items()}
        samples = {label: [round(x) for x in values] for label, values in rates.items()}
        rows.append(ratio_row(
            SECTION, "sends/s, ledger on (WAL, synchronous=NORMAL, results committed before each hand-off)", best["normal"], "msg/s",
            best["off"], "ledger off: personalise + transport.send loop", percent=True,
            note=f"best of {rounds} alternating rounds of {messages}, null transport, 1 connection: the worst case "
                 "for the ledger, as nothing else costs anything. Ledger on is the real send loop "
                 "(send.send_issue: claim, worker thread, mark sent, batched commits) on a real SQLite file",
            samples=samples))
        rows.append(ratio_row(SECTION, "sends/s, ledger on with synchronous=FULL (not used)", best["full"],
                              "msg/s", best["normal"], "synchronous=NORMAL (the ledger's setting)", percent=True,
                              note="what an fsync per result would cost; NORMAL already survives kill -9, and its "
                                   "checkpoints every 128 pages bound what a power loss costs (row below)"))
        per = {label: 1e6 / rate for label, rate in best.items()}
        parts = (
            ("personalise, inside the send loop", per["normal"] - per["prebuilt"],
             ("send_issue with live vs prebuilt messages; more than personalising alone costs, because the main "
              "thread and the worker contend for the GIL")),
            ("ledger SQL (claim, mark sent, commits)", per["prebuilt"] - per["stubbed"],
             "send_issue with prebuilt messages, with vs without the Ledger's writes (stubbed for this row only)"),
            ("send loop hand-off (queues, worker thread)", per["stubbed"] - per["bare"],
             "send_issue with prebuilt messages and no ledger writes vs a plain loop over the same messages"),
        )
        for name, micros, how in parts:
            rows.append(info(SECTION, f"per message: {name}", micros, "us", note=how))
        out("  ledger: crash experiments (kill -9 mid-send) ...")
        crashes = [_crash_once(root, folder, work, k, c) for c in (1, 4) for k in kill_points]
        for c in (1, 4):
            worst = max(x["resent_on_resume"] for x in crashes if x["connections"] == c)
            bound = 2 * c
            rows.append(ratio_row(
                SECTION, f"kill -9 mid-send: messages re-sent on resume, {c} connection{'s' * (c > 1)}", worst,
                "msgs", bound, "bound: out without a committed 'sent', 2 x connections", goal="<= bound",
                check=lambda f, r: r is not None and r <= 1.0,
                note="accepted by the transport but not committed 'sent' when the process died (os._exit inside "
                     f"transport.send after {', '.join(map(str, kill_points))} messages; worst shown)",
                samples={"runs": [x for x in crashes if x["connections"] == c]}))
        frames = _wal_frames_per_message(db_path, folder, p)
        at_risk = WAL_AUTOCHECKPOINT_PAGES / frames
        rows.append(info(
            SECTION, "power loss / OS crash, if the checkpoint thread fails (automatic checkpoint every 128 pages): "
                     "messages possibly re-sent", at_risk, "msgs",
            note=f"with synchronous=NORMAL SQLite syncs the WAL only at checkpoints; committed-but-unsynced "
                 f"transactions can roll back after a power loss. During a send the sender's checkpoint thread "
                 f"(newsletter/store/checkpoints.py) checkpoints every {RESULTS_PER_CHECKPOINT} recorded results, so "
                 f"about {RESULTS_PER_CHECKPOINT} results (plus those committed while it runs) are at risk; this row "
                 f"is the fallback when that thread fails and the automatic checkpoint (every "
                 f"{WAL_AUTOCHECKPOINT_PAGES} pages) is back: the ledger writes {frames:.2f} WAL frames per message "
                 f"(fewer with grouped commits, so more messages per checkpoint), so up to ~{at_risk:.0f} messages' "
                 "'sent' marks (and claims) can be lost and those messages sent again; never lost subscribers "
                 "(they become pending again)",
            samples={"wal_frames_per_message": round(frames, 3)}))
    return rows


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "--crash-child":
    _crash_child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))

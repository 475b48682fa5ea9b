"""Send throughput to real SMTP sinks on loopback (vs Postfix's smtp-source), and to the Maildir outbox."""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import time
from pathlib import Path

from .project import (
    compose_and_build,
    create_database,
    import_subscribers,
    make_project,
    postgres_cluster,
    python,
    settings_for,
    temp_dir,
)
from .report import Row, median, not_measured, ratio_row
from .tools import aiosmtpd_sink, postfix_sink, smtp_sink, smtp_source

__all__ = ["reset_ledger", "run", "send_once"]

SECTION = "send"
SENDER, RECIPIENT = "newsletter@ms-research.example.org", "reader@example.org"
GOAL_PERCENT = 80  # issue 18, item 5
GOAL = f">= {GOAL_PERCENT} % of smtp-source"


def reset_ledger(settings) -> None:
    """Forget every send, so the next run sends to everyone again (same database file or tables; SQLite's WAL
    emptied too)."""
    from newsletter.store import open_store
    from newsletter.store.dbapi import dialect

    with open_store(settings).connection() as conn:
        conn.execute("DELETE FROM ledger")
        conn.execute("DELETE FROM events")
        conn.commit()
        if dialect(conn) == "sqlite":
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def send_once(settings, folder: Path, *, connections: int, workers: int | None = None) -> tuple[float, int]:
    """(seconds, messages sent) for one full send of the issue: this process, or `workers` processes
    (`newsletter send --workers N`) with `connections` each; their start-up is in the time."""
    from newsletter.jobs.fleet import send

    reset_ledger(settings)
    start = time.perf_counter()
    report = send(settings, folder, connections=connections, workers=workers)
    elapsed = time.perf_counter() - start
    if report.failed or report.deferred or report.stopped_early:
        raise RuntimeError(f"send did not go cleanly: {report}")
    return elapsed, report.sent


def _smtp_source(tool, port: int, *, sessions: int, count: int, size: int) -> float:
    """Seconds for smtp-source to send `count` messages of `size` bytes over `sessions` reused connections (-d)."""
    argv = [*tool.argv, "-d", "-s", str(sessions), "-m", str(count), "-l", str(size), "-f", SENDER, "-t", RECIPIENT,
            f"127.0.0.1:{port}"]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


#: (connections per process, processes): one process with 1 and with 4 connections, then the same 4
#: connections spread over processes (`send --workers N`), each against smtp-source with 4 sessions.
SHAPES = ((1, 1), (4, 1), (2, 2), (1, 4))


def _label(name: str, connections: int, workers: int) -> str:
    total = connections * workers
    label = f"{name}, {total} connection{'s' * (total > 1)}"
    if workers > 1:
        label += f" ({workers} processes x {connections})"
    return label


def _sink_rows(name: str, port: int, settings, folder: Path, messages: int, size: int, rounds: int,
               counter=None, goal: bool = True, shapes=SHAPES, server=None) -> list[Row]:
    """Ours vs smtp-source to the same sink, same run, rounds interleaved; for each shape in `shapes`.

    Each round sends with ours, then with smtp-source (as many sessions as ours has connections in all),
    so both see the same machine; the rate rows give the best round of each (the note adds the medians
    and each round's ratio), and the CPU rows the median CPU per message of each: ours is user + system
    of this whole process (all threads: the send loop, personalising, the ledger, the SMTP transport)
    plus, with several processes, theirs (start-up included), theirs the smtp-source process's. With the
    ledger on PostgreSQL (`server`: the throwaway cluster) ours adds the server's CPU.
    """
    from .bench_workers import server_cpu

    store = "PostgreSQL, a throwaway cluster on this machine" if server is not None else "SQLite file"
    source = smtp_source()
    smtp = dataclasses.replace(settings, transport=f"smtp://127.0.0.1:{port}?starttls=off")
    rows = []
    for connections, workers in shapes:
        total = connections * workers
        ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
        before = counter.messages() if counter else 0
        for _ in range(rounds):  # alternating, so both see the same machine
            cpu_before = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) + server_cpu(server)
            seconds, sent = send_once(smtp, folder, connections=connections, workers=workers if workers > 1 else None)
            cpu_after = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) + server_cpu(server)
            ours_cpu.append((cpu_after - cpu_before) / sent * 1e6)
            ours.append(sent / seconds)
            if source.ok:
                cpu_before = _cpu(resource.RUSAGE_CHILDREN)
                theirs.append(messages / _smtp_source(source, port, sessions=total, count=messages, size=size))
                theirs_cpu.append((_cpu(resource.RUSAGE_CHILDREN) - cpu_before) / messages * 1e6)
        received = (counter.messages() - before) if counter else None
        expected = rounds * messages * (2 if source.ok else 1)
        check_note = "" if received is None else f"; the sink counted {received} of {expected} messages"
        label = _label(name, connections, workers)
        how = (f"`newsletter send --workers {workers}` with {connections} connection{'s' * (connections > 1)} "
               "each (spawned processes, start-up included)" if workers > 1 else "jobs.send_full in one process")
        pairs = ", ".join(f"{o / t * 100:.0f} %" for o, t in zip(ours, theirs))
        medians = ""
        if theirs:
            mine, ref = median(ours), median(theirs)
            medians = f"; medians {mine:.0f} vs {ref:.0f} msg/s ({mine / ref * 100:.0f} %), each round's ratio {pairs}"
        rows.append(ratio_row(
            SECTION, f"{label}: ours vs smtp-source, same run", max(ours), "msg/s", max(theirs) if theirs else None,
            f"smtp-source -s {total} -d" if theirs else f"smtp-source: not measured ({source.missing})",
            percent=True, goal=GOAL if goal else "",
            check=(lambda f, r: r is not None and r >= GOAL_PERCENT) if goal else None,
            note=f"best of {rounds} alternating rounds of {messages} messages of ~{size / 1024:.0f} KB{medians}; "
                 f"ours: {how}, ledger on ({store}), reference: smtp-source with the same count, "
                 f"size and sessions, reusing connections (-d){check_note}",
            samples={"ours_per_s": [round(x) for x in ours], "smtp_source_per_s": [round(x) for x in theirs],
                     "ours_cpu_us": [round(x) for x in ours_cpu],
                     "smtp_source_cpu_us": [round(x) for x in theirs_cpu]}))
        if goal:  # where the time goes: CPU (user + system, all threads) per message
            whose = (f"our {workers} worker processes and this one (start-up included)" if workers > 1
                     else "our whole process (send loop, personalising, ledger, SMTP transport)")
            if server is not None:
                whose += " plus the PostgreSQL server's processes"
            rows.append(ratio_row(
                SECTION, f"{label}: CPU per message, ours vs smtp-source", median(ours_cpu), "us",
                median(theirs_cpu) if theirs_cpu else None,
                "smtp-source" if theirs_cpu else "smtp-source: not measured",
                note=f"median of {rounds} round{'s' * (rounds > 1)} (ours {', '.join(f'{x:.0f}' for x in ours_cpu)}; "
                     f"smtp-source {', '.join(f'{x:.0f}' for x in theirs_cpu)} us): user + system CPU of {whose} "
                     "vs the smtp-source process. With PIPELINING we wait for 2 replies per message and smtp-source "
                     "for 4; on 2 cores, with the sink needing about one, what separates us is CPU, and one "
                     "process runs its Python under one GIL"))
    return rows


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _maildir_rows(settings, folder: Path, work: Path, count: int, data: bytes) -> list[Row]:
    """The Maildir outbox (fsync per message, as configured by default) vs a bare write+fsync+rename loop."""
    box = work / "outbox"
    maildir = dataclasses.replace(settings, transport=f"maildir:{box}")
    seconds, sent = send_once(maildir, folder, connections=1)
    bare_dir = work / "bare"
    for sub in ("tmp", "new"):
        (bare_dir / sub).mkdir(parents=True, exist_ok=True)
    payload = data.replace(b"\r\n", b"\n")
    start = time.perf_counter()
    for n in range(count):
        tmp, new = bare_dir / "tmp" / f"{n}.bare", bare_dir / "new" / f"{n}.bare"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, new)
        dfd = os.open(bare_dir / "new", os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    bare = count / (time.perf_counter() - start)
    return [ratio_row(SECTION, "Maildir outbox, 1 connection", sent / seconds, "msg/s", bare,
                      "bare write+fsync+rename loop", percent=True,
                      note=f"{count} messages; each one fsynced, renamed into new/ and the folder fsynced, as "
                           "MaildirTransport does by default; the reference writes the same bytes the same way "
                           "with no ledger and no personalising")]


def run(*, quick: bool, out=print, messages: int | None = None) -> list[Row]:
    messages = messages or (500 if quick else 5000)
    rounds = 1 if quick else 3
    maildir_count = min(messages, 200 if quick else 1000)
    rows: list[Row] = []
    with temp_dir("send-") as work:
        root = make_project(work / "site")
        folder = compose_and_build(root, limit=10)
        out(f"  send: importing {messages} subscribers ...")
        import_subscribers(root, messages)
        settings = settings_for(root)
        from newsletter.jobs.delivery import personaliser_for
        from newsletter.models import Subscriber

        sample = personaliser_for(settings, folder).message(Subscriber(id=1, email="reader000001@example.org",
                                                                        name="Zoë Müller"))
        size = len(sample.data)
        sink = smtp_sink()
        if sink.ok:
            with postfix_sink(sink, work) as (port, counter):
                out(f"  send: smtp-sink, {messages} messages x 1 and 4 connections (4: also 2 and 4 processes) ...")
                rows += _sink_rows("smtp-sink", port, settings, folder, messages, size, rounds, counter)
                rows += _postgres_rows(work, port, messages, size, rounds, counter, out)
        else:
            rows.append(not_measured(SECTION, "smtp-sink", sink.missing, goal=GOAL))
        aiosmtpd_count = min(messages, 200 if quick else 1000)  # aiosmtpd takes ~400 msg/s: keep the run short
        out(f"  send: aiosmtpd sink (for comparison), {aiosmtpd_count} messages ...")
        _limit_subscribers(settings, aiosmtpd_count)
        with aiosmtpd_sink(python()) as port:
            rows += _sink_rows("aiosmtpd sink (own process)", port, settings, folder, aiosmtpd_count, size, 1,
                               goal=False, shapes=((1, 1), (4, 1)))
        out(f"  send: Maildir outbox, {maildir_count} messages ...")
        _limit_subscribers(settings, maildir_count)
        rows += _maildir_rows(settings, folder, work, maildir_count, sample.data)
    return rows


def _postgres_rows(work: Path, port: int, messages: int, size: int, rounds: int, counter, out) -> list[Row]:
    """The same 1- and 4-connection sends with the ledger on PostgreSQL (a throwaway cluster, as the tests start
    one), against smtp-source in the same rounds."""
    from .bench_workers import _project

    label = "smtp-sink, ledger on PostgreSQL"
    with postgres_cluster(out, SECTION) as pg:
        if pg is None:
            return [not_measured(SECTION, label, "no PostgreSQL here (apt-get install postgresql)", goal=GOAL)]
        out(f"  send: {label}, {messages} messages x 1 and 4 connections ...")
        with _project(work, "site-pg", messages, create_database(pg, "bench_send")) as root:
            settings = settings_for(root)
            folder = settings.path(settings.issues_dir) / "2026-11-25"
            return _sink_rows(label, port, settings, folder, messages, size, rounds, counter,
                              shapes=((1, 1), (4, 1)), server=pg)


def _limit_subscribers(settings, count: int) -> None:
    """Unsubscribe everyone after the first `count`, so a slow transport gets a smaller run."""
    from newsletter.store import sqlite as db

    conn = db.connect(settings.path(settings.database))
    try:
        conn.execute("UPDATE subscribers SET status = 'unsubscribed' WHERE id > ?", (count,))
        conn.commit()
    finally:
        conn.close()

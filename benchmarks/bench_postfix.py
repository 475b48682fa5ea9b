"""Send rates through a real private Postfix: our STARTTLS vs our plain send vs smtp-source; CPU per message."""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import sys
import time
from pathlib import Path

from .project import REPO, compose_and_build, import_subscribers, make_project, settings_for, temp_dir
from .report import Row, info, not_measured, ratio_row
from .tools import smtp_source

__all__ = ["run"]

SECTION = "postfix"
SENDER, RECIPIENT = "newsletter@ms-research.example.org", "reader@example.org"
DRAIN_TIMEOUT = 300.0


def _postfix_server():
    """tests/postfix_server.py: the same private instance the tests start (one place that knows Postfix)."""
    sys.path.insert(0, str(REPO / "tests"))
    import postfix_server

    return postfix_server


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _ours(settings, folder: Path, url: str, connections: int) -> tuple[float, float, int]:
    """(msg/s, CPU seconds of this process, messages) for one full send with the ledger to `url`."""
    from benchmarks.bench_send import send_once

    smtp = dataclasses.replace(settings, transport=url)
    cpu = _cpu(resource.RUSAGE_SELF)
    seconds, sent = send_once(smtp, folder, connections=connections)
    return sent / seconds, _cpu(resource.RUSAGE_SELF) - cpu, sent


def _theirs(tool, port: int, *, sessions: int, count: int, size: int) -> tuple[float, float]:
    """(msg/s, CPU seconds) for smtp-source sending `count` messages of `size` bytes over `sessions` reused (-d)."""
    argv = [*tool.argv, "-d", "-s", str(sessions), "-m", str(count), "-l", str(size), "-f", SENDER, "-t", RECIPIENT,
            f"127.0.0.1:{port}"]
    cpu = _cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=DRAIN_TIMEOUT)
    return count / (time.perf_counter() - start), _cpu(resource.RUSAGE_CHILDREN) - cpu


def _drain(instance, count: int) -> None:
    """Wait until Postfix has delivered the round's messages, then empty the Maildir (each round starts idle)."""
    instance.wait_delivered(count, timeout=DRAIN_TIMEOUT)
    instance.clear_maildir()


def _rows(samples: dict[tuple[str, int], list[float]], cpu: dict[str, list[float]], messages: int, size: int,
          rounds: int, source_missing: str) -> list[Row]:
    import newsletter

    how = (f"best of {rounds} interleaved rounds (ours STARTTLS, ours plain, smtp-source) of {messages} messages "
           f"of ~{size / 1024:.0f} KB to one private Postfix 3.x on 127.0.0.1 delivering into a Maildir; ours: "
           f"deliver.send_full with the ledger (SQLite file) from {Path(newsletter.__file__).parent}")
    rows: list[Row] = []
    for n in (1, 4):
        label = f"{n} connection{'s' * (n > 1)}"
        tls, plain = max(samples[("tls", n)]), max(samples[("plain", n)])
        source = max(samples[("source", n)]) if samples[("source", n)] else None
        raw = {k: [round(x) for x in v] for (k, m), v in samples.items() if m == n}
        rows.append(ratio_row(SECTION, f"Postfix, our STARTTLS send, {label}", tls, "msg/s", plain,
                              "our plain-text send (?starttls=off)", percent=True, goal=">= 80 % of our plain",
                              check=lambda f, r: r is not None and r >= 80, note=how if n == 1 else "",
                              samples=raw))
        if source is None:
            rows.append(not_measured(SECTION, f"Postfix, our STARTTLS send vs smtp-source, {label}", source_missing,
                                     goal=">= 80 % of smtp-source"))
            continue
        rows.append(ratio_row(SECTION, f"Postfix, our STARTTLS send vs smtp-source, {label}", tls, "msg/s", source,
                              f"smtp-source -s {n} -d (plain text)", percent=True, goal=">= 80 % of smtp-source",
                              check=lambda f, r: r is not None and r >= 80))
        rows.append(ratio_row(SECTION, f"Postfix, our plain-text send, {label}", plain, "msg/s", source,
                              f"smtp-source -s {n} -d", percent=True))
    per_message = {k: sum(v) / len(v) * 1e6 for k, v in cpu.items() if v}
    if "tls" in per_message and "plain" in per_message:
        rows.append(ratio_row(
            SECTION, "Postfix, CPU per message, 1 connection: STARTTLS", per_message["tls"], "us",
            per_message["plain"], "our plain-text send",
            note="user + system CPU of our whole process (send loop, personalising, ledger, smtplib, TLS) per "
                 "message, averaged over the rounds"))
    if "source" in per_message:
        rows.append(info(SECTION, "Postfix, CPU per message, 1 connection: smtp-source (plain)", per_message["source"],
                         "us", note="the smtp-source process (RUSAGE_CHILDREN)"))
    return rows


def run(*, quick: bool, out=print, messages: int | None = None) -> list[Row]:
    messages = messages or (200 if quick else 1000)
    rounds = 1 if quick else 2
    postfix_server = _postfix_server()
    why = postfix_server.unavailable_reason()
    if why:
        return [not_measured(SECTION, "Postfix, our STARTTLS send", why, goal=">= 80 % of our plain")]
    source = smtp_source()
    samples: dict[tuple[str, int], list[float]] = {(k, n): [] for k in ("tls", "plain", "source") for n in (1, 4)}
    cpu: dict[str, list[float]] = {"tls": [], "plain": [], "source": []}
    with temp_dir("postfix-") as work:
        root = make_project(work / "site")
        folder = compose_and_build(root, limit=10)
        out(f"  postfix: importing {messages} subscribers ...")
        import_subscribers(root, messages)
        settings = settings_for(root)
        from newsletter.jobs.delivery import personaliser_for
        from newsletter.models import Subscriber

        size = len(personaliser_for(settings, folder).message(Subscriber(id=1, email="reader000001@example.org",
                                                                         name="Zoë Müller")).data)
        with postfix_server.postfix_instance() as instance:
            urls = {"tls": instance.url(), "plain": instance.plain_url()}
            for n in (1, 4):
                for r in range(rounds):
                    out(f"  postfix: {n} connection(s), round {r + 1} of {rounds} ...")
                    for mode in ("tls", "plain"):
                        rate, seconds, sent = _ours(settings, folder, urls[mode], n)
                        samples[(mode, n)].append(rate)
                        if n == 1:
                            cpu[mode].append(seconds / sent)
                        _drain(instance, sent)
                    if source.ok:
                        rate, seconds = _theirs(source, instance.port, sessions=n, count=messages, size=size)
                        samples[("source", n)].append(rate)
                        if n == 1:
                            cpu["source"].append(seconds / messages)
                        _drain(instance, messages)
    return _rows(samples, cpu, messages, size, rounds, source.missing)

"""Personalise + serialise per recipient (bytes ready for SMTP) on one core, vs a naive EmailMessage each."""

from __future__ import annotations

import datetime as dt
import time
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from .project import (
    compose_and_build,
    make_project,
    settings_for,
    subscriber_rows,
    temp_dir,
)
from .report import Row, ratio_row

__all__ = ["naive_message", "people", "run"]

SECTION = "personalise"


def people(count: int):  # -> list[Subscriber]
    from newsletter.models import Subscriber

    return [Subscriber(id=i, email=e, name=n) for i, (e, n) in enumerate(subscriber_rows(count), start=1)]


def naive_message(p, email, subscriber, when: dt.datetime) -> bytes:
    """What one would write without the splice: a fresh EmailMessage per recipient, same headers and parts."""
    from newsletter.personalise import message_id_for
    from newsletter.render import fill_placeholders

    values = p.values(subscriber)
    msg = EmailMessage()
    msg["From"] = Address("MS Research in Plain Words", addr_spec=p.sender_email)
    msg["To"] = Address(subscriber.name, addr_spec=subscriber.email)
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<{message_id_for('k', p.issue_id, subscriber.id, 'example.org')}>"
    msg["List-Id"] = "<research-news.ms-research.example.org>"
    msg["List-Unsubscribe"] = f"<{values['unsubscribe_url']}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(fill_placeholders(email.text, values, html=False))
    msg.add_alternative(fill_placeholders(email.html, values, html=True), subtype="html")
    return msg.as_bytes(policy=SMTP)


def _rate(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def run(*, quick: bool, out=print, smoke: bool = False) -> list[Row]:
    from newsletter.jobs.delivery import personaliser_for
    from newsletter.render import read_build

    fast_n, naive_n, rounds = (500, 20, 1) if smoke else (5_000, 200, 3) if quick else (20_000, 1_000, 5)
    with temp_dir("personalise-") as work:
        root = make_project(work / "site")
        folder = compose_and_build(root, limit=10)
        p = personaliser_for(settings_for(root), folder)
        email, _ = read_build(folder / "build")
    subs = people(fast_n)
    when = dt.datetime.now(dt.UTC)
    size = sum(len(p.message(s).data) for s in subs[:100]) / 100
    out(f"  personalise: {rounds} rounds of {fast_n} spliced and {naive_n} naive messages ...")
    fast, naive = [], []
    for _ in range(rounds):  # alternating, so both see the same machine
        fast.append(_rate(lambda s: p.message(s).data, subs))
        naive.append(_rate(lambda s: naive_message(p, email, s, when), subs[:naive_n]))
    best_fast, best_naive = max(fast), max(naive)
    samples = {"spliced_per_s": [round(x) for x in fast], "naive_per_s": [round(x) for x in naive],
               "message_bytes": round(size)}
    note = (f"best of {rounds} alternating rounds on one thread; 10-summary issue, {size / 1024:.0f} KB per "
            "message; both sign the unsubscribe token; the naive path builds an EmailMessage "
            "(headers, set_content, add_alternative, as_bytes) per recipient")
    return [
        ratio_row(SECTION, "spliced messages per second (one core)", best_fast, "msg/s", best_naive,
                  "naive EmailMessage", goal=">= 20,000 msg/s", check=lambda f, r: f >= 20_000, note=note,
                  samples=samples),
        ratio_row(SECTION, "spliced vs naive", best_fast, "msg/s", best_naive, "naive EmailMessage",
                  goal=">= 50x naive", check=lambda f, r: r is not None and r >= 50),
    ]

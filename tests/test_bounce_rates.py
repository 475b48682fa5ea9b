"""Per-issue bounce and complaint rates in `status`, and the send that pauses itself (issue #16 item 5)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from newsletter.store import sqlite as db
from newsletter.bounces.pause import Thresholds, pause_reason
from newsletter.store.events import Event, issue_rates
from newsletter.bounces.suppression import record
from newsletter.jobs.delivery import send_full
from newsletter.settings import Settings

from cli_inprocess import run_newsletter
from bounce_helpers import DATE, recipient, sent_issue
from smtp_servers import Fault, FaultHandler, starttls_server

ISSUE = DATE.isoformat()


def test_hard_bounces_pause_the_send_and_say_how_to_resume(settings: Settings, tmp_path: Path) -> None:
    faults = [Fault(pattern=a, reply="550 5.1.1 no such user") for a in
              ("amara.okafor@example.org", "zoe.mueller@example.org")]
    with starttls_server(tmp_path, FaultHandler(faults)) as server:
        smtp = dataclasses.replace(settings, transport=server.url(query=f"cafile={server.ca_path}"),
                                   pause_min_delivered=4)
        first = sent_issue_paused(smtp)
        # results are recorded as they come back, so the first check may already see 5 or 6
        assert first.stopped_early and re.match(r"paused: 2 of [4-6] addresses", first.stopped_early)
        # the pause comes once 4 results are recorded; messages already handed over (1-2) still finish
        assert "--no-pause" in first.stopped_early and 2 <= first.sent <= 4 and first.failed == 2
        folder = smtp.root / "issues" / ISSUE
        again = send_full(smtp, folder, pause_interval=0)  # still over the limit: pauses before sending any
        assert again.sent == 0 and again.stopped_early and again.stopped_early.startswith("paused")
        resumed = send_full(smtp, folder, no_pause=True)
        assert resumed.sent == 6 - first.sent and resumed.stopped_early is None
    conn = db.connect(settings.path(settings.database))
    rates = issue_rates(conn, ISSUE)
    conn.close()
    assert (rates.delivered, rates.attempted, rates.hard) == (6, 8, 2)


def sent_issue_paused(settings: Settings):  # type: ignore[no-untyped-def]
    from newsletter.store import subscribers
    from newsletter.approval import approve
    from newsletter.jobs.issues import build, compose

    issue = compose(settings, date=DATE)
    build(settings, issue.folder)
    conn = db.connect(settings.path(settings.database))
    subscribers.import_csv(conn, settings.root / "content" / "subscribers.csv")
    conn.close()
    approve(issue.folder)
    return send_full(settings, issue.folder, pause_interval=0)


def test_complaint_rate_pauses_only_past_the_minimum(settings: Settings) -> None:
    sent = sent_issue(settings)
    conn = db.connect(sent.path(sent.database))
    sid, _, _ = recipient(conn, 0)
    record(conn, Event(sid, "complaint", "ses", issue_id=ISSUE, ref="c1"))
    assert pause_reason(conn, ISSUE, Thresholds()) is None  # 8 delivered: far below 1,000
    reason = pause_reason(conn, ISSUE, Thresholds(min_delivered=8))
    assert reason and "1 of 8 people who got issue 2026-11-25 reported it as spam (12.50%" in reason
    assert pause_reason(conn, ISSUE, Thresholds(min_delivered=8, complaint_rate=0.2)) is None
    conn.close()


def test_status_shows_rates(settings: Settings, project: Path) -> None:
    sent = sent_issue(settings)
    conn = db.connect(sent.path(sent.database))
    for n, kind in enumerate(("hard", "soft", "soft", "complaint")):
        sid, _, _ = recipient(conn, n)
        record(conn, Event(sid, kind, "mailbox", issue_id=ISSUE, ref=f"r{n}"))
    conn.close()
    run = run_newsletter(["status", f"issues/{ISSUE}"], cwd=project)
    assert run.returncode == 0, run.stderr
    assert ("delivered 8 · bounced hard 1 (12.50%) · soft 2 (25.00%) · complained 1 (12.50%)"
            in run.stdout)
    as_json = run_newsletter(["status", f"issues/{ISSUE}", "--json"], cwd=project)
    data = json.loads(as_json.stdout)
    assert (data["sent"], data["bounced_hard"], data["bounced_soft"], data["complained"]) == (8, 1, 2, 1)
    assert data["complaint_rate"] == 0.125

"""The auto-pause: a send stops itself when its issue's complaint or hard-bounce rate passes a threshold."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.store import Connection
from newsletter.store.events import count_rows_upto, issue_event_counts, issue_rates

__all__ = ["Thresholds", "pause_reason", "pause_check"]


@dataclass(frozen=True)
class Thresholds:
    complaint_rate: float = 0.003  # Gmail's and Yahoo's line for bulk senders (0.3 %)
    hard_bounce_rate: float = 0.05
    min_delivered: int = 1000  # below this a handful of reports would swing the rate too far


def _could_pass(conn: Connection, issue_id: str, reports: int, rate: float, minimum: int,
                statuses: tuple[str, ...]) -> bool:
    """Could `reports` out of the issue's rows with `statuses` be above `rate` (with at least `minimum` rows)?

    Decided without counting the whole ledger: `reports / n > rate` needs n < reports / rate, so rows are
    counted only up to the first n at which the rate can no longer pass (none at all without reports)."""
    if not reports:
        return False
    if rate > 0:
        bound = math.floor(reports / rate) + 2  # n >= bound means reports / n < rate
        if bound <= minimum:
            return False
        n = count_rows_upto(conn, issue_id, statuses, bound)
        if n >= bound:
            return False
    else:
        n = count_rows_upto(conn, issue_id, statuses, max(minimum, 1))
    return n >= max(minimum, 1)


def pause_reason(conn: Connection, issue_id: str, limits: Thresholds) -> str | None:
    """Why the send of `issue_id` should pause now, in plain words with how to resume; None to go on.

    Asked every few seconds by every sender of a send, so it first reads the issue's few events and counts
    ledger rows only as far as a pause is still possible (a million-row ledger is never scanned when
    nobody complained or bounced); the full rates are read only to word a pause."""
    kinds = issue_event_counts(conn, issue_id)
    if not (_could_pass(conn, issue_id, kinds.get("complaint", 0), limits.complaint_rate, limits.min_delivered,
                        ("sent",))
            or _could_pass(conn, issue_id, kinds.get("hard", 0), limits.hard_bounce_rate, limits.min_delivered,
                           ("sent", "failed"))):
        return None
    rates = issue_rates(conn, issue_id)
    resume = (f"Look at who bounced or complained (newsletter status {issue_id}; newsletter subscribers show "
              f"ADDRESS), fix the cause, then resume with: newsletter send {issue_id} --no-pause")
    if rates.delivered >= limits.min_delivered and rates.complaint_rate > limits.complaint_rate:
        return (f"paused: {rates.complained} of {rates.delivered} people who got issue {issue_id} reported it as "
                f"spam ({rates.complaint_rate:.2%}, the limit is {limits.complaint_rate:.2%}); mailbox providers "
                f"block senders above that. {resume}")
    if rates.attempted >= limits.min_delivered and rates.hard_rate > limits.hard_bounce_rate:
        return (f"paused: {rates.hard} of {rates.attempted} addresses for issue {issue_id} do not exist "
                f"({rates.hard_rate:.2%}, the limit is {limits.hard_bounce_rate:.2%}); this often means an old or "
                f"bought list. {resume}")
    return None


def pause_check(conn: Connection, issue_id: str, limits: Thresholds) -> Callable[[], str | None]:
    return lambda: pause_reason(conn, issue_id, limits)

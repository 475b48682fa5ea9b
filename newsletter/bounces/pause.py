"""The auto-pause: a send stops itself when its issue's complaint or hard-bounce rate passes a threshold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from newsletter.store import Connection
from newsletter.store.events import issue_rates

__all__ = ["Thresholds", "pause_reason", "pause_check"]


@dataclass(frozen=True)
class Thresholds:
    complaint_rate: float = 0.003  # Gmail's and Yahoo's line for bulk senders (0.3 %)
    hard_bounce_rate: float = 0.05
    min_delivered: int = 1000  # below this a handful of reports would swing the rate too far


def pause_reason(conn: Connection, issue_id: str, limits: Thresholds) -> str | None:
    """Why the send of `issue_id` should pause now, in plain words with how to resume; None to go on."""
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

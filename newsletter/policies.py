"""What a send run may do (RetryPolicy, SendPolicy) and what it did (SendReport)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryPolicy", "SendPolicy", "SendReport"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a 4xx is retried: `attempts` tries in all, exponential backoff, plus up to `jitter` x delay."""

    attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.5

    def delay(self, retry: int, *, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retry` (1 = the first retry)."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return min(self.max_delay, backoff * (1 + self.jitter * rand()))


@dataclass(frozen=True)
class SendPolicy:
    """How a run is batched: parallel connections, a rate cap, and how the ledger is claimed and committed.

    `claim_size` rows are claimed (and committed) at a time; pending subscribers are read `page_size` at a time.
    With `commit_every` 1 (the default) the results that came back are committed together just before the next
    messages are handed over, so at most 2 x `connections` messages are ever out without a committed 'sent'
    (docs/reliability.md); with `commit_every` above 1, every that many results or `commit_interval` seconds.
    """

    connections: int = 1
    rate: float | None = None
    claim_size: int = 50
    commit_every: int = 1
    commit_interval: float = 0.5
    page_size: int = 500


@dataclass(frozen=True)
class SendReport:
    """What one run did. `skipped` counts subscribers whose row was already final (sent/failed) at the start."""

    issue_id: str
    sent: int
    deferred: int
    failed: int
    skipped: int
    resent_after_crash: int  # sent rows an earlier run had left 'claimed' (it may or may not have sent them)
    duration: float
    stopped_early: str | None
    interrupted: bool
    bounced: int = 0  # of `failed`: subscribers marked bounced (no such user)

    def log_line(self) -> str:
        """The counts as `key=value` words, for the database's event log."""
        parts = [f"sent={self.sent}", f"deferred={self.deferred}", f"failed={self.failed}",
                 f"skipped={self.skipped}", f"resent_after_crash={self.resent_after_crash}"]
        if self.stopped_early:
            parts.append(f"stopped_early={self.stopped_early}")
        if self.interrupted:
            parts.append("interrupted")
        return " ".join(parts)

"""Selection: summaries + what earlier issues used -> the latest unsent, not-future summaries, in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from .models import Summary

__all__ = ["merge_duplicates", "select_latest", "HeldBack", "held_back"]


def merge_duplicates(summaries: Iterable[Summary]) -> list[Summary]:
    """One summary per URL (and per id): the first source wins, so a local file beats a feed entry."""
    by_url: dict[str, Summary] = {}
    ids: set[str] = set()
    for s in summaries:
        key = s.url.rstrip("/").lower()
        if key in by_url or s.id in ids:
            continue
        by_url[key] = s
        ids.add(s.id)
    return list(by_url.values())


def select_latest(
    summaries: Iterable[Summary],
    *,
    issue_date: dt.date,
    limit: int,
    used_ids: Iterable[str] = (),
    used_urls: Iterable[str] = (),
    since: dt.date | None = None,
    oldest: dt.date | None = None,
) -> list[Summary]:
    """The newest `limit` summaries dated on or before issue_date (and after `since`), not used before.

    Order is newest first; summaries of the same date keep a stable order by id.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    used_id_set = set(used_ids)
    used_url_set = {u.rstrip("/").lower() for u in used_urls}
    eligible = [
        s for s in merge_duplicates(summaries)
        if s.date <= issue_date
        and (since is None or s.date > since)
        and (oldest is None or s.date >= oldest)
        and s.id not in used_id_set
        and s.url.rstrip("/").lower() not in used_url_set
    ]
    eligible.sort(key=lambda s: s.id)
    eligible.sort(key=lambda s: s.date, reverse=True)
    return eligible[:limit]


@dataclass(frozen=True)
class HeldBack:
    """A summary no other issue holds that this one left out, and why (for the editor to see)."""

    summary: Summary
    reason: str  # "future" | "too-old"
    issue_date: dt.date

    def describe(self, where: str | None = None) -> str:
        """One line for the editor; `where` is the origin as it should be shown (default: as recorded)."""
        where = where or self.summary.origin or self.summary.id
        if not where.endswith((f"/{self.summary.id}.md", f"/{self.summary.id}.markdown")):
            where += f" ({self.summary.id})"  # a feed holds many entries: name the one meant
        if self.reason == "future":
            return f"waits until {self.summary.date.isoformat()}: {where}"
        age = (self.issue_date - self.summary.date).days
        return f"too old ({self.summary.date.isoformat()}, {age} days before the issue): {where}"


def held_back(
    summaries: Iterable[Summary],
    *,
    issue_date: dt.date,
    used_ids: Iterable[str] = (),
    oldest: dt.date | None = None,
) -> list[HeldBack]:
    """Unused summaries left out because they are dated after the issue, or before `oldest`; newest first."""
    used = set(used_ids)
    out = []
    for s in merge_duplicates(summaries):
        if s.id in used:
            continue
        if s.date > issue_date:
            out.append(HeldBack(s, "future", issue_date))
        elif oldest is not None and s.date < oldest:
            out.append(HeldBack(s, "too-old", issue_date))
    out.sort(key=lambda h: h.summary.id)
    out.sort(key=lambda h: h.summary.date, reverse=True)
    return out

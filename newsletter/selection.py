"""Selection: summaries + what earlier issues used -> the latest unsent, not-future summaries, in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from .models import Summary

__all__ = ["merge_duplicates", "select_latest"]


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
        and s.id not in used_id_set
        and s.url.rstrip("/").lower() not in used_url_set
    ]
    eligible.sort(key=lambda s: s.id)
    eligible.sort(key=lambda s: s.date, reverse=True)
    return eligible[:limit]

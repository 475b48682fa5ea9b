"""Selection: latest first, future held back, used summaries excluded, duplicates merged, stable order."""

from __future__ import annotations

import datetime as dt

from newsletter.models import Summary
from newsletter.selection import merge_duplicates, select_latest


def s(id_: str, date: str, url: str | None = None, origin: str = "file") -> Summary:
    return Summary(id=id_, title=id_.title(), date=dt.date.fromisoformat(date), journal="Brain",
                   url=url or f"https://x.example/{id_}", origin=origin)


DAY = dt.date(2026, 11, 25)


def test_latest_first_and_limited() -> None:
    got = select_latest([s("a", "2026-01-01"), s("b", "2026-06-01"), s("c", "2026-11-01")], issue_date=DAY, limit=2)
    assert [x.id for x in got] == ["c", "b"]


def test_future_dated_are_held_back() -> None:
    got = select_latest([s("a", "2026-11-25"), s("b", "2026-11-26"), s("c", "2026-12-31")], issue_date=DAY, limit=6)
    assert [x.id for x in got] == ["a"]


def test_already_used_are_excluded() -> None:
    got = select_latest([s("a", "2026-11-01"), s("b", "2026-10-01")], issue_date=DAY, limit=6, used_ids={"a"})
    assert [x.id for x in got] == ["b"]
    got = select_latest([s("a", "2026-11-01"), s("b", "2026-10-01")], issue_date=DAY, limit=6,
                        used_urls={"https://x.example/b/"})
    assert [x.id for x in got] == ["a"]


def test_duplicates_by_url_are_merged_first_source_wins() -> None:
    local = s("sleep", "2026-10-06", "https://x.example/sleep", origin="content/sleep.md")
    feed = s("sleep-feed", "2026-10-08", "https://X.example/sleep/", origin="feed.xml")
    assert merge_duplicates([local, feed]) == [local]
    got = select_latest([local, feed], issue_date=DAY, limit=6)
    assert got == [local]


def test_same_date_order_is_stable_by_id() -> None:
    items = [s("zeta", "2026-03-01"), s("alpha", "2026-03-01"), s("mid", "2026-03-01")]
    assert [x.id for x in select_latest(items, issue_date=DAY, limit=6)] == ["alpha", "mid", "zeta"]
    assert [x.id for x in select_latest(list(reversed(items)), issue_date=DAY, limit=6)] == ["alpha", "mid", "zeta"]


def test_since_keeps_only_newer() -> None:
    got = select_latest([s("a", "2026-11-01"), s("b", "2026-10-01")], issue_date=DAY, limit=6,
                        since=dt.date(2026, 10, 1))
    assert [x.id for x in got] == ["a"]

"""The desk's pages through httpx on a real Uvicorn: new issue, teasers, the draft preview, send now with
progress, schedule and cancel, subscribers (search, paging, add, CSV import with per-line errors, export)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import time
import tomllib
from pathlib import Path

import pytest

from desk_support import (APPROVER, APPROVER2, DATE, EDITOR, csrf_for, db, field_value, make_site, person,  # noqa: F401
                          server, site)
from newsletter.jobs.issues import compose
from newsletter.settings import Settings

ISSUE = DATE.isoformat()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_site(tmp_path_factory.mktemp("desk-pages") / "site").root


def edit_data(page: str, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {name: field_value(page, name) for name in ("version", "subject", "preheader")}
    data["csrf"] = csrf_for(page, f"/desk/issues/{ISSUE}")
    data["intro"] = re.search(r'<textarea id="intro"[^>]*>(.*?)</textarea>', page, re.S).group(1)  # type: ignore[union-attr]
    data["sid"] = re.findall(r'name="sid" value="([^"]+)"', page)
    data["op"] = "save"
    data.update(changes)
    return data


def test_new_issue_lists_candidates_and_why_others_wait(site: Settings, server: str) -> None:
    compose(site, date=DATE, issue_id=f"{ISSUE}-earlier", limit=1)  # holds the newest summary
    (site.root / "content" / "broken-summary.md").write_text("---\ntitle: 'No date'\n---\nBody\n", encoding="utf-8")
    with person(server, EDITOR) as client:
        page = client.get(f"/desk/new?date={ISSUE}").text
        assert "already in the issue of 2026-11-25-earlier" in page
        assert "after this issue&#39;s date" in page  # a summary dated after the 25th waits
        assert "broken-summary.md" in page and "has a problem" in page
        ticked = re.findall(r'name="summary" value="([^"]+)" checked', page)
        assert len(ticked) == site.default_limit
        none = client.post("/desk/new", data={"csrf": csrf_for(page, "/desk/new"), "date": ISSUE, "op": "compose"})
        assert none.status_code == 400 and "Choose at least one summary" in none.text
        made = client.post("/desk/new", data={"csrf": csrf_for(page, "/desk/new"), "date": ISSUE, "op": "compose",
                                              "summary": ticked[:2]})
        assert made.status_code == 303
        again = client.post("/desk/new", data={"csrf": csrf_for(page, "/desk/new"), "date": ISSUE, "op": "compose",
                                               "summary": ticked[:2]})
        assert again.status_code == 400 and "already an issue for 2026-11-25" in again.text
    assert tomllib.loads((site.root / "issues" / ISSUE / "issue.toml").read_text())["summaries"] == ticked[:2]


def test_own_teasers_reach_issue_toml_and_the_email(site: Settings, server: str) -> None:
    issue = compose(site, date=DATE)
    first = issue.summary_ids[0]
    with person(server, EDITOR) as client:
        page = client.get(f"/desk/issues/{ISSUE}").text
        too_long = client.post(f"/desk/issues/{ISSUE}", data=edit_data(page, **{f"teaser-{first}": "word " * 40}))
        assert too_long.status_code == 400 and f'id="teaser-{first}-error"' in too_long.text
        saved = client.post(f"/desk/issues/{ISSUE}",
                            data=edit_data(page, **{f"teaser-{first}": "Our own short teaser for readers."}))
        assert saved.status_code == 303
        client.get(f"/desk/issues/{ISSUE}")  # builds
        text = client.get(f"/desk/issues/{ISSUE}/text").text
    assert tomllib.loads((site.root / "issues" / ISSUE / "issue.toml").read_text())["teasers"] == {
        first: "Our own short teaser for readers."}
    assert "Our own short teaser for readers." in text
    assert "Our own short teaser for readers." in (site.root / "issues" / ISSUE / "build" / "email.html").read_text()


def test_remove_and_add_buttons(site: Settings, server: str) -> None:
    issue = compose(site, date=DATE, limit=3)
    with person(server, EDITOR) as client:
        page = client.get(f"/desk/issues/{ISSUE}").text
        assert client.post(f"/desk/issues/{ISSUE}",
                           data=edit_data(page, op=f"remove:{issue.summary_ids[1]}")).status_code == 303
        page = client.get(f"/desk/issues/{ISSUE}").text
        extra = re.search(r'<option value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        assert client.post(f"/desk/issues/{ISSUE}", data=edit_data(page, op="add", add_id=extra)).status_code == 303
    ids = tomllib.loads((site.root / "issues" / ISSUE / "issue.toml").read_text())["summaries"]
    assert ids == [issue.summary_ids[0], issue.summary_ids[2], extra]


def test_the_draft_preview_renders_unsaved_words_and_saves_nothing(site: Settings, server: str) -> None:
    compose(site, date=DATE)
    before = (site.root / "issues" / ISSUE / "issue.toml").read_text()
    with person(server, EDITOR) as client:
        page = client.get(f"/desk/issues/{ISSUE}").text
        data = edit_data(page, intro="Words not saved yet.")
        answer = client.post(f"/desk/issues/{ISSUE}/draft", data=data).json()
        assert answer["ok"] is True and isinstance(answer["findings"], list)
        assert "Words not saved yet." in client.get(f"/desk/issues/{ISSUE}/preview?draft=1").text
        assert "Words not saved yet." not in client.get(f"/desk/issues/{ISSUE}/preview").text
        bad = client.post(f"/desk/issues/{ISSUE}/draft", data=edit_data(page, subject="")).json()
        assert bad["ok"] is False and "subject" in bad["problems"]
    with person(server, APPROVER) as other:  # one person's draft is never another's preview
        assert "Words not saved yet." not in other.get(f"/desk/issues/{ISSUE}/preview?draft=1").text
    assert (site.root / "issues" / ISSUE / "issue.toml").read_text() == before


def _approve(site: Settings, server: str) -> None:
    with person(server, APPROVER2) as bea:
        page = bea.get(f"/desk/issues/{ISSUE}").text
        assert bea.post(f"/desk/issues/{ISSUE}/approve",
                        data={"csrf": csrf_for(page, f"/desk/issues/{ISSUE}/approve")}).status_code == 303


def test_send_now_names_the_count_then_shows_progress(site: Settings, server: str) -> None:
    compose(site, date=DATE)
    with person(server, APPROVER) as arno:
        assert arno.get(f"/desk/issues/{ISSUE}/send").status_code == 409  # not approved yet
        _approve(site, server)
        confirm = arno.get(f"/desk/issues/{ISSUE}/send")
        assert confirm.status_code == 200 and "Yes, send it to 8 subscribers" in confirm.text
        started = arno.post(f"/desk/issues/{ISSUE}/send", data={"csrf": csrf_for(confirm.text, f"/desk/issues/{ISSUE}/send")})
        assert started.status_code == 303 and started.headers["location"].endswith("/progress")
        deadline = time.monotonic() + 60
        while True:
            progress = arno.get(f"/desk/issues/{ISSUE}/progress")
            if "8 of 8 sent" in progress.text and "Done." in progress.text:
                break
            assert time.monotonic() < deadline, progress.text
            time.sleep(0.3)
        assert "Refresh" not in progress.headers
        page = arno.get(f"/desk/issues/{ISSUE}").text
        assert "can no longer be changed" in page
        frozen = arno.post(f"/desk/issues/{ISSUE}", data=edit_data(page, subject="Too late"))
        assert frozen.status_code == 409 and "can no longer be changed" in frozen.text
        assert "8 sent" in arno.get("/desk/").text
    with contextlib.closing(db(site)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ledger WHERE issue_id = ? AND status = 'sent'", (ISSUE,)).fetchone()[0] == 8
        actions = [r[0] for r in conn.execute("SELECT action FROM desk_audit WHERE issue_id = ? ORDER BY id", (ISSUE,))]
    assert actions[-3:] == ["approve", "send", "send.done"]
    assert len(list((site.root / "outbox" / "new").iterdir())) == 8


def test_schedule_and_cancel(site: Settings, server: str) -> None:
    compose(site, date=DATE)
    _approve(site, server)
    with person(server, APPROVER) as arno:
        page = arno.get(f"/desk/issues/{ISSUE}").text
        past = arno.post(f"/desk/issues/{ISSUE}/schedule", data={
            "csrf": csrf_for(page, f"/desk/issues/{ISSUE}/schedule"), "day": "2020-01-01", "time": "08:00",
            "zone": "Europe/London"})
        assert past.status_code == 409 and "in the past" in past.text
        bad_zone = arno.post(f"/desk/issues/{ISSUE}/schedule", data={
            "csrf": csrf_for(page, f"/desk/issues/{ISSUE}/schedule"), "day": "2099-01-01", "time": "08:00",
            "zone": "Mars/Olympus"})
        assert bad_zone.status_code == 409
        done = arno.post(f"/desk/issues/{ISSUE}/schedule", data={
            "csrf": csrf_for(page, f"/desk/issues/{ISSUE}/schedule"), "day": "2099-01-01", "time": "08:00",
            "zone": "America/New_York"})
        assert done.status_code == 303
        page = arno.get(f"/desk/issues/{ISSUE}").text
        assert "Scheduled for Thursday 1 January 2099 at 08:00" in page
        cancelled = arno.post(f"/desk/issues/{ISSUE}/cancel", data={"csrf": csrf_for(page, f"/desk/issues/{ISSUE}/cancel")})
        assert cancelled.status_code == 303
    with contextlib.closing(db(site)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schedule_jobs").fetchone()[0] == 0
        actions = [r[0] for r in conn.execute("SELECT action FROM desk_audit WHERE issue_id = ? ORDER BY id", (ISSUE,))]
    assert actions[-2:] == ["schedule", "cancel"]


def test_subscribers_search_page_add_import_export(site: Settings, server: str) -> None:
    rows = "".join(f"person{n:03d}@example.net,Person {n}\n" for n in range(120))
    with person(server, EDITOR) as client:
        page = client.get("/desk/subscribers").text
        assert "<strong>8</strong> subscribed" in page
        upload = "email,name\n" + rows + "not-an-address,Bad\nperson001@example.net,Again\n"
        imported = client.post("/desk/subscribers/import", data={"csrf": csrf_for(page, "/desk/subscribers/import")},
                               files={"file": ("people.csv", upload.encode(), "text/csv")})
        assert imported.status_code == 200
        assert "people.csv: 120 added" in imported.text and "2 rejected" in imported.text
        assert "Line 122: not-an-address" in imported.text and "Line 123: person001@example.net: duplicate of line 3" in imported.text
        found = client.get("/desk/subscribers?q=example.net")
        assert "120 matches, page 1 of 3" in found.text and found.text.count("<tr>") == 51  # header + 50
        last = client.get("/desk/subscribers?q=example.net&page=3")
        assert "person119@example.net" in last.text and "Next page" not in last.text
        page = client.get("/desk/subscribers").text
        bad = client.post("/desk/subscribers/add", data={"csrf": csrf_for(page, "/desk/subscribers/add"),
                                                         "email": "nobody at example", "name": ""})
        assert bad.status_code == 400 and 'id="add-error"' in bad.text and 'value="nobody at example"' in bad.text
        good = client.post("/desk/subscribers/add", data={"csrf": csrf_for(page, "/desk/subscribers/add"),
                                                          "email": "=cmd@example.org", "name": "=SUM(A1)"})
        assert good.status_code == 200 and "is subscribed" in good.text
        exported = client.get("/desk/subscribers/export.csv")
        assert exported.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(exported.text)))
        assert table[0] == ["email", "name", "status"] and len(table) == 1 + 8 + 120 + 1
        assert ["'=cmd@example.org", "'=SUM(A1)", "subscribed"] in table  # no formula runs in a spreadsheet


def test_a_changed_summary_file_shows_on_the_next_page(site: Settings, server: str) -> None:
    """The desk keeps summaries between saves; a changed file must never be served stale."""
    issue = compose(site, date=DATE, limit=2)
    source = Path(issue.summaries[0].origin)
    with person(server, EDITOR) as client:
        assert issue.summaries[0].title in client.get(f"/desk/issues/{ISSUE}").text
        source.write_text(source.read_text(encoding="utf-8").replace(issue.summaries[0].title, "A retitled summary"),
                          encoding="utf-8")
        page = client.get(f"/desk/issues/{ISSUE}").text
        assert "A retitled summary" in page
        assert "A retitled summary" in client.get(f"/desk/issues/{ISSUE}/preview").text

"""Compose writes an issue an editor can edit; reading it back reports mistakes clearly."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from pathlib import Path

import pytest

from newsletter.compose import read_issue
from newsletter.errors import IssueError
from newsletter.jobs.issues import compose, gather, load_issue
from newsletter.settings import Settings

DATE = dt.date(2026, 11, 25)


def test_compose_writes_reviewable_toml(settings: Settings, project: Path) -> None:
    issue = compose(settings, date=DATE)
    path = project / "issues/2026-11-25/issue.toml"
    data = tomllib.loads(path.read_text())
    assert data["summaries"] == list(issue.summary_ids)
    assert len(issue.summary_ids) == 4  # what the 90 days before the issue date hold, not padded to 6
    assert all((DATE - s.date).days <= settings.max_age_days for s in issue.summaries)
    assert data["subject"] == issue.summaries[0].title
    assert data["preheader"] == data["intro"] == ""  # empty: derived from the summaries at build time
    assert issue.intro.startswith("This issue has 4 summaries of research")
    assert issue.preheader.startswith("Also inside: ") and not issue.custom_preheader
    assert all(s.date <= DATE for s in issue.summaries)
    dates = [s.date for s in issue.summaries]
    assert dates == sorted(dates, reverse=True)
    assert "# " in path.read_text()  # comments guide the editor


def test_compose_refuses_to_overwrite_without_force(settings: Settings, project: Path) -> None:
    compose(settings, date=DATE)
    path = project / "issues/2026-11-25/issue.toml"
    path.write_text(path.read_text().replace("status = \"draft\"", "status = \"draft\"\n# my edit"))
    with pytest.raises(IssueError, match="--force"):
        compose(settings, date=DATE)
    assert "# my edit" in path.read_text()
    compose(settings, date=DATE, force=True)
    assert "# my edit" not in path.read_text()


def test_next_issue_skips_summaries_of_earlier_issues(settings: Settings) -> None:
    first = compose(settings, date=dt.date(2026, 10, 1), limit=3)
    second = compose(settings, date=DATE, limit=6)
    assert not set(first.summary_ids) & set(second.summary_ids)


def test_discarded_issue_gives_its_summaries_back(settings: Settings, project: Path) -> None:
    settings = dataclasses.replace(settings, max_age_days=3650)  # the second issue is two months later
    first = compose(settings, date=dt.date(2026, 10, 1), limit=3)
    path = first.folder / "issue.toml"
    path.write_text(path.read_text().replace('status = "draft"', 'status = "discarded"'))
    second = compose(settings, date=DATE, limit=12)
    assert set(first.summary_ids) <= set(second.summary_ids)


def test_editor_changes_are_read_back(settings: Settings) -> None:
    issue = compose(settings, date=DATE)
    path = issue.folder / "issue.toml"
    text = path.read_text()
    first, second = issue.summary_ids[0], issue.summary_ids[1]
    text = text.replace(f'  "{first}",', "__FIRST__").replace(f'  "{second}",', f'  "{first}",')
    text = text.replace("__FIRST__", f'  "{second}",')
    text = text.replace(f'subject = "{issue.subject}"', 'subject = "Iron, sleep and more"')
    path.write_text(text)
    again = load_issue(settings, issue.folder)
    assert again.summary_ids[:2] == (second, first)
    assert again.subject == "Iron, sleep and more"


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('summaries = [', 'summaries = [\n  "no-such-summary",'), "summaries"),
    (lambda t: t + 'colour = "blue"\n', "colour"),
    (lambda t: t.replace('status = "draft"', 'status = "sent"'), "status"),
    (lambda t: t.replace('date = "2026-11-25"', 'date = "25/11/2026"'), "date"),
    (lambda t: t.replace('subject = "', 'subject = 5 #"'), "subject"),
])
def test_bad_edits_name_the_field(settings: Settings, edit, field: str) -> None:  # type: ignore[no-untyped-def]
    issue = compose(settings, date=DATE)
    path = issue.folder / "issue.toml"
    path.write_text(edit(path.read_text()))
    with pytest.raises(IssueError) as info:
        load_issue(settings, issue.folder)
    assert info.value.field == field
    assert "issue.toml" in str(info.value)


def test_unknown_id_error_names_the_id(settings: Settings) -> None:
    issue = compose(settings, date=DATE)
    path = issue.folder / "issue.toml"
    path.write_text(path.read_text().replace('summaries = [', 'summaries = [\n  "no-such-summary",'))
    with pytest.raises(IssueError, match="no-such-summary"):
        read_issue(issue.folder, {s.id: s for s in gather(settings)})


def test_broken_toml_is_reported(settings: Settings) -> None:
    issue = compose(settings, date=DATE)
    (issue.folder / "issue.toml").write_text("subject = \n")
    with pytest.raises(IssueError, match="not valid TOML"):
        load_issue(settings, issue.folder)


def test_nothing_left_to_compose_is_a_clear_error(settings: Settings, project: Path) -> None:
    with pytest.raises(IssueError, match="no summaries"):
        compose(settings, date=dt.date(2025, 1, 1))
    assert not (project / "issues/2025-01-01").exists()

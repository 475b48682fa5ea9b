"""What the editor sees is what subscribers get: edits to issue.toml flow into the build, traps are reported."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from cli_inprocess import run_newsletter
from newsletter.errors import IssueError, SourceError
from newsletter.jobs.issues import build, compose
from newsletter.settings import Settings

DATE = dt.date(2026, 11, 25)
REPO = Path(__file__).resolve().parent.parent


def _set_summaries(toml: Path, ids: list[str]) -> None:
    text = toml.read_text()
    head, _, _ = text.partition("summaries = [")
    toml.write_text(head + "summaries = [\n" + "".join(f'  "{i}",\n' for i in ids) + "]\n")


def _set(toml: Path, field: str, value: str) -> None:
    text = toml.read_text()
    text, n = re.subn(rf"(?ms)^{field} = (?:'''.*?'''|[^\n]*)$", lambda _m: f"{field} = {value}", text)
    assert n == 1
    toml.write_text(text)


def test_preheader_follows_the_issue_after_reorder_and_drop(settings: Settings) -> None:
    issue = compose(settings, date=DATE)
    ids = list(issue.summary_ids)
    assert len(ids) >= 4
    dropped = issue.summaries[1]
    new_order = [ids[2], ids[0], *ids[3:]]  # the old third leads, the old second is dropped
    _set_summaries(issue.folder / "issue.toml", new_order)
    result = build(settings, issue.folder)
    by_id = {s.id: s for s in issue.summaries}
    second = by_id[new_order[1]]
    rest = len(new_order) - 2
    assert result.email.preheader.startswith(f"Also inside: {second.title[:30]}")
    assert f"and {rest} more" in result.email.preheader
    assert dropped.title[:30] not in result.email.preheader
    built = (issue.build_dir / "build.json").read_text()
    assert dropped.title[:30] not in built and second.title[:30] in built
    assert not [f for f in result.report.findings if f.code == "preheader"]


def test_own_preheader_naming_a_dropped_summary_is_warned(settings: Settings) -> None:
    issue = compose(settings, date=DATE)
    dropped = issue.summaries[1]
    toml = issue.folder / "issue.toml"
    _set(toml, "preheader", f'"Also inside: {dropped.title}"')
    _set_summaries(toml, [i for i in issue.summary_ids if i != dropped.id])
    result = build(settings, issue.folder, write=False)
    warnings = [f for f in result.report.warnings if f.code == "preheader"]
    assert len(warnings) == 1 and dropped.id in warnings[0].message
    assert result.report.ok  # a warning: the editor may mean it


@pytest.mark.parametrize("link", ["/about", "javascript:alert(1)", "about.html"])
def test_intro_link_that_is_not_absolute_is_refused(settings: Settings, link: str) -> None:
    issue = compose(settings, date=DATE)
    _set(issue.folder / "issue.toml", "intro", f'"Read more on [our site]({link}) today."')
    for write in (True, False):  # build and check
        with pytest.raises(IssueError) as info:
            build(settings, issue.folder, write=write)
        assert info.value.field == "intro" and link in str(info.value) and "issue.toml" in str(info.value)
    assert not (issue.build_dir / "email.html").exists()


def test_relative_link_in_a_summary_is_refused(settings: Settings, project: Path) -> None:
    path = project / "content" / "sleep-problems-in-ms.md"
    text = path.read_text()
    lines = text.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("## Why this matters")) + 1
    lines.insert(at, "See [our sleep guide](/guides/sleep) for tips.")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError) as info:
        compose(settings, date=DATE)
    assert info.value.field == "why_it_matters" and "/guides/sleep" in str(info.value)
    assert info.value.path == str(path) and info.value.line == at + 1


def _redate(path: Path, date: str) -> None:
    path.write_text(re.sub(r"(?m)^date: .*$", f"date: {date}", path.read_text()))


def test_compose_lists_what_it_held_back_and_check_warns_on_a_typo_year(project: Path, settings: Settings) -> None:
    typo = project / "content" / "sleep-problems-in-ms.md"
    _redate(typo, "2027-10-06")  # meant 2026
    r = run_cli(project, "compose", "--date", "2026-11-25")
    assert r.returncode == 0, r.stderr
    assert "Held back" in r.stdout
    assert "waits until 2027-10-06: content/sleep-problems-in-ms.md" in r.stdout
    r = run_cli(project, "check", "issues/2026-11-25")
    assert r.returncode == 0, r.stderr
    assert "future-date" in r.stdout and "sleep-problems-in-ms.md is dated 2027-10-06" in r.stdout
    assert "2026-12-01" not in r.stdout  # next week's summary is normal, not a typo


def run_cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` in `project`, 200 columns wide (in this process: see cli_inprocess)."""
    return run_newsletter(args, cwd=project, env={**os.environ, "COLUMNS": "200"})


def test_old_summaries_stay_out_and_the_intro_tells_the_truth(project: Path) -> None:
    r = run_cli(project, "compose", "--date", "2026-11-25")
    assert r.returncode == 0, r.stderr
    assert "too old (2026-08-20, 97 days before the issue): content/clemastine-remyelination-trial.md" in r.stdout
    assert "max_age_days = 90" in r.stdout
    toml = project / "issues/2026-11-25/issue.toml"
    data = tomllib.loads(toml.read_text())
    assert len(data["summaries"]) == 4  # only what the last 90 days hold, not padded to 6 with old items
    _set_summaries(toml, data["summaries"][:3])  # the editor drops one
    assert run_cli(project, "build", "issues/2026-11-25").returncode == 0
    text = " ".join((project / "issues/2026-11-25/build/email.txt").read_text().split())
    assert "This issue has 3 summaries of research, in plain words. The studies came out from 15 September " \
           "to 20 November 2026." in text
    assert " new " not in text.lower()


def test_max_age_days_setting(project: Path) -> None:
    cfg = project / "newsletter.toml"
    cfg.write_text(re.sub(r"(?m)^max_age_days = .*$", "max_age_days = 400", cfg.read_text()))
    r = run_cli(project, "compose", "--date", "2026-11-25")
    assert r.returncode == 0, r.stderr
    assert "too old" not in r.stdout and "clemastine-remyelination-trial" in r.stdout
    cfg.write_text(cfg.read_text().replace("max_age_days = 400", "max_age_days = 0"))
    r = run_cli(project, "compose", "--date", "2026-11-25", "--force")
    assert r.returncode == 1 and "max_age_days" in r.stderr


def test_text_part_keeps_the_sample_issue_paragraphs(settings: Settings, project: Path) -> None:
    shutil.copytree(REPO / "issues" / "2026-09-14", project / "issues" / "2026-09-14")
    text = build(settings, project / "issues" / "2026-09-14").email.text
    first = text.index("Three studies this month")
    second = text.index("Questions about a study?")
    assert "\n\n" in text[first:second]  # two paragraphs, as in the HTML
    assert "Write to us at editor@ms-research.example.org." in text


def test_text_part_keeps_lists_and_numbers_links(settings: Settings) -> None:
    issue = compose(settings, date=DATE)
    intro = ("This month:\\n\\n- a large registry study\\n- a small trial\\n\\n"
             "Read [how we choose studies](https://ms-research.example.org/how-we-choose) first.")
    _set(issue.folder / "issue.toml", "intro", f'"{intro}"')
    text = build(settings, issue.folder).email.text
    assert "This month:\n\n- a large registry study\n- a small trial\n\nRead how we choose studies [" in text
    number = re.search(r"how we choose studies \[(\d+)\]", text)
    assert number and f"[{number.group(1)}] https://ms-research.example.org/how-we-choose" in text


@pytest.mark.parametrize("value", ["2026-02-30", "2026-13-01", "2026-04-31"])
def test_a_date_that_is_not_a_real_day_is_one_line(project: Path, value: str) -> None:
    path = project / "content" / "sleep-problems-in-ms.md"
    _redate(path, value)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), start=1) if text.startswith("date:"))
    r = run_cli(project, "compose", "--date", "2026-11-25")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert f"sleep-problems-in-ms.md:{line}: field 'date'" in lines[0] and value in lines[0], lines[0]


def test_commands_work_from_a_subfolder(project: Path, tmp_path: Path) -> None:
    r = run_cli(project / "content", "compose", "--date", "2026-11-25")
    assert r.returncode == 0, r.stderr
    assert (project / "issues/2026-11-25/issue.toml").exists()
    r = run_cli(project / "issues/2026-11-25", "build", ".")
    assert r.returncode == 0, r.stderr
    assert (project / "issues/2026-11-25/build/email.html").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run_cli(elsewhere, "compose", "--date", "2026-11-25")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no newsletter.toml" in r.stderr and "--config" in r.stderr
    r = run_cli(elsewhere, "--config", str(project / "newsletter.toml"), "check", str(project / "issues/2026-11-25"))
    assert r.returncode == 0, r.stderr


def test_every_broken_summary_is_reported_in_one_run(project: Path) -> None:
    content = project / "content"
    _redate(content / "sleep-problems-in-ms.md", "2026-02-30")
    (content / "broken.md").write_text("no front matter here\n")
    path = content / "exercise-reduces-ms-fatigue.md"
    path.write_text(path.read_text().replace("## Limitations", "## Limits"))
    r = run_cli(project, "compose", "--date", "2026-11-25")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "3 summary sources are broken" in r.stderr
    for name in ("sleep-problems-in-ms.md", "broken.md", "exercise-reduces-ms-fatigue.md"):
        assert name in r.stderr
    assert not any((project / "issues").iterdir())


def test_build_exits_non_zero_on_errors_like_check(project: Path) -> None:
    assert run_cli(project, "compose", "--date", "2026-11-25").returncode == 0
    toml = project / "issues/2026-11-25/issue.toml"
    _set(toml, "subject", '"' + "A subject far too long for any inbox " * 3 + '"')
    for command in ("build", "check", "preview"):
        if command == "preview":
            (project / "issues/2026-11-25/build/preview.html").unlink()
        r = run_cli(project, command, "issues/2026-11-25")
        assert r.returncode == 1, (command, r.stdout, r.stderr)
        assert "subject is 110 characters" in r.stdout and "check failed" in r.stderr
    assert (project / "issues/2026-11-25/build/preview.html").exists()  # still there to look at


def test_the_issue_toml_file_is_accepted_for_its_folder(project: Path) -> None:
    assert run_cli(project, "compose", "--date", "2026-11-25").returncode == 0
    r = run_cli(project, "build", "issues/2026-11-25/issue.toml")
    assert r.returncode == 0, r.stderr
    assert (project / "issues/2026-11-25/build/email.html").exists()
    r = run_cli(project, "check", "issues/2026-11-25/build/email.html")
    assert r.returncode == 1 and "is a file; give the issue's folder" in r.stderr

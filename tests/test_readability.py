"""Readability and the glossary in `check`: the sample issue passes, dense or jargon-heavy text is named."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import built_sample

from cli_inprocess import run_newsletter
from newsletter.check import check_issue, glossary_findings, readability_findings
from newsletter.errors import ConfigError, SourceError
from newsletter.glossary import Glossary, Term, load_glossary, unexplained_terms
from newsletter.jobs.issues import build, compose
from newsletter.readability import LONG_SENTENCE_WORDS, issue_readability, score, sentences
from newsletter.render import disclaimer_text
from newsletter.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
DENSE = REPO / "tests" / "data" / "readability" / "dense-immunomodulation-review.md"
DATE = dt.date(2026, 11, 25)

# The disclaimer as it read before it was rewritten (issue 17), kept to show the rewrite's effect.
OLD_DISCLAIMER = (
    "The studies summarised in this issue were published in Neurology, Annals of Neurology and Multiple "
    "Sclerosis Journal. Research varies in size and maturity: some studies are small, early or done in the "
    "laboratory, and later work may change the picture. Our summaries are simplified; please read the original "
    "studies for the full details, and talk with your healthcare professionals before you change your "
    "treatment, diet or supplements.")


def test_sentences_split_at_ends_not_at_abbreviations() -> None:
    text = ("Dr. Lee saw it, e.g. in the lab. The trial was small! Was it?\n\n"
            "A paragraph without a full stop\n\n- a list item\n- another one")
    assert sentences(text) == ["Dr. Lee saw it, e.g. in the lab.", "The trial was small!", "Was it?",
                               "A paragraph without a full stop", "a list item", "another one"]
    # "MS." is the end of a sentence, not a title like "Ms."
    assert sentences("It is common in MS. People often miss it.") == ["It is common in MS.", "People often miss it."]


def test_scoring_never_needs_the_network() -> None:
    from importlib.metadata import version

    score("Syllables come from pyphen's bundled dictionaries.")
    assert version("textstat") == "0.7.3"
    assert "nltk" not in sys.modules  # textstat >= 0.7.4 would fetch the CMU dictionary through NLTK


def test_score_ranks_plain_below_dense() -> None:
    plain = score("The cat sat on the mat. It was a warm day. She slept in the sun.")
    dense = score(DENSE.read_text(encoding="utf-8").split("---", 2)[2])
    assert plain.grade < 4 < 14 < dense.grade
    assert plain.ease > 80 > 0 > dense.ease
    assert plain.long_share == 0 and dense.longest_words > LONG_SENTENCE_WORDS
    assert dense.hardest_sentence.startswith("Longitudinal multicentre investigation")


@pytest.mark.parametrize("journals", [[], ["Neurology"], ["Neurology", "Annals of Neurology", "Multiple Sclerosis Journal"],
                                      ["Neurology", "Multiple Sclerosis and Related Disorders", "Annals of Neurology",
                                       "Multiple Sclerosis Journal", "Biological Trace Element Research"]])
def test_disclaimer_reads_at_grade_8_or_below(journals: list[str]) -> None:
    text = disclaimer_text(journals)
    assert score(text).grade <= 8, score(text)
    assert score(OLD_DISCLAIMER).grade > 12  # what it replaced
    # Every element the site's own disclaimer has.
    for element in ("not all the same", "big and some are small", "early stage", "done in a lab",
                    "read the original studies", "Talk with your healthcare team before you change"):
        assert element in text
    for journal in journals:
        assert journal in text


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The sample issue built (not written) once for the module: the tests only read it or check changed copies."""
    return built_sample(tmp_path_factory.mktemp("readability") / "site", write=False)


def test_sample_issue_passes_at_the_defaults(built) -> None:  # type: ignore[no-untyped-def]
    report = built.report
    assert report.ok, [f.message for f in report.errors]
    assert [f.message for f in report.warnings if f.code in ("readability", "glossary")] == []
    parts = [(r.label, r.part) for r in report.readability]
    assert parts[-1] == ("disclaimer", "disclaimer") and ("intro", "intro") in parts
    assert {label for label, _ in parts} >= {s.id for s in built.issue.summaries}
    assert all(r.grade <= 8 for r in report.readability), report.readability


def test_every_bundled_summary_reads_at_grade_8_and_explains_its_terms(settings: Settings) -> None:
    """Not only the sample issue: all sample content is written the way we ask editors to write."""
    from newsletter.jobs.issues import gather
    from newsletter.readability import summary_body

    glossary = load_glossary(settings.path(settings.glossary))
    for s in gather(settings):
        for part, text in (("teaser", s.teaser), ("body", summary_body(s.findings, s.why_it_matters, s.limitations))):
            if text.strip():
                assert score(text).grade <= 8, (s.id, part, score(text).hardest_sentence)
                assert unexplained_terms(glossary, text) == [], (s.id, part)


def test_a_dense_summary_fails_naming_the_file_and_sentence(settings: Settings) -> None:
    shutil.copy(DENSE, settings.path(settings.content_dir) / DENSE.name)
    result = build(settings, compose(settings, date=DATE).folder, write=False)
    errors = [f.message for f in result.report.errors if f.code == "readability"]
    assert len(errors) == 1, result.report.findings
    assert DENSE.name in errors[0] and "body of dense-immunomodulation-review" in errors[0]
    assert "Longitudinal multicentre investigation of immunomodulatory" in errors[0]
    assert not result.report.ok


def _set(toml: str, *lines: str) -> str:
    """newsletter.toml with `key = value` lines replacing the bundled ones."""
    for line in lines:
        key = line.split("=")[0].strip()
        toml, count = re.subn(rf"(?m)^{key} = .*$", lambda _: line, toml)
        assert count == 1, key
    return toml


def test_a_dense_feed_entry_only_warns(settings: Settings) -> None:
    """A partner's words can be pointed out but not rewritten by us: they must not stop a digest."""
    feed = settings.path(Path("content/feeds/partner-news.xml"))
    dense = DENSE.read_text(encoding="utf-8").split("## What the study found")[1].split("##")[0].strip()
    xml = feed.read_text(encoding="utf-8")
    feed.write_text(re.sub(r"<description>Some MS medicines[^<]*</description>", f"<description>{dense}</description>",
                           xml), encoding="utf-8")
    result = build(settings, compose(settings, date=DATE).folder, write=False)
    assert result.report.ok, result.report.errors
    [warning] = [f for f in result.report.warnings if f.code == "readability"]
    assert "partner-news.xml" in warning.message and "vaccines-on-b-cell-therapies" in warning.message


def test_thresholds_are_settings(built, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    rows = built.report.readability
    strict = readability_findings(rows, warn_grade=2, error_grade=3)
    assert len(strict) == len([r for r in rows if r.grade > 2])
    assert len([f for f in strict if f.level == "error"]) == len([r for r in rows if r.grade > 3 and r.ours])
    assert [r.label for r in rows if not r.ours] == ["vaccines-on-b-cell-therapies"]  # the feed entry
    assert readability_findings(rows, warn_grade=8, error_grade=12) == []
    toml = settings.root / "newsletter.toml"
    toml.write_text(_set(toml.read_text(encoding="utf-8"), "readability_warn_grade = 3", "readability_error_grade = 20"),
                    encoding="utf-8")
    lenient = load_settings(toml, env={"NEWSLETTER_SECRET": "x"})
    report = check_issue(built.issue, built.email, lenient)
    assert report.ok and {f.code for f in report.warnings} == {"readability"}


@pytest.mark.parametrize("line, key", [("readability_warn_grade = 'eight'", "readability_warn_grade"),
                                       ("readability_error_grade = 5", "readability_error_grade"),
                                       ("glossary = ''", "glossary")])
def test_bad_threshold_settings_name_the_key(settings: Settings, line: str, key: str) -> None:
    toml = settings.root / "newsletter.toml"
    toml.write_text(_set(toml.read_text(encoding="utf-8"), line), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(toml, env={"NEWSLETTER_SECRET": "x"})
    assert key in str(caught.value)


def test_a_dense_intro_is_an_error_naming_issue_toml(built, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    dense_intro = DENSE.read_text(encoding="utf-8").split("## Why this matters")[1].split("##")[0]
    issue = dataclasses.replace(built.issue, intro=dense_intro)
    report = check_issue(issue, built.email, settings)
    [error] = [f for f in report.errors if f.code == "readability"]
    assert "issue.toml: the intro reads at grade" in error.message and "Consequently, individualised" in error.message


# --- The glossary ---------------------------------------------------------------------------------


def test_the_sample_glossary_explains_at_least_25_terms_plainly() -> None:
    glossary = load_glossary(REPO / "content" / "glossary.yml")
    assert len(glossary) >= 25
    for term in glossary.terms:
        assert len(sentences(term.plain)) == 1, term
        # Graded without the term itself: the explanation, not the jargon it explains, must be plain.
        explanation = term.pattern().sub("it", term.plain)
        assert score(explanation).grade <= 8, (term.term, score(explanation).grade)
        assert term.cues(), term
    names = {t.term for t in glossary.terms}
    assert {"remyelination", "B cells", "relapse", "MRI lesion"} <= names


REMYELINATION = Term(term="remyelination", plain="Remyelination is the body repairing the coating around nerve fibres.",
                     look_for=("repair", "coating"))


def test_a_term_without_its_explanation_nearby_is_named() -> None:
    glossary = Glossary(terms=(REMYELINATION,))
    bare = "The drug may help remyelination. It was tested in 50 people. Nobody knows how it works."
    [(term, sentence)] = unexplained_terms(glossary, bare)
    assert term is REMYELINATION and sentence == "The drug may help remyelination."
    explained_after = "The drug may help remyelination. That means repairing the coating around nerves."
    explained_before = "Nerves have a coating. The drug may help remyelination."
    explained_far = "The drug may help remyelination. It was tested. In 50 people. Nerves repair their coating."
    assert unexplained_terms(glossary, explained_after) == []
    assert unexplained_terms(glossary, explained_before) == []
    assert len(unexplained_terms(glossary, explained_far)) == 1  # three sentences away is not nearby
    assert unexplained_terms(glossary, "Nothing about it here.") == []


def test_abbreviations_match_only_in_capitals() -> None:
    oct_scan = Term(term="OCT", plain="OCT is an eye scan.", look_for=("eye",))
    glossary = Glossary(terms=(oct_scan,))
    assert unexplained_terms(glossary, "The visit was in Oct. and went well.") == []
    assert len(unexplained_terms(glossary, "They had an OCT done.")) == 1


def test_check_suggests_the_plain_explanation(built) -> None:  # type: ignore[no-untyped-def]
    summary = dataclasses.replace(built.issue.summaries[0], teaser="Early signs of remyelination were seen.")
    issue = dataclasses.replace(built.issue, summaries=(summary,) + built.issue.summaries[1:])
    [finding] = glossary_findings(issue, Glossary(terms=(REMYELINATION,)))
    assert finding.level == "warning" and finding.code == "glossary"
    assert summary.origin in finding.message and f"the teaser of {summary.id}" in finding.message
    assert "Early signs of remyelination were seen." in finding.message and REMYELINATION.plain in finding.message


@pytest.mark.parametrize("text, problem", [
    ("terms: {a: 1}\n", "must hold a list of terms"),
    ("terms:\n  - term: relapse\n", "term 'relapse': `plain` must be"),
    ("terms:\n  - term: relapse\n    plain: A flare.\n    colour: red\n", "unknown key(s) colour"),
    ("terms:\n  - term: relapse\n    plain: A flare.\n  - term: Relapse\n    plain: Again.\n", "already listed"),
    ("terms:\n  - term: relapse\n    plain: [A flare\n", "not valid YAML"),
])
def test_a_broken_glossary_names_the_file_and_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "glossary.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        load_glossary(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


def test_no_glossary_file_means_no_glossary_warnings(tmp_path: Path) -> None:
    assert len(load_glossary(tmp_path / "missing.yml")) == 0


# --- The disclaimer cannot be dropped -------------------------------------------------------------


def test_a_template_override_without_the_disclaimer_fails_check(settings: Settings) -> None:
    templates = settings.path(settings.templates_dir)
    for name in ("email.mjml.j2", "email.txt.j2"):
        source = (templates / name).read_text(encoding="utf-8")
        assert "{{ disclaimer" in source
    mjml = templates / "email.mjml.j2"
    mjml.write_text(mjml.read_text(encoding="utf-8").replace("{{ disclaimer }}", "Ask your doctor."),
                    encoding="utf-8")
    report = build(settings, compose(settings, date=DATE).folder, write=False).report
    [error] = [f for f in report.errors if f.code == "disclaimer"]
    assert "HTML part" in error.message


def test_a_shortened_disclaimer_fails_check(built, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    text = re.sub(r"Talk with your\s+healthcare\s+team[^.]*\.", "", built.email.text)
    assert text != built.email.text
    report = check_issue(built.issue, dataclasses.replace(built.email, text=text), settings)
    assert [f.code for f in report.errors] == ["disclaimer"]


def test_check_prints_the_readability_table(project: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_newsletter(args, cwd=project, env={**__import__("os").environ, "COLUMNS": "120"})

    assert run("compose", "--date", DATE.isoformat()).returncode == 0
    result = run("check", f"issues/{DATE.isoformat()}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("text ") and "grade" in line and "ease" in line for line in lines)
    assert any(line.startswith("disclaimer ") for line in lines)
    # `build` stays quick for editors: no textstat import (about 200 ms), a pointer to `check` instead.
    built = subprocess.run([sys.executable, "-c", "import sys; from newsletter.cli import cli; "
                            f"cli.main(['build', 'issues/{DATE.isoformat()}'], standalone_mode=False); "
                            "print('textstat loaded:', 'textstat' in sys.modules)"],
                           cwd=project, capture_output=True, text=True, timeout=120)
    assert "textstat loaded: False" in built.stdout and "newsletter check issues/" in built.stdout, built
    shutil.copy(DENSE, project / "content" / DENSE.name)
    assert run("compose", "--date", DATE.isoformat(), "--force").returncode == 0
    failed = run("check", f"issues/{DATE.isoformat()}")
    assert failed.returncode == 1 and "dense-immunomodulation-review.md" in failed.stdout

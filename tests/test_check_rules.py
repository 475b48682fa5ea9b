"""check_email is its rules: each rule is a small function that fires only on its own fault."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import built_sample

from newsletter.check import EMAIL_RULES, EmailParts, check_email
from newsletter.models import RenderedEmail


@pytest.fixture(scope="module")
def email(tmp_path_factory: pytest.TempPathFactory) -> RenderedEmail:
    """The sample issue's email, built once for the module: it is frozen, and each test checks a changed copy."""
    return built_sample(tmp_path_factory.mktemp("rules") / "site").email


def _append_html(email: RenderedEmail, markup: str) -> RenderedEmail:
    return dataclasses.replace(email, html=email.html.replace("</body>", markup + "</body>"))


# One fault per rule, named by the rule it must trip and the finding code it gives.
FAULTS = {
    "rule_size": (lambda e: _append_html(e, "<!--" + "x" * 110_000 + "-->"), "size"),
    "rule_links": (lambda e: _append_html(e, '<a href="javascript:alert(1)">x</a>'), "link"),
    "rule_images": (lambda e: _append_html(e, '<img alt="a chart" src="file:///etc/passwd">'), "image"),
    "rule_alt_text": (lambda e: _append_html(e, '<img src="https://example.org/a.png">'), "alt"),
    "rule_subject": (lambda e: dataclasses.replace(e, subject=" "), "subject"),
    "rule_preheader": (lambda e: dataclasses.replace(e, preheader="not in the html at all"), "preheader"),
    "rule_placeholders": (lambda e: dataclasses.replace(e, text=e.text + "__NL_TYPO__\n"), "placeholder"),
    "rule_unsubscribe": (lambda e: dataclasses.replace(e, text=e.text.replace("__NL_UNSUBSCRIBE_URL__", "")),
                         "unsubscribe"),
    "rule_disclaimer": (lambda e: dataclasses.replace(e, text=e.text.replace("healthcare", "health")), "disclaimer"),
    "rule_text_width": (lambda e: dataclasses.replace(e, text=e.text + "word " * 20 + "\n"), "text-width"),
}


def test_every_rule_has_a_fault_here() -> None:
    assert sorted(rule.__name__ for rule in EMAIL_RULES) == sorted(FAULTS)


@pytest.mark.parametrize("rule", EMAIL_RULES, ids=lambda r: r.__name__)
def test_each_rule_fires_on_its_fault_and_no_other_rule_does(email: RenderedEmail, rule) -> None:
    assert list(rule(EmailParts.of(email))) == [], "the sample issue is clean"
    make_fault, code = FAULTS[rule.__name__]
    broken = EmailParts.of(make_fault(email))
    assert {f.code for f in rule(broken)} == {code}
    report = check_email(broken.email)
    assert code in {f.code for f in report.findings}
    others = {r.__name__ for r in EMAIL_RULES if r is not rule and list(r(broken))}
    assert others == set(), f"{rule.__name__}'s fault also tripped {others}"

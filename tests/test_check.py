"""Preflight: each rule fires on a broken email and stays quiet on the sample issue."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import built_sample

from newsletter.check import CLIP_BYTES, WARN_BYTES, check_email
from newsletter.models import RenderedEmail


@pytest.fixture(scope="module")
def email(tmp_path_factory: pytest.TempPathFactory) -> RenderedEmail:
    """The sample issue's email, built once for the module: it is frozen, and each test checks a changed copy."""
    return built_sample(tmp_path_factory.mktemp("check") / "site").email


def codes(e: RenderedEmail) -> set[str]:
    return {f.code for f in check_email(e).errors}


def test_sample_issue_passes(email: RenderedEmail) -> None:
    report = check_email(email)
    assert report.ok, report.findings
    assert report.warnings == []


def test_size_warning_and_error(email: RenderedEmail) -> None:
    pad = lambda n: email.html.replace("</body>", "<!--" + "x" * n + "--></body>")  # noqa: E731
    warn = dataclasses.replace(email, html=pad(WARN_BYTES - len(email.html) + 10))
    assert {f.code for f in check_email(warn).warnings} == {"size"} and check_email(warn).ok
    big = dataclasses.replace(email, html=pad(CLIP_BYTES))
    assert "size" in codes(big)


@pytest.mark.parametrize("href", ["javascript:alert(1)", "/relative", "//host/x", "http:/x"])
def test_non_absolute_links(email: RenderedEmail, href: str) -> None:
    broken = dataclasses.replace(email, html=email.html.replace("</body>", f'<a href="{href}">x</a></body>'))
    assert "link" in codes(broken)


def test_image_without_alt(email: RenderedEmail) -> None:
    broken = dataclasses.replace(email, html=email.html.replace("</body>", '<img src="https://x.org/a.png"></body>'))
    assert "alt" in codes(broken)


def test_subject_and_preheader(email: RenderedEmail) -> None:
    assert "subject" in codes(dataclasses.replace(email, subject="x" * 79))
    assert "preheader" in codes(dataclasses.replace(email, preheader=""))


def test_unresolved_placeholders(email: RenderedEmail) -> None:
    assert "placeholder" in codes(dataclasses.replace(email, text=email.text + "__NL_TYPO__\n"))
    assert "placeholder" in codes(dataclasses.replace(email, text=email.text + "{{ name }}\n"))


def test_disclaimer_and_unsubscribe_required(email: RenderedEmail) -> None:
    no_unsub = dataclasses.replace(email, html=email.html.replace("__NL_UNSUBSCRIBE_URL__", "https://x.org"))
    assert "unsubscribe" in codes(no_unsub)
    no_disclaimer = dataclasses.replace(email, text=email.text.replace("healthcare team", "friends"))
    assert "disclaimer" in codes(no_disclaimer)
    extra_journal = dataclasses.replace(email, journals=email.journals + ("The Lancet",))
    assert "disclaimer" in codes(extra_journal)


def test_text_width_warning(email: RenderedEmail) -> None:
    wide = dataclasses.replace(email, text=email.text + ("word " * 20) + "\n")
    assert "text-width" in {f.code for f in check_email(wide).warnings}

"""Accessibility with the tools screen-reader users' advocates use: axe-core and Chromium's accessibility tree.

axe-core comes from `axe-playwright-python` (it bundles axe.min.js) and runs in Debian's chromium on
the built email at 375 and 600 px, light and dark, and on every page `newsletter serve` shows.
Without chromium these tests skip, unless NEWSLETTER_REQUIRE_BROWSER=1 (CI), when they fail.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import sample_project

from newsletter import render
from newsletter.browser import SCHEMES, WIDTHS
from newsletter.browser import _page as open_page  # the project's one way to open an email in chromium
from newsletter.jobs.issues import BuildResult, build, compose
from newsletter.settings import load_settings

DATE = dt.date(2026, 11, 25)

#: axe rules that cannot apply to an email, and why. Everything else must pass, moderate included.
EMAIL_AXE_EXCEPTIONS = {
    # A mail client shows the email inside its own page, which has the one <main>; a second <main> in
    # the email would nest landmarks. The Email Markup Consortium's pattern is role="article" with
    # aria-roledescription="email" instead, which the email has (see test_landmarks_title_and_language).
    # The web version (`/issues/<id>`) is a page of its own: it wraps the email in <main> and passes both.
    "landmark-one-main": "the mail client's page holds the main landmark",
    "region": "the same: the content is inside role=article, not a landmark, by design",
}


def _build(root: Path, limit: int | None) -> BuildResult:
    sample_project(root)
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": "test-secret-not-for-production-use"})
    return build(settings, compose(settings, date=DATE, limit=limit).folder)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    base = tmp_path_factory.mktemp("a11y")
    return {"sample": _build(base / "sample", None), "ten": _build(base / "ten", 10)}


def axe_violations(page: Any, *, disabled: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """axe-core's violations on the open page (every impact), with the named rules switched off."""
    from axe_playwright_python.sync_playwright import Axe

    options: dict[str, Any] = {"resultTypes": ["violations"]}
    if disabled:
        options["rules"] = {rule: {"enabled": False} for rule in disabled}
    return list(Axe().run(page, options=options).response["violations"])


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
                     for v in violations)


def ax_nodes(page: Any) -> list[dict[str, Any]]:
    """Chromium's own accessibility tree (what a screen reader is given), through the DevTools protocol."""
    session = page.context.new_cdp_session(page)
    try:
        return [n for n in session.send("Accessibility.getFullAXTree")["nodes"] if not n.get("ignored")]
    finally:
        session.detach()


def _role(node: dict[str, Any]) -> str:
    return str(node.get("role", {}).get("value", ""))


def _name(node: dict[str, Any]) -> str:
    return " ".join(str(node.get("name", {}).get("value", "")).split())


def _property(node: dict[str, Any], name: str) -> Any:
    return next((p["value"].get("value") for p in node.get("properties", []) if p["name"] == name), None)


def link_names(page: Any) -> list[tuple[str, str]]:
    """(accessible name, target URL) of every link, in reading order."""
    return [(_name(n), str(_property(n, "url"))) for n in ax_nodes(page) if _role(n) == "link"]


def ambiguous_links(links: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Accessible names shared by links that go to different places."""
    targets: dict[str, set[str]] = {}
    for name, url in links:
        targets.setdefault(name.lower(), set()).add(url)
    return {name: urls for name, urls in targets.items() if len(urls) > 1}


def test_ambiguous_links_are_found() -> None:
    assert ambiguous_links([("Read more", "https://a.org/1"), ("Read more", "https://a.org/2")]) == {
        "read more": {"https://a.org/1", "https://a.org/2"}}
    assert ambiguous_links([("View in browser", "https://a.org/w"), ("View in browser", "https://a.org/w")]) == {}


# --- the email -------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("variant", ["sample", "ten"])
def test_axe_finds_nothing_in_the_email(browser: Any, samples: dict[str, BuildResult], variant: str, width: int,
                                        scheme: str) -> None:
    with open_page(browser, samples[variant].issue.build_dir / render.PREVIEW_FILE, width, scheme) as (page, _):
        violations = axe_violations(page, disabled=EMAIL_AXE_EXCEPTIONS)
        assert violations == [], describe(violations)
        # The exceptions are exactly what they say: nothing else hides behind them.
        assert {v["id"] for v in axe_violations(page)} <= set(EMAIL_AXE_EXCEPTIONS)


@pytest.mark.browser
@pytest.mark.parametrize("variant", ["sample", "ten"])
def test_no_two_links_share_a_name_but_not_a_target(browser: Any, samples: dict[str, BuildResult],
                                                    variant: str) -> None:
    result = samples[variant]
    with open_page(browser, result.issue.build_dir / render.PREVIEW_FILE, 375, "light") as (page, _):
        links = link_names(page)
    assert ambiguous_links(links) == {}, links
    assert all(name for name, _ in links), links
    # Chromium puts a space around the inline-block hidden part ("Read more : <title>"); speech is the same.
    read_more = [(name.replace(" :", ":"), url) for name, url in links if name.startswith("Read more")]
    assert read_more == [(f"Read more: {s.title}", s.url) for s in result.issue.summaries]


@pytest.mark.browser
def test_landmarks_title_and_language(browser: Any, samples: dict[str, BuildResult]) -> None:
    result = samples["sample"]
    with open_page(browser, result.issue.build_dir / render.PREVIEW_FILE, 600, "light") as (page, _):
        nodes = ax_nodes(page)
        assert page.title() == result.issue.subject
        root = page.evaluate("[document.documentElement.lang, document.documentElement.dir]")
        wrapper = page.evaluate("(() => { const a = document.querySelector('[role=article]');"
                                " return [a.lang, a.dir, a.contains(document.querySelector('h1'))]; })()")
        text = page.evaluate("document.body.innerText")
    assert root == ["en", "auto"] and wrapper == ["en", "auto", True]
    [article] = [n for n in nodes if _role(n) == "article"]
    assert _name(article) == result.issue.subject and _property(article, "roledescription") == "email"
    headings = [(int(_property(n, "level")), _name(n)) for n in nodes if _role(n) == "heading"]
    assert headings == [(1, result.issue.subject)] + [(2, s.title) for s in result.issue.summaries]
    # The preheader repeats the content: hidden from screen readers as well as from sight.
    spoken = " ".join(_name(n) for n in nodes if _role(n) == "StaticText")
    assert result.issue.preheader not in spoken and result.issue.preheader not in text


@pytest.mark.browser
@pytest.mark.parametrize("scheme", SCHEMES)
def test_links_are_not_told_apart_by_colour_alone(browser: Any, samples: dict[str, BuildResult], scheme: str) -> None:
    with open_page(browser, samples["ten"].issue.build_dir / render.PREVIEW_FILE, 375, scheme) as (page, _):
        links = page.evaluate("""[...document.querySelectorAll('a')].map(a => {
            const cs = getComputedStyle(a);
            return [a.textContent.trim().slice(0, 40), cs.textDecorationLine, cs.backgroundColor];
        })""")
    plain = [(text, line) for text, line, bg in links if "underline" not in line and bg == "rgba(0, 0, 0, 0)"]
    assert plain == [], "links that only a colour marks out"
    buttons = [text for text, line, bg in links if bg != "rgba(0, 0, 0, 0)"]
    assert buttons and all(text.startswith("Read more") for text in buttons)  # a filled button is its own cue


@pytest.mark.browser
def test_hidden_link_text_stays_hidden_where_clients_drop_css(browser: Any, samples: dict[str, BuildResult]) -> None:
    """Gmail drops `position` and may drop <style>: the 1 px clipped box must still hide the title."""
    result = samples["sample"]
    stripped = result.issue.build_dir / "stripped.html"
    html = (result.issue.build_dir / render.PREVIEW_FILE).read_text(encoding="utf-8")
    html = re.sub(r"(?is)<style\b.*?</style>", "", html)
    stripped.write_text(re.sub(r"position:\s*absolute;?", "", html), encoding="utf-8")
    for path in (result.issue.build_dir / render.PREVIEW_FILE, stripped):
        with open_page(browser, path, 375, "light") as (page, _):
            boxes = page.evaluate("""[...document.querySelectorAll('a .sr-only')].map(s => {
                const r = s.getBoundingClientRect(), a = s.closest('a').getBoundingClientRect();
                return [r.width, r.height, a.height, s.closest('a').innerText.trim()];
            })""")
            names = [name.replace(" :", ":") for name, _ in link_names(page) if name.startswith("Read more")]
        assert len(boxes) == len(result.issue.summaries), path
        for width, height, button_height, visible in boxes:
            assert width <= 1 and height <= 1 and button_height >= 44, (path.name, boxes)
            assert visible.startswith("Read more")
        assert names == [f"Read more: {s.title}" for s in result.issue.summaries]
    # Outlook on Windows supports neither clip nor 1 px boxes: mso-hide keeps the text out of sight there.
    spans = re.findall(r'<span class="sr-only" style="([^"]*)"', result.email.html)
    assert len(spans) == len(result.issue.summaries) and all("mso-hide:all" in s.replace(" ", "") for s in spans)


# --- every page `newsletter serve` shows ------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """The sample site with its issue sent to the 8 sample subscribers, served on 127.0.0.1."""
    from web_server import running

    from newsletter.store import sqlite as db, subscribers
    from newsletter.approval import approve
    from newsletter.jobs.delivery import send_full
    from newsletter.serve import create_app

    result = _build(tmp_path / "site", None)
    settings = load_settings(tmp_path / "site" / "newsletter.toml", env={"NEWSLETTER_SECRET": "test-secret-not-for-production-use"})
    with contextlib.closing(db.connect(settings.path(settings.database))) as conn:
        subscribers.import_csv(conn, settings.root / "content" / "subscribers.csv")
    approve(result.issue.folder)
    assert send_full(settings, result.issue.folder).sent == 8
    with running(create_app(settings)) as url:
        yield settings, url


@pytest.mark.browser
def test_axe_finds_nothing_on_any_served_page(browser: Any, served: tuple[Any, str]) -> None:
    from test_serve import outbox, token_for

    settings, server = served
    checked: dict[str, list[dict[str, Any]]] = {}
    context = browser.new_context(viewport={"width": 375, "height": 740})
    try:
        page = context.new_page()

        def visit(label: str, url: str | None = None, *, status: int = 200) -> None:
            if url is not None:
                response = page.goto(url)
                assert response is not None and response.status == status, (label, response and response.status)
            for scheme in SCHEMES:
                page.emulate_media(color_scheme=scheme)
                checked[f"{label} ({scheme})"] = axe_violations(page)

        visit("archive", f"{server}/")
        visit("web version of an issue", f"{server}/issues/{DATE.isoformat()}")
        visit("unsubscribe help", f"{server}/unsubscribe")
        visit("not found", f"{server}/nowhere", status=404)
        visit("bad link", f"{server}/unsubscribe/not-a-token", status=400)
        visit("unsubscribe?", f"{server}/unsubscribe/{token_for(settings, 'rafael.gomez@example.org')}")
        page.get_by_role("button", name="Unsubscribe me").click()
        visit("unsubscribed")
        page.get_by_role("button", name="Resubscribe").click()
        visit("resubscribe: check your inbox")  # resubscribing goes through a confirmation email (issue 14)
        visit("subscribe", f"{server}/subscribe")
        page.get_by_label("Email address").fill("not an address")
        page.get_by_role("button").last.click()
        visit("subscribe, with an error")
        page.get_by_label("Email address").fill("new.reader@example.org")
        page.get_by_role("button").last.click()
        visit("check your inbox")
        [mail] = [m for m in outbox(settings) if "confirm" in str(m["Subject"]).lower()
                  and m["To"].addresses[0].addr_spec == "new.reader@example.org"]
        link = re.search(r"/confirm/\S+", mail.get_body(("plain",)).get_content()).group(0)  # type: ignore[union-attr]
        visit("confirm", server + link)
        page.get_by_role("button").last.click()
        visit("subscribed")
    finally:
        context.close()
    found = {label: describe(v) for label, v in checked.items() if v}
    assert found == {}, "\n".join(f"{label}:\n{text}" for label, text in found.items())
    assert len(checked) == 13 * len(SCHEMES)

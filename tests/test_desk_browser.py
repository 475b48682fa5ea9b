"""The desk in Debian's chromium: two people take an issue from compose to delivered, axe-core on every page,
a keyboard-only pass through the edit page, and hostile content that must stay inert.

Real Uvicorn on 127.0.0.1, real aiosmtpd, the real scheduler process. Without chromium these tests skip,
unless NEWSLETTER_REQUIRE_BROWSER=1 (CI), when they fail.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from desk_support import APPROVER, EDITOR, SECRET, load_site, make_site, running
from newsletter.jobs.issues import compose
from newsletter.serve import create_app
from newsletter.settings import Settings
from smtp_servers import Server, smtp_server

pytestmark = pytest.mark.browser
ISSUE = "2026-11-25"
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def db(settings: Settings) -> sqlite3.Connection:
    conn = sqlite3.connect(settings.path(settings.database))
    conn.row_factory = sqlite3.Row
    return conn


def audit(settings: Settings) -> list[tuple[str, str]]:
    with contextlib.closing(db(settings)) as conn:
        return [(r["action"], r["editor_name"].split(" <")[0]) for r in
                conn.execute("SELECT action, editor_name FROM desk_audit WHERE action NOT LIKE 'account.%' ORDER BY id")]


def toml_ids(settings: Settings) -> list[str]:
    return tomllib.loads((settings.root / "issues" / ISSUE / "issue.toml").read_text())["summaries"]


def sign_in(page: Any, base: str, who: tuple[str, str, str, str]) -> None:
    page.goto(f"{base}/desk/login")
    page.get_by_label("Email").fill(who[0])
    page.get_by_label("Password").fill(who[3])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/desk/")


@contextlib.contextmanager
def scheduler(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET}
    env.pop("NEWSLETTER_CONFIG", None)
    with log.open("ab") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "newsletter.schedule", "--config",
                                 str(settings.root / "newsletter.toml"), "--poll", "0.3"], cwd=settings.root, env=env,
                                stdout=handle, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def site_for(root: Path, smtp: Server | None = None) -> Settings:
    settings = make_site(root)
    toml = root / "newsletter.toml"
    text = toml.read_text().replace('"https://ms-research.example.org/newsletter"', '"http://127.0.0.1/newsletter"')
    if smtp is not None:
        text = text.replace('transport = "maildir:outbox"', f'transport = "{smtp.url(query="starttls=off")}"')
    toml.write_text(text)
    return load_site(root)


# --- the whole flow, as two people -------------------------------------------------------------------------

def test_two_people_take_an_issue_from_compose_to_delivered(browser: Any, tmp_path: Path) -> None:
    with smtp_server() as smtp:
        settings = site_for(tmp_path / "site", smtp)
        assert settings.transport.startswith("smtp://")
        with running(create_app(settings)) as base:
            edith = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            sign_in(edith, base, EDITOR)

            # Compose: the newest summaries are ticked; held-back ones say why.
            edith.get_by_role("link", name="Start a new issue").click()
            edith.get_by_label("Issue date").fill(ISSUE)
            edith.get_by_role("button", name="Show summaries for this date").click()
            assert "after this issue's date" in edith.content()  # a summary dated later is held back, with why
            edith.get_by_role("button", name="Create the issue").click()
            edith.wait_for_url(f"{base}/desk/issues/{ISSUE}")
            composed = toml_ids(settings)
            assert len(composed) == settings.default_limit and audit(settings)[-1] == ("compose", "Edith Editor")

            # Reorder: the second summary moves to the top, on disk.
            edith.get_by_role("button", name="Move up").nth(1).click()
            edith.wait_for_load_state()
            assert toml_ids(settings) == [composed[1], composed[0], *composed[2:]]

            # Edit the intro; the saved words reach issue.toml and the preview.
            intro = "Welcome back. This month: sleep, exercise and what helps with tiredness."
            edith.get_by_label("Introduction").fill(intro)
            edith.get_by_role("button", name="Save").first.click()
            edith.wait_for_url(re.compile(r".*done=saved.*"))
            assert tomllib.loads((settings.root / "issues" / ISSUE / "issue.toml").read_text())["intro"].strip() == intro
            frame = edith.frame_locator("#preview-frame")
            assert intro in frame.locator("body").inner_text()
            assert "Checks" in edith.content() and "No problems found" in edith.locator("#checks").inner_text()
            assert (settings.root / "issues" / ISSUE / "build" / "email.html").exists()
            assert [a for a, _ in audit(settings)][-2:] == ["edit", "edit"]

            # A proof to her own address, through the configured transport.
            edith.get_by_role("button", name=f"Send a test copy to {EDITOR[0]}").click()
            edith.wait_for_url(re.compile(r".*done=proof.*"))
            wait_until(lambda: len(smtp.handler.messages) == 1, 20, "the proof")
            proof = email.message_from_bytes(smtp.handler.messages[0].data, policy=email.policy.default)
            assert smtp.handler.messages[0].rcpt_tos == (EDITOR[0],) and proof["Subject"].startswith("[TEST]")
            assert edith.get_by_role("button", name="Approve this version").count() == 0  # not hers to approve

            # The approver approves and schedules (Europe/London, the next minute that is at least 10 s away).
            arno = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            sign_in(arno, base, APPROVER)
            arno.goto(f"{base}/desk/issues/{ISSUE}")
            arno.get_by_role("button", name="Approve this version").click()
            arno.wait_for_url(re.compile(r".*done=approved.*"))
            approval = json.loads((settings.root / "issues" / ISSUE / "approval.json").read_text())
            assert audit(settings)[-1] == ("approve", "Arno Approver")
            zone = zoneinfo.ZoneInfo("Europe/London")
            due = (dt.datetime.now(zone) + dt.timedelta(seconds=70)).replace(second=0, microsecond=0)
            arno.get_by_label("Date").fill(due.date().isoformat())
            arno.get_by_label("Time", exact=True).fill(due.strftime("%H:%M"))
            arno.get_by_label("Time zone").fill("Europe/London")
            arno.get_by_role("button", name="Schedule").click()
            arno.wait_for_url(re.compile(r".*done=scheduled.*"))
            with contextlib.closing(db(settings)) as conn:
                job = conn.execute("SELECT state, issue_id, due_at FROM schedule_jobs").fetchone()
            assert (job["state"], job["issue_id"]) == ("scheduled", ISSUE)
            assert dt.datetime.fromisoformat(job["due_at"]) == due
            arno.goto(f"{base}/desk/")
            assert "Sends " in arno.locator("#h-scheduled").locator("..").inner_text()

            # The scheduler fires at that minute; the messages arrive; the ledger records each.
            with scheduler(settings, tmp_path / "scheduler.log"):
                wait_until(lambda: len(smtp.handler.messages) >= 9, 150, "the scheduled send")
            delivered = {m.rcpt_tos[0] for m in smtp.handler.messages[1:]}
            assert len(delivered) == 8
            with contextlib.closing(db(settings)) as conn:
                assert conn.execute("SELECT COUNT(*) FROM ledger WHERE issue_id = ? AND status = 'sent'",
                                    (ISSUE,)).fetchone()[0] == 8
            first = email.message_from_bytes(smtp.handler.messages[1].data, policy=email.policy.default)
            assert not first["Subject"].startswith("[TEST]")
            assert json.loads((settings.root / "issues" / ISSUE / "approval.json").read_text()) == approval
            arno.goto(f"{base}/desk/")
            assert "8 sent" in arno.locator("#h-sent").locator("..").inner_text()
            assert [a for a, _ in audit(settings)][-2:] == ["approve", "schedule"]


# --- every page: axe-core, 375 px, hostile content ---------------------------------------------------------

def _hostile_summary(settings: Settings) -> None:
    (settings.root / "content" / "hostile-markup-test.md").write_text(f"""---
title: '{HOSTILE} A study title with markup'
date: 2026-11-20
journal: '<b>Journal</b> of <i>Tests</i>'
url: "https://ms-research.example.org/summaries/hostile-markup-test"
source_url: "https://pubmed.ncbi.nlm.nih.gov/?term=hostile"
teaser: '{HOSTILE} teaser'
tags: ["<script>tag</script>"]
---

## What the study found

{HOSTILE} Findings.

## Why this matters

It matters.

## Limitations

Some.
""", encoding="utf-8")


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    """An issue holding a summary full of markup, an intro full of markup, one approval; served."""
    settings = site_for(tmp_path_factory.mktemp("desk-pages") / "site")
    _hostile_summary(settings)
    issue = compose(settings, date=dt.date(2026, 11, 25))
    assert "hostile-markup-test" in issue.summary_ids
    toml = issue.folder / "issue.toml"
    toml.write_text(re.sub(r"intro = '''.*?'''", lambda _: f"intro = '''{HOSTILE} **Welcome**'''",
                           toml.read_text(), flags=re.S))
    with running(create_app(settings)) as base:
        yield settings, base


def desk_pages(base: str) -> dict[str, str]:
    return {
        "dashboard": "/desk/", "new issue": "/desk/new?date=2026-11-25", "edit": f"/desk/issues/{ISSUE}",
        "edit 375 dark": f"/desk/issues/{ISSUE}?view=375-dark", "send": f"/desk/issues/{ISSUE}/send",
        "progress": f"/desk/issues/{ISSUE}/progress", "subscribers": "/desk/subscribers?q=example",
        "activity": "/desk/audit",
    }


def _signed_in(browser: Any, base: str, who: tuple[str, str, str, str], *, width: int = 1280,
               scheme: str = "light") -> Any:
    page = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme).new_page()
    sign_in(page, base, who)
    return page


def axe_serious(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page, options={"resultTypes": ["violations"]}).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
            for v in violations if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_any_desk_page(browser: Any, hostile_site: tuple[Settings, str],
                                                    scheme: str) -> None:
    settings, base = hostile_site
    anonymous = browser.new_context(color_scheme=scheme).new_page()
    anonymous.goto(f"{base}/desk/login")
    problems = {"sign in": axe_serious(anonymous)}
    anonymous.get_by_label("Email").fill("nobody@example.org")
    anonymous.get_by_label("Password").fill("wrong password here")
    # A click only starts the POST: axe looks once the answer's page has loaded with its stylesheet (on a
    # busy machine it once met a half-loaded page, whose unstyled links fail colour contrast).
    with anonymous.expect_navigation(wait_until="load"):
        anonymous.get_by_role("button", name="Sign in").click()
    problems["sign in, refused"] = axe_serious(anonymous)
    page = _signed_in(browser, base, APPROVER, scheme=scheme)
    for name, path in desk_pages(base).items():
        response = page.goto(base + path)
        assert response is not None and response.status in (200, 409), (name, response and response.status)
        problems[name] = axe_serious(page)
    page.goto(f"{base}/desk/issues/{ISSUE}")
    page.get_by_label("Subject").fill("")
    page.get_by_role("button", name="Save").first.click()
    page.locator("#subject-error").wait_for(state="visible")
    page.wait_for_load_state("load")
    problems["edit with an error"] = axe_serious(page)
    assert page.locator("#subject-error").is_visible()
    assert {k: v for k, v in problems.items() if v} == {}


def test_setup_page_passes_axe(browser: Any, tmp_path: Path) -> None:
    settings = make_site(tmp_path / "site", accounts_=())
    with running(create_app(settings)) as base:
        page = browser.new_page()
        page.goto(f"{base}/desk/")
        assert "newsletter editors add" in page.content()
        assert axe_serious(page) == []


def test_every_desk_page_fits_375_px(browser: Any, hostile_site: tuple[Settings, str]) -> None:
    _, base = hostile_site
    page = _signed_in(browser, base, APPROVER, width=375)
    wide = {}
    for name, path in desk_pages(base).items():
        page.goto(base + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        if overflow > 0:
            wide[name] = overflow
    assert wide == {}


def test_hostile_content_stays_inert_on_every_page_and_in_the_preview(browser: Any,
                                                                     hostile_site: tuple[Settings, str]) -> None:
    _, base = hostile_site
    page = _signed_in(browser, base, APPROVER)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    count_injected = """() => [...document.querySelectorAll('script')].filter(s => !s.src.endsWith('/desk/static/desk.js')).length
                          + document.querySelectorAll('[onerror], img[src="x"]').length"""
    for name, path in desk_pages(base).items():
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.pwned") is None, name
        assert page.evaluate(count_injected) == 0, name
    page.goto(f"{base}/desk/issues/{ISSUE}")
    assert "hostile-markup-test" in page.content() or "A study title with markup" in page.inner_text("main")
    assert "<script>window.pwned=1</script>" in page.inner_text("main")  # shown as text, not run
    frame_element = page.locator("#preview-frame")
    assert frame_element.get_attribute("sandbox") == ""  # no scripts, no same-origin, no forms, no popups
    frame = page.frame_locator("#preview-frame")
    assert "A study title with markup" in frame.locator("body").inner_text()
    inner = page.frames[1]
    assert inner.evaluate("window.pwned") is None
    assert inner.evaluate(count_injected) == 0
    response = page.request.get(f"{base}/desk/issues/{ISSUE}/preview")
    assert "sandbox" in response.headers["content-security-policy"]
    assert dialogs == []


def test_the_edit_page_works_with_the_keyboard_alone(browser: Any, hostile_site: tuple[Settings, str]) -> None:
    settings, base = hostile_site
    page = _signed_in(browser, base, EDITOR)
    page.goto(f"{base}/desk/issues/{ISSUE}")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    reached: list[str] = []
    for _ in range(400):
        page.keyboard.press("Tab")
        label = page.evaluate("""() => { const e = document.activeElement;
            if (!e || e === document.body) return '';
            if (e.tagName === 'IFRAME' && e.dataset.tabbed) return 'INSIDE';  // the email's own links
            if (e.dataset.tabbed) return 'AGAIN';
            e.dataset.tabbed = '1';
            // Focus inside the preview: its frame shows the ring (the email's own links are the email's business).
            const outline = getComputedStyle(e.tagName === 'IFRAME' ? e.parentElement : e).outlineStyle;
            return `${e.tagName.toLowerCase()}|${e.id || e.name || ''}|${(e.innerText || e.value || '').trim().slice(0, 40)}|${outline}`; }""")
        if label == "AGAIN":
            break
        if label == "INSIDE":
            continue
        reached.append(label)
    text = "\n".join(reached)
    for wanted in ("input|subject", "input|preheader", "textarea|intro", "button|op|Save", "button|op|Move down",
                   "button|op|Remove", "select|add_id", "button|op|Add", "button||Send a test copy"):
        assert wanted in text, f"{wanted!r} not reached by Tab:\n{text}"
    bare = [line for line in reached if line and not line.endswith("|solid")]
    assert bare == [], "focused without a visible outline"
    # Move the first summary down with the keyboard only.
    before = toml_ids(settings)
    page.get_by_role("button", name="Move down").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*done=saved.*"))
    assert toml_ids(settings) == [before[1], before[0], *before[2:]]

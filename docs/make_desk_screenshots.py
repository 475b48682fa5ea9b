"""Regenerate the README's desk screenshots: `python docs/make_desk_screenshots.py` (needs Debian's chromium).

A throw-away copy of the sample site with two accounts; one issue composed, edited and approved, one
sent; then the dashboard and the edit page (with its preview) at 1280 px.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS.parent / "tests")]

from desk_support import APPROVER, EDITOR, make_site, running  # noqa: E402
from newsletter.approval import approve  # noqa: E402
from newsletter.browser import open_browser  # noqa: E402
from newsletter.jobs.delivery import send_full  # noqa: E402
from newsletter.jobs.issues import build, compose  # noqa: E402
from newsletter.serve import create_app  # noqa: E402
import datetime as dt  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_site(Path(tmp) / "site")
        sent = compose(settings, date=dt.date(2026, 11, 11), limit=3)
        build(settings, sent.folder)
        approve(sent.folder)
        send_full(settings, sent.folder)
        compose(settings, date=dt.date(2026, 11, 25), limit=4)
        with open_browser() as browser, running(create_app(settings)) as base:
            page = browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1).new_page()
            page.goto(f"{base}/desk/login")
            page.get_by_label("Email").fill(EDITOR[0])
            page.get_by_label("Password").fill(EDITOR[3])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/desk/")
            page.goto(f"{base}/desk/issues/2026-11-25")
            page.get_by_label("Introduction").fill("Welcome back. This month: sleep, pregnancy and what helps "
                                                   "with tiredness. As always, talk to your care team before "
                                                   "changing anything.")
            page.get_by_role("button", name="Save").first.click()
            page.wait_for_load_state("networkidle")
            page.goto(f"{base}/desk/issues/2026-11-25")  # from the top, not the "Saved." anchor
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(DOCS / "desk-edit.png"))
            page.goto(f"{base}/desk/")
            page.screenshot(path=str(DOCS / "desk-dashboard.png"), full_page=True)
    print(DOCS / "desk-edit.png", DOCS / "desk-dashboard.png")


if __name__ == "__main__":
    main()

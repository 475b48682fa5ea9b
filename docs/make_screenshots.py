"""Regenerate docs/email-600-light.png and docs/email-375-dark.png from the sample issue.

    python docs/make_screenshots.py            # needs Debian's chromium and Playwright ('.[test]')
    python docs/make_screenshots.py --all DIR  # also keep all four screenshots in DIR

Composes the 2026-11-25 sample issue in a temporary copy of the project (the working tree is not
touched), builds it, and photographs build/preview.html with newsletter.browser.take_screenshots.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

from newsletter.browser import take_screenshots
from newsletter.errors import NewsletterError
from newsletter.jobs.issues import build, compose
from newsletter.render import PREVIEW_FILE
from newsletter.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
SAMPLE_DATE = dt.date(2026, 11, 25)
KEPT = ("email-600-light.png", "email-375-dark.png")


def build_sample(root: Path) -> Path:
    """Copy content, templates and settings into `root`, compose and build the sample; the preview's path."""
    for folder in ("content", "templates"):
        shutil.copytree(REPO / folder, root / folder)
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    (root / "issues").mkdir()
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": "docs-screenshots-only"})
    issue = compose(settings, date=SAMPLE_DATE)
    return build(settings, issue.folder).issue.build_dir / PREVIEW_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", type=Path, metavar="DIR", help="also keep all four screenshots in DIR")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="newsletter-docs-") as tmp:
        try:
            preview = build_sample(Path(tmp) / "site")
            shots = take_screenshots(preview, Path(tmp) / "shots")
        except NewsletterError as exc:
            print(f"make_screenshots: {exc}", file=sys.stderr)
            return 1
        for shot in shots:
            if shot.name in KEPT:
                shutil.copy(shot, DOCS / shot.name)
                print(f"{DOCS / shot.name}  {shot.stat().st_size / 1024:.0f} KB")
            if args.all:
                args.all.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, args.all / shot.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

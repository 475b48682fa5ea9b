"""`newsletter build` does only the build's work: no signing, approval or selection modules loaded, and no
Markdown parse of a summary section that cannot hold a link (benchmarks/README.md, "Comparing two commits")."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings as hypothesis_settings, strategies as st
from markdown_it import MarkdownIt

from newsletter.jobs.issues import compose
from newsletter.settings import Settings
from newsletter.text import unsafe_links

REPO = Path(__file__).resolve().parent.parent

#: Modules the build never uses: token signing (itsdangerous), approval, the compose-time selection.
NOT_FOR_BUILD = ("itsdangerous", "newsletter.tokens", "newsletter.approval", "newsletter.selection")

_RUN_BUILD = (
    "import runpy, sys\n"
    "sys.argv = ['newsletter', 'build', sys.argv[1]]\n"
    "try:\n"
    "    runpy.run_module('newsletter', run_name='__main__', alter_sys=True)\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
    f"print('LOADED=' + ','.join(m for m in {NOT_FOR_BUILD!r} if m in sys.modules))\n"
)


def test_build_loads_no_signing_approval_or_selection_modules(project: Path, settings: Settings) -> None:
    s = dataclasses.replace(settings, max_age_days=3650)  # every sample summary, however old
    issue = compose(s, date=dt.date(2026, 11, 25), limit=10, force=True)
    proc = subprocess.run([sys.executable, "-c", _RUN_BUILD, str(issue.folder.relative_to(project))], cwd=project,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Built issues/2026-11-25/build/email.html" in proc.stdout
    assert (issue.folder / "build" / "email.html").stat().st_size > 10_000
    loaded = proc.stdout.rsplit("LOADED=", 1)[1].strip()
    assert loaded == "", f"`newsletter build` imported {loaded}"


_FULL = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_FULL.validateLink = lambda url: True  # type: ignore[method-assign]


def _link_targets(source: str) -> list[str]:
    """Every link and image target a full CommonMark parse finds (what unsafe_links inspects)."""
    found, stack = [], list(_FULL.parse(source))
    while stack:
        token = stack.pop(0)
        stack[:0] = token.children or []
        if token.type in ("link_open", "image"):
            found.append(str(token.attrGet("href" if token.type == "link_open" else "src") or ""))
    return found


_MARKDOWNISH = st.lists(st.sampled_from(list("ab :/.!()[]<>*_`#\n\\&;") + ["http", "javascript", "mailto", "&#91;",
                                                                                 "&lt;", "    ", "> "]),
                        max_size=40).map("".join)


@hypothesis_settings(max_examples=300, deadline=None)
@given(_MARKDOWNISH)
def test_text_without_brackets_or_angles_has_no_links(source: str) -> None:
    """unsafe_links skips the parse when the text has no "[" and no "<": a full parse must find nothing there."""
    if "[" in source or "<" in source:
        source = source.replace("[", "").replace("<", "")
    assert _link_targets(source) == []
    assert unsafe_links(source) == []


def test_unsafe_links_still_finds_every_kind_of_link() -> None:
    assert unsafe_links("[a](javascript:alert(1))") == ["javascript:alert(1)"]
    assert unsafe_links("![x](data:image/png;base64,AAAA)") == ["data:image/png;base64,AAAA"]
    assert unsafe_links("<ftp://example.org/file>") == ["ftp://example.org/file"]
    assert unsafe_links("[a][r]\n\n[r]: file:///etc/passwd") == ["file:///etc/passwd"]
    assert unsafe_links("no links at all: https://example.org (bare, not a link without linkify)") == []

"""Editorial checks: an Issue + every known summary -> findings about what the editor wrote (one rule each)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from .check import Finding
from .compose import ISSUE_FILE
from .errors import IssueError
from .models import Issue, Summary
from .text import unsafe_links

__all__ = ["issue_findings", "RULES", "stale_preheader", "refuse_unsafe_links"]

#: How many characters of a title must appear in a preheader for it to count as naming that summary.
_TITLE_PREFIX = 40

def refuse_unsafe_links(issue: Issue) -> None:
    """The intro's links must be absolute http(s) or mailto: links; otherwise one error naming the link.

    Markdown would otherwise show `[our site](/about)` literally in the HTML and garble the text part.
    """
    bad = unsafe_links(issue.intro)
    if bad:
        listed = ", ".join(repr(b) for b in bad)
        raise IssueError(issue.folder / ISSUE_FILE, f"link {listed} is not an absolute https://, http:// or "
                                                    "mailto: link (write the whole address, e.g. "
                                                    "https://example.org/about)", field="intro")


Rule = Callable[[Issue, Sequence[Summary]], list[Finding]]


def stale_preheader(issue: Issue, known: Sequence[Summary]) -> list[Finding]:
    """A preheader the editor wrote that names a summary no longer in the issue (dropped or never in it)."""
    if not issue.custom_preheader:
        return []  # derived from the issue's own summaries at build time
    inside = set(issue.summary_ids)
    text = issue.preheader.lower()
    out = []
    for s in known:
        if s.id not in inside and s.title[:_TITLE_PREFIX].lower() in text:
            out.append(Finding("warning", "preheader",
                               f"the preheader names {s.title!r} ({s.id}), which is not in this issue; "
                               "rewrite it, or set preheader = \"\" to have it written from the summaries"))
    return out


RULES: tuple[Rule, ...] = (stale_preheader,)


def issue_findings(issue: Issue, known: Sequence[Summary], *, today: dt.date | None = None) -> list[Finding]:
    """Every editorial finding for `issue`; `known` is every summary the project has."""
    out: list[Finding] = []
    for rule in RULES:
        out.extend(rule(issue, known))
    return out

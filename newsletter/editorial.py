"""Editorial checks: an Issue + every known summary -> findings about what the editor wrote (one rule each)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from .check import Finding
from .models import Issue, Summary

__all__ = ["issue_findings", "RULES", "stale_preheader"]

#: How many characters of a title must appear in a preheader for it to count as naming that summary.
_TITLE_PREFIX = 40

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

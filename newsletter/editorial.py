"""Editorial checks: an Issue + every known summary -> findings about what the editor wrote (one rule each)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .check import Finding
from .compose import ISSUE_FILE
from .errors import IssueError
from .models import Issue, Summary
from .text import unsafe_links

__all__ = ["issue_findings", "refuse_unsafe_links", "RULES", "Known", "stale_preheader", "far_future_summaries",
           "FUTURE_WARN_DAYS"]

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


#: A summary dated further ahead than this is probably a typo (2027 for 2026).
FUTURE_WARN_DAYS = 56

@dataclass(frozen=True)
class Known:
    """What the rules compare an issue with: every summary the project has, today, the project root."""

    summaries: Sequence[Summary]
    today: dt.date
    root: Path | None = None

    def where(self, s: Summary) -> str:
        origin = s.origin or s.id
        if self.root is not None and origin.startswith("/"):
            with contextlib.suppress(ValueError):
                return str(Path(origin).relative_to(self.root))
        return origin


Rule = Callable[[Issue, Known], list[Finding]]


def stale_preheader(issue: Issue, known: Known) -> list[Finding]:
    """A preheader the editor wrote that names a summary no longer in the issue (dropped or never in it)."""
    if not issue.custom_preheader:
        return []  # derived from the issue's own summaries at build time
    inside = set(issue.summary_ids)
    text = issue.preheader.lower()
    out = []
    for s in known.summaries:
        if s.id not in inside and s.title[:_TITLE_PREFIX].lower() in text:
            out.append(Finding("warning", "preheader",
                               f"the preheader names {s.title!r} ({s.id}), which is not in this issue; "
                               "rewrite it, or set preheader = \"\" to have it written from the summaries"))
    return out


def far_future_summaries(issue: Issue, known: Known) -> list[Finding]:
    """Summaries dated weeks ahead wait silently for an issue that far ahead: likely a mistyped year."""
    limit = known.today + dt.timedelta(days=FUTURE_WARN_DAYS)
    return [Finding("warning", "future-date",
                    f"{known.where(s)} is dated {s.date.isoformat()}, more than {FUTURE_WARN_DAYS // 7} weeks "
                    "ahead: no issue takes it before then. Is the year right?")
            for s in known.summaries if s.date > limit]


RULES: tuple[Rule, ...] = (stale_preheader, far_future_summaries)


def issue_findings(issue: Issue, summaries: Sequence[Summary], *, today: dt.date | None = None,
                   root: Path | None = None) -> list[Finding]:
    """Every editorial finding for `issue`; `summaries` is every summary the project has."""
    known = Known(summaries=summaries, today=today or dt.date.today(), root=root)
    out: list[Finding] = []
    for rule in RULES:
        out.extend(rule(issue, known))
    return out

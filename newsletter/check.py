"""Check: a RenderedEmail -> a preflight report (errors block a send, warnings inform)."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from .models import Issue, RenderedEmail
from .render import PLACEHOLDERS, disclaimer_text
from .settings import Settings
from .text import is_safe_link

if TYPE_CHECKING:  # the content rules' modules load only when check_issue runs (build does not)
    from .glossary import Glossary
    from .readability import Readability

__all__ = ["Finding", "CheckReport", "check_email", "check_issue", "readability_findings", "glossary_findings",
           "WARN_BYTES", "CLIP_BYTES", "EMAIL_RULES", "EmailParts"]

WARN_BYTES = 90 * 1024
CLIP_BYTES = 102 * 1024  # Gmail clips larger HTML parts
SUBJECT_LIMIT = 78
TEXT_COLUMNS = 78


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning
    code: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    issue_id: str
    html_bytes: int
    text_bytes: int
    links: int
    findings: tuple[Finding, ...] = field(default=())
    readability: tuple[Readability, ...] = field(default=())

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _visible_text(html: str) -> str:
    body = re.sub(r"(?is)<(style|script|head)\b.*?</\1>", " ", html)
    body = re.sub(r"(?s)<!--.*?-->", " ", body)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", body))


@dataclass(frozen=True)
class EmailParts:
    """A rendered email with what several rules read worked out once."""

    email: RenderedEmail
    size: int
    hrefs: tuple[str, ...]
    visible: str  # the HTML part's visible text, whitespace collapsed, lower case
    plain: str  # the text part, whitespace collapsed, lower case
    placeholders: frozenset[str]

    @classmethod
    def of(cls, email: RenderedEmail) -> EmailParts:
        html = email.html
        hrefs = [html_lib.unescape(h) for h in re.findall(r'(?i)\bhref\s*=\s*"([^"]*)"', html)]
        hrefs += [html_lib.unescape(h) for h in re.findall(r"(?i)\bhref\s*=\s*'([^']*)'", html)]
        return cls(email=email, size=len(html.encode("utf-8")), hrefs=tuple(dict.fromkeys(hrefs)),
                   visible=" ".join(_visible_text(html).split()).lower(),
                   plain=" ".join(email.text.split()).lower(),
                   placeholders=frozenset(PLACEHOLDERS.values()))


def _error(code: str, message: str) -> Finding:
    return Finding("error", code, message)


def _warning(code: str, message: str) -> Finding:
    return Finding("warning", code, message)


def rule_size(e: EmailParts) -> Iterator[Finding]:
    """Gmail clips an HTML part over 102 KB; warn from 90 KB."""
    if e.size >= CLIP_BYTES:
        yield _error("size", f"HTML is {e.size / 1024:.1f} KB; Gmail clips messages over 102 KB")
    elif e.size >= WARN_BYTES:
        yield _warning("size", f"HTML is {e.size / 1024:.1f} KB, close to Gmail's 102 KB clipping limit")


def rule_links(e: EmailParts) -> Iterator[Finding]:
    """Every link is an absolute http(s) or mailto link (or one of our placeholders)."""
    for href in e.hrefs:
        if href not in e.placeholders and not is_safe_link(href):
            yield _error("link", f"link {href!r} is not an absolute http(s) or mailto link")


def rule_images(e: EmailParts) -> Iterator[Finding]:
    """Every image loads from an absolute http(s) URL."""
    for src in re.findall(r'(?i)<img\b[^>]*\bsrc="([^"]*)"', e.email.html):
        if not is_safe_link(html_lib.unescape(src), allow_mailto=False):
            yield _error("image", f"image source {src!r} is not an absolute http(s) URL")


def rule_alt_text(e: EmailParts) -> Iterator[Finding]:
    """Every image has alt text, for screen readers and for mail clients that block images."""
    for tag in re.findall(r"(?is)<img\b[^>]*>", e.email.html):
        alt = re.search(r'\balt="([^"]*)"', tag)
        if not alt or not alt.group(1).strip():
            yield _error("alt", f"image without alt text: {tag[:120]}")


def rule_subject(e: EmailParts) -> Iterator[Finding]:
    """A subject that is there and fits on a phone's line."""
    subject = e.email.subject
    if not subject.strip():
        yield _error("subject", "subject is empty")
    elif len(subject) > SUBJECT_LIMIT:
        yield _error("subject", f"subject is {len(subject)} characters; keep it to {SUBJECT_LIMIT}")


def rule_preheader(e: EmailParts) -> Iterator[Finding]:
    """A preheader that is there and in the HTML."""
    if not e.email.preheader.strip():
        yield _error("preheader", "preheader is empty")
    elif e.email.preheader not in html_lib.unescape(e.email.html):
        yield _error("preheader", "preheader is missing from the HTML")


def _parts(e: EmailParts) -> tuple[tuple[str, str], ...]:
    return (("HTML", e.email.html), ("text", e.email.text))


def rule_placeholders(e: EmailParts) -> Iterator[Finding]:
    """No unknown placeholder and no template syntax left in either part."""
    for name, doc in _parts(e):
        unknown = set(re.findall(r"__NL_[A-Z_]+__", doc)) - e.placeholders
        if unknown:
            yield _error("placeholder", f"unresolved placeholder(s) in the {name} part: {', '.join(sorted(unknown))}")
        if re.search(r"\{\{|\{%|\}\}", _visible_text(doc) if name == "HTML" else doc):
            yield _error("placeholder", f"template syntax left in the {name} part")


def rule_unsubscribe(e: EmailParts) -> Iterator[Finding]:
    """Both parts carry the unsubscribe link."""
    for name, doc in _parts(e):
        if PLACEHOLDERS["unsubscribe_url"] not in doc:
            yield _error("unsubscribe", f"no unsubscribe link in the {name} part")


def rule_disclaimer(e: EmailParts) -> Iterator[Finding]:
    """The research disclaimer word for word in both parts, naming every journal.

    Word for word, so a template override can neither drop the disclaimer nor lose part of it.
    """
    disclaimer = " ".join(disclaimer_text(list(e.email.journals)).split()).lower()
    for name, doc in (("HTML", e.visible), ("text", e.plain)):
        if disclaimer not in doc:
            yield _error("disclaimer", f"the research disclaimer is missing from the {name} part, or changed; "
                                       "templates must show {{ disclaimer }} as it is")
        for journal in e.email.journals:
            if journal.lower() not in doc:
                yield _error("disclaimer", f"the {name} part does not name the journal {journal!r}")


def rule_text_width(e: EmailParts) -> Iterator[Finding]:
    """Text lines fit 78 columns, except a lone long link (optionally numbered) or a placeholder line."""
    for number, line in enumerate(e.email.text.splitlines(), start=1):
        if len(line) > TEXT_COLUMNS and not re.fullmatch(r"\s*(\[\d+\] )?\S+", line) \
                and not any(p in line for p in e.placeholders):
            yield _warning("text-width", f"text line {number} is {len(line)} columns (limit {TEXT_COLUMNS})")


#: The rules check_email applies, in the order their findings are reported.
EMAIL_RULES: tuple[Callable[[EmailParts], Iterable[Finding]], ...] = (
    rule_size, rule_links, rule_images, rule_alt_text, rule_subject, rule_preheader,
    rule_placeholders, rule_unsubscribe, rule_disclaimer, rule_text_width,
)


def check_email(email: RenderedEmail) -> CheckReport:
    """Everything a sender should know before the email goes out: each rule of EMAIL_RULES in turn."""
    e = EmailParts.of(email)
    findings = tuple(f for rule in EMAIL_RULES for f in rule(e))
    return CheckReport(issue_id=email.issue_id, html_bytes=e.size, text_bytes=len(email.text.encode("utf-8")),
                       links=len(e.hrefs), findings=findings)


def readability_findings(rows: tuple[Readability, ...], *, warn_grade: float,
                         error_grade: float) -> list[Finding]:
    """One finding per text that reads above the grade thresholds, naming the sentence to shorten.

    Only our own words can fail: a partner's feed entry above the error grade is a warning, so it
    cannot stop a scheduled digest that nobody is there to edit.
    """
    out: list[Finding] = []
    for r in rows:
        if r.grade <= warn_grade:
            continue
        level = "error" if r.grade > error_grade and r.ours else "warning"
        limit = error_grade if level == "error" else warn_grade
        what = f"the {r.part}" if r.part in ("intro", "disclaimer") else f"the {r.part} of {r.label}"
        out.append(Finding(level, "readability",
                           f"{r.where}: {what} reads at grade {r.grade:.1f} (limit {limit:g}); shorten or "
                           f"split this sentence first: \"{r.hardest_sentence}\""))
    return out


def glossary_findings(issue: Issue, glossary: Glossary) -> list[Finding]:
    """A warning for each glossary term a summary uses with no plain explanation beside it."""
    from .glossary import unexplained_terms
    from .readability import summary_body

    out: list[Finding] = []
    for s in issue.summaries:
        body = summary_body(s.findings, s.why_it_matters, s.limitations)
        texts = [("teaser", s.teaser)] + ([("body", body)] if body.strip() != s.teaser.strip() else [])
        for part, text in texts:
            for term, sentence in unexplained_terms(glossary, text):
                out.append(Finding("warning", "glossary",
                                   f"{s.origin or s.id}: the {part} of {s.id} uses \"{term.term}\" without "
                                   f"explaining it nearby, in: \"{sentence}\"; you could add: \"{term.plain}\""))
    return out


def check_issue(issue: Issue, email: RenderedEmail, settings: Settings,
                *, glossary: Glossary | None = None) -> CheckReport:
    """check_email plus the content rules that need the issue: readability and the glossary."""
    from .glossary import load_glossary
    from .readability import issue_readability

    report = check_email(email)
    if glossary is None:
        glossary = load_glossary(settings.path(settings.glossary))
    rows = issue_readability(issue, disclaimer_text(list(email.journals)))
    extra = readability_findings(rows, warn_grade=settings.readability_warn_grade,
                                 error_grade=settings.readability_error_grade)
    extra += glossary_findings(issue, glossary)
    return replace(report, findings=report.findings + tuple(extra), readability=rows)

"""Render: Issue + templates -> RenderedEmail (HTML compiled and inlined once, plain text), placeholders kept."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from mjml import mjml2html

from .files import atomic_write
from .errors import SourceError, TemplateError
from .models import Issue, RenderedEmail, Summary
from .settings import Settings
from .text import (content_problem, format_date, markdown_links, markdown_to_html, markdown_to_plain,
                   markdown_to_text, teaser, wrap)

__all__ = [
    "PLACEHOLDERS",
    "render_email",
    "disclaimer_text",
    "fill_placeholders",
    "write_build",
    "read_build",
    "neutral_values",
    "SummaryView",
]

#: Per-subscriber values left in the compiled email, filled by personalise (URL- and premailer-safe).
PLACEHOLDERS = {
    "greeting": "__NL_GREETING__",
    "unsubscribe_url": "__NL_UNSUBSCRIBE_URL__",
    "web_url": "__NL_WEB_URL__",
}
HTML_FILE, TEXT_FILE, META_FILE, PREVIEW_FILE = "email.html", "email.txt", "build.json", "preview.html"


@dataclass(frozen=True)
class SummaryView:
    """A summary as the templates show it."""

    id: str
    title: str
    url: str
    journal: str
    date_label: str
    teaser: str
    image: str | None
    image_alt: str | None


def _view(s: Summary) -> SummaryView:
    source = s.teaser or markdown_to_text(s.findings)
    return SummaryView(id=s.id, title=s.title, url=s.url, journal=s.journal, date_label=format_date(s.date),
                       teaser=teaser(source), image=s.image, image_alt=s.image_alt)


def _join(names: list[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def disclaimer_text(journals: list[str]) -> str:
    """The research disclaimer, naming every journal cited in the issue.

    Written to read at grade 8 or below (`newsletter check` shows its grade): the part of the email
    that tells people to talk to their healthcare team must be the easiest to read.
    """
    where = f"The studies in this issue come from {_join(journals)}. " if journals else ""
    return (f"{where}Studies are not all the same. Some are big and some are small. Some are at an early "
            "stage, or were done in a lab and not in people. Later studies may change what we know. Our "
            "summaries are short and leave things out, so please read the original studies to learn more. "
            "Talk with your healthcare team before you change your treatment, diet or supplements.")


@lru_cache(maxsize=8)
def _environment(templates_dir: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "mjml", "j2"),
                                            default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = lambda text, indent="", subsequent=None: wrap(str(text), 78, indent=indent,
                                                                         subsequent=subsequent)
    return env


def _template(env: jinja2.Environment, name: str, *, autoescape: bool) -> jinja2.Template:
    try:
        if autoescape:
            return env.get_template(name)
        source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        text_env = env.overlay(autoescape=False)
        return text_env.from_string(source)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name!r} not found in {env.loader.searchpath}") from None  # type: ignore[union-attr]
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None


def _context(issue: Issue, settings: Settings) -> dict[str, Any]:
    summaries = [_view(s) for s in issue.summaries]
    journals = list(dict.fromkeys(s.journal for s in issue.summaries))
    # The text part lists every link by number: the summaries', the intro's, then the site.
    links: list[str] = list(dict.fromkeys([s.url for s in summaries] + markdown_links(issue.intro)
                                          + [settings.site_url]))
    issue_view = {"id": issue.id, "subject": issue.subject, "preheader": issue.preheader,
                  "date_label": format_date(issue.date)}
    return {
        "issue": issue_view,
        "settings": settings,
        "summaries": summaries,
        "journals": journals,
        "disclaimer": disclaimer_text(journals),
        "intro_html": Markup(markdown_to_html(issue.intro)),
        "intro_text": markdown_to_plain(issue.intro,
                                        number=lambda url: links.index(url) + 1 if url in links else None),
        "links": links,
        "link_number": lambda url: links.index(url) + 1,
    }


@lru_cache(maxsize=1)
def _premailer_class() -> Any:
    # premailer pulls in cssutils (a slow import); only pay for it when rendering.
    import cssutils
    from premailer import Premailer

    cssutils.log.setLevel(logging.CRITICAL)
    # premailer validates every inline style attribute against cssutils' CSS profiles, even with
    # disable_validation=True. The verdicts only go to cssutils' log, silenced above, and never change
    # the output, yet compiling the profiles' regular expressions was about two thirds of the first
    # inline_css call (~60 of ~95 ms, benchmarks/README.md). Without profiles every property is
    # "unknown" (a silenced warning) and is serialised exactly as before.
    cssutils.profile.removeProfile(all=True)
    return Premailer


def inline_css(html: str) -> str:
    """Inline the stylesheet rules; @media rules (dark mode, mobile) stay in a <style> block."""
    premailer = _premailer_class()(
        html, keep_style_tags=False, strip_important=False, remove_classes=False,
        disable_validation=True, allow_network=False, cssutils_logging_level=logging.CRITICAL,
        disable_link_rewrites=True, align_floating_images=False, remove_unset_properties=True,
    )
    return premailer.transform(pretty_print=False)


def compile_mjml(source: str) -> str:
    try:
        return mjml2html(source, fonts={}, disable_comments=True)
    except Exception as exc:  # mjml-python raises a bare exception type for invalid MJML
        raise TemplateError(f"MJML compilation failed: {exc}") from exc


def _refuse_unsafe_content(issue: Issue) -> None:
    """Defence in depth: readers refuse these already, but a Summary can come from anywhere."""
    fields = [(f"issue {issue.id}", name, getattr(issue, name)) for name in ("subject", "preheader", "intro")]
    for s in issue.summaries:
        for name in ("id", "title", "journal", "url", "source_url", "teaser", "findings", "why_it_matters",
                     "limitations", "image", "image_alt"):
            fields.append((s.origin or s.id, name, getattr(s, name) or ""))
    for where, name, value in fields:
        problem = content_problem(value)
        if problem:
            raise SourceError(where, problem, field=name)


def render_email(issue: Issue, settings: Settings, *, templates_dir: Path | None = None) -> RenderedEmail:
    """Jinja -> MJML -> HTML -> inlined CSS, and the text part; done once per issue."""
    if not issue.summaries:
        raise TemplateError(f"issue {issue.id} has no summaries to render")
    _refuse_unsafe_content(issue)
    env = _environment(str(templates_dir or settings.path(settings.templates_dir)))
    ctx = _context(issue, settings)
    try:
        mjml_source = _template(env, "email.mjml.j2", autoescape=True).render(ctx)
        text = _template(env, "email.txt.j2", autoescape=False).render(ctx)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template error: {exc}") from None
    html = inline_css(compile_mjml(mjml_source))
    if not html.lstrip().lower().startswith("<!doctype"):
        html = "<!doctype html>\n" + html  # premailer drops it; without it clients render in quirks mode
    text = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    return RenderedEmail(issue_id=issue.id, subject=issue.subject, preheader=issue.preheader, html=html,
                         text=text, journals=tuple(ctx["journals"]))


def fill_placeholders(template: str, values: Mapping[str, str], *, html: bool) -> str:
    """Fill the per-subscriber tokens (escaping for HTML); used for previews and the slow path."""
    out = template
    for key, token in PLACEHOLDERS.items():
        value = values.get(key, "")
        out = out.replace(token, html_lib.escape(value, quote=True) if html else value)
    return out


def neutral_values(settings: Settings, issue_id: str) -> dict[str, str]:
    """What a non-subscriber sees (preview, web archive): no name, a generic unsubscribe page."""
    base = settings.public_base_url.rstrip("/")
    return {"greeting": "Hello,", "unsubscribe_url": f"{base}/unsubscribe",
            "web_url": f"{base}/issues/{issue_id}"}


def write_build(email: RenderedEmail, build_dir: Path, settings: Settings) -> dict[str, Any]:
    """Write email.html, email.txt, preview.html and build.json; each file atomically."""
    meta = {
        "issue": email.issue_id,
        "subject": email.subject,
        "preheader": email.preheader,
        "journals": list(email.journals),
        "html_bytes": len(email.html.encode("utf-8")),
        "text_bytes": len(email.text.encode("utf-8")),
        "sha256": email.sha256,
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write(build_dir / HTML_FILE, email.html)
    atomic_write(build_dir / TEXT_FILE, email.text)
    atomic_write(build_dir / PREVIEW_FILE,
                 fill_placeholders(email.html, neutral_values(settings, email.issue_id), html=True))
    atomic_write(build_dir / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return meta


def read_build(build_dir: Path) -> tuple[RenderedEmail, dict[str, Any]]:
    """Read a build back (for approve/send), as it is on disk."""
    from .errors import IssueError

    try:
        meta = json.loads((build_dir / META_FILE).read_text(encoding="utf-8"))
        html = (build_dir / HTML_FILE).read_text(encoding="utf-8")
        text = (build_dir / TEXT_FILE).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise IssueError(build_dir, f"{Path(exc.filename).name} is missing: run `newsletter build` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IssueError(build_dir, f"build output is damaged ({exc}); run `newsletter build` again") from None
    try:
        email = RenderedEmail(issue_id=str(meta["issue"]), subject=str(meta["subject"]),
                              preheader=str(meta["preheader"]), html=html, text=text,
                              journals=tuple(str(j) for j in meta.get("journals", ())))
    except (KeyError, TypeError, AttributeError) as exc:
        raise IssueError(build_dir / META_FILE, f"build output is damaged (no {exc}); "
                                                "run `newsletter build` again") from None
    return email, meta

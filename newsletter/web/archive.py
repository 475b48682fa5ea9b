"""The web archive: sent issues (those with a 'sent' ledger row), each one's web version, and an Atom feed.

Only the approved build is public: a build on disk that differs from the hash in approval.json
(an edit after sending) is not served, and a log line says why.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..approval import read_approval
from ..compose import is_issue_id
from ..errors import ApprovalError, IssueError
from ..models import RenderedEmail
from ..render import META_FILE, fill_placeholders, neutral_values, read_build
from ..settings import Settings
from ..store import Connection
from ..store.ledger import first_sent_time, first_sent_times
from ..text import format_date

__all__ = ["ArchivedIssue", "valid_issue_id", "sent_issues", "sent_issue", "web_version", "atom_feed"]

log = logging.getLogger("newsletter.serve")

_ATOM = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True)
class ArchivedIssue:
    """A sent issue as the archive lists it; `first_sent` is when its first message went out."""

    id: str
    subject: str
    preheader: str
    date: dt.date
    first_sent: dt.datetime

    @property
    def date_label(self) -> str:
        return format_date(self.date)


def valid_issue_id(value: str) -> bool:
    if not is_issue_id(value):  # as compose writes them; nothing else reaches the disk
        return False
    try:
        dt.date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


def _build_dir(settings: Settings, issue_id: str) -> Path:
    return settings.path(settings.issues_dir) / issue_id / "build"


def _first_sent(value: str | None, date: dt.date) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value) if value else None
    except ValueError:
        when = None
    if when is None:
        return dt.datetime.combine(date, dt.time(), dt.UTC)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class _Unpublishable(ValueError):
    """A sent issue whose build cannot be shown: damaged, never approved, or changed since approval."""


def _approved_build(settings: Settings, issue_id: str) -> RenderedEmail:
    """The build on disk if it is exactly what was approved; _Unpublishable otherwise."""
    folder = settings.path(settings.issues_dir) / issue_id
    try:
        meta = json.loads((folder / "build" / META_FILE).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise _Unpublishable(f"{folder / 'build' / META_FILE}: not a JSON object")
        email, _ = read_build(folder / "build")
        approval = read_approval(folder)
    except (IssueError, ApprovalError) as exc:
        raise _Unpublishable(str(exc)) from None
    if approval is None:
        raise _Unpublishable(f"{folder}: no approval.json, so nothing says which build was sent")
    if email.sha256 != approval.sha256:
        raise _Unpublishable(f"{folder / 'build'} differs from the build approved at {approval.approved_at}; "
                             "serving nothing rather than an edit no subscriber received")
    return email


def _load(settings: Settings, issue_id: str, sent_at: str | None) -> ArchivedIssue | None:
    """The issue as approved; None when its build is gone (a sent issue whose folder was removed)."""
    if not valid_issue_id(issue_id):
        return None
    if not (_build_dir(settings, issue_id) / META_FILE).exists():
        return None
    email = _approved_build(settings, issue_id)
    date = dt.date.fromisoformat(issue_id[:10])
    return ArchivedIssue(id=issue_id, subject=email.subject, preheader=email.preheader, date=date,
                         first_sent=_first_sent(sent_at, date))


def sent_issues(conn: Connection, settings: Settings) -> list[ArchivedIssue]:
    """Every sent issue with an approved build on disk, newest first; any other is logged and left out."""
    rows = first_sent_times(conn)
    issues = []
    for issue_id, sent_at in rows:
        try:
            issue = _load(settings, issue_id, sent_at)
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            log.warning("archive: skipping issue %s: %s", issue_id, exc)
            continue
        if issue is not None:
            issues.append(issue)
    return sorted(issues, key=lambda i: (i.first_sent, i.id), reverse=True)


def sent_issue(conn: Connection, settings: Settings, issue_id: str) -> ArchivedIssue | None:
    """The issue if it was sent and its build exists, else None (an unsent draft is not public).

    ValueError when it was sent but cannot be shown (damaged, or changed since approval).
    """
    if not valid_issue_id(issue_id):
        return None
    sent, sent_at = first_sent_time(conn, issue_id)
    if not sent:
        return None
    return _load(settings, issue_id, sent_at)


def web_version(settings: Settings, issue: ArchivedIssue) -> str:
    """The approved email.html as anyone may see it: no name, the generic unsubscribe page."""
    email = _approved_build(settings, issue.id)
    return as_web_page(fill_placeholders(email.html, neutral_values(settings, issue.id), html=True))


def as_web_page(html: str) -> str:
    """Wrap the email's body in <main>: on our own page it is the main content.

    The email itself has no <main>: a mail client shows it inside its own main landmark, so it is
    marked up as role="article" (the email-accessibility community's pattern) instead.
    """
    start = re.search(r"(?i)<body\b[^>]*>", html)
    end = html.lower().rfind("</body>")
    if not start or end < start.end():
        return html
    return html[:start.end()] + "<main>" + html[start.end():end] + "</main>" + html[end:]


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{_ATOM}}}{tag}", attrs)
    element.text = text
    return element


def atom_feed(settings: Settings, issues: Sequence[ArchivedIssue], *, now: dt.datetime | None = None) -> bytes:
    """An Atom 1.0 feed of the archive; ids and links use public_base_url, so they never change."""
    base = settings.public_base_url.rstrip("/")
    ET.register_namespace("", _ATOM)
    feed = ET.Element(f"{{{_ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": settings.language})
    _sub(feed, "title", settings.site_name)
    _sub(feed, "id", f"{base}/")
    _sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feed.xml")
    _sub(feed, "link", rel="alternate", type="text/html", href=f"{base}/")
    updated = max((i.first_sent for i in issues), default=now or dt.datetime.now(dt.UTC))
    _sub(feed, "updated", updated.isoformat(timespec="seconds"))
    author = _sub(feed, "author")
    _sub(author, "name", settings.sender_name)
    _sub(author, "uri", settings.site_url)
    for issue in issues:
        entry = _sub(feed, "entry")
        _sub(entry, "title", issue.subject)
        _sub(entry, "id", f"{base}/issues/{issue.id}")
        _sub(entry, "link", rel="alternate", type="text/html", href=f"{base}/issues/{issue.id}")
        stamp = issue.first_sent.isoformat(timespec="seconds")
        _sub(entry, "published", stamp)
        _sub(entry, "updated", stamp)
        if issue.preheader:
            _sub(entry, "summary", issue.preheader)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)

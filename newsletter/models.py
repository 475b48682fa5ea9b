"""The frozen records that flow between stages: Summary, Issue, RenderedEmail, Subscriber, Message."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Summary", "Issue", "RenderedEmail", "Subscriber", "Message", "SECTION_KEYS"]

#: Body sections of a summary, in the order the site shows them.
SECTION_KEYS = ("findings", "why_it_matters", "limitations")


@dataclass(frozen=True)
class Summary:
    """One plain-language research summary, from a Markdown file or a feed entry."""

    id: str
    title: str
    date: dt.date
    journal: str
    url: str
    source_url: str | None = None
    teaser: str = ""
    findings: str = ""
    why_it_matters: str = ""
    limitations: str = ""
    tags: tuple[str, ...] = ()
    image: str | None = None
    image_alt: str | None = None
    origin: str = ""  # file path or feed URL it came from, for error messages


@dataclass(frozen=True)
class Issue:
    """What an editor reviews: issues/<id>/issue.toml read back, summaries resolved in order."""

    id: str
    date: dt.date
    subject: str
    preheader: str
    intro: str
    summary_ids: tuple[str, ...]
    folder: Path
    status: str = "draft"  # draft | discarded
    summaries: tuple[Summary, ...] = ()
    custom_preheader: bool = True  # False: issue.toml left it empty and it was derived from the summaries

    @property
    def build_dir(self) -> Path:
        return self.folder / "build"


@dataclass(frozen=True)
class RenderedEmail:
    """An issue compiled once: HTML and text with per-subscriber placeholders left in."""

    issue_id: str
    subject: str
    preheader: str
    html: str
    text: str
    journals: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subscriber:
    """A row of the subscribers table."""

    id: int
    email: str
    name: str = ""
    status: str = "subscribed"  # subscribed | unsubscribed | bounced
    first_name: str = ""  # what the greeting uses; empty = "Hello," (never a guess from `name`)


@dataclass(frozen=True)
class Message:
    """A flat, fully serialised message for one recipient: what a transport sends."""

    issue_id: str
    recipient: str  # envelope recipient (the subscriber's address)
    sender: str  # envelope sender
    message_id: str  # without angle brackets
    data: bytes  # the whole RFC 5322 message, CRLF line endings

"""The frozen records that flow between stages: Summary, Issue, RenderedEmail, Subscriber, Message."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

__all__ = ["Summary", "Issue", "RenderedEmail", "Subscriber", "Message", "content_hash"]


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
    teasers: tuple[tuple[str, str], ...] = ()  # (summary id, the editor's own teaser), from [teasers]

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

    @cached_property
    def sha256(self) -> str:
        """What an approval freezes: the hash of subject, preheader, HTML and text."""
        return content_hash(self.html, self.text, self.subject, self.preheader)


def content_hash(html: str, text: str, subject: str, preheader: str) -> str:
    h = hashlib.sha256()
    for part in (subject, preheader, html, text):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


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
    # What SMTP's DATA sends for `data`, when its maker knows it cheaply (newsletter.personalise stuffs the
    # issue's static pieces once): pieces that joined are `data` with every line's leading dot doubled
    # (RFC 5321 4.5.2), then the end-of-data line. None: the transport works it out from `data`. Not an
    # __init__ argument, so dataclasses.replace(message, data=...) drops it rather than keep a stale one.
    payload: tuple[bytes, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def with_payload(cls, payload: tuple[bytes, ...] | None, **fields: str | bytes) -> Message:
        """A Message whose `payload` its maker vouches for (see the field)."""
        message = cls(**fields)  # type: ignore[arg-type]
        object.__setattr__(message, "payload", payload)
        return message

"""Text helpers shared by the stages: safe links, Markdown to safe HTML or plain text, teasers, dates."""

from __future__ import annotations

import datetime as dt
import html
import re
import textwrap
import unicodedata
from collections.abc import Callable
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = [
    "RESERVED_MARK",
    "content_problem",
    "is_safe_link",
    "markdown_to_html",
    "markdown_to_text",
    "unsafe_links",
    "markdown_links",
    "markdown_to_plain",
    "teaser",
    "format_date",
    "wrap",
    "TEASER_LIMIT",
]

TEASER_LIMIT = 160
_ELLIPSIS = "…"


#: Reserved for the per-subscriber values newsletter splices in; content may never contain it.
RESERVED_MARK = "__NL_"
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def content_problem(text: str) -> str | None:
    """Why a piece of content cannot go into an email, or None: control characters, reserved marks."""
    if RESERVED_MARK in text:
        return f"contains {RESERVED_MARK!r}, which is reserved for per-subscriber values"
    bad = _UNSAFE_CHARS.search(text)
    if bad:
        return f"contains the control character U+{ord(bad.group()):04X}"
    return None


def is_safe_link(url: str, *, allow_mailto: bool = True) -> bool:
    """True for absolute http(s) URLs with a host (and mailto: if allowed); never javascript:, data:, //host."""
    if not isinstance(url, str) or not url or url != url.strip():
        return False
    if any(ord(c) < 0x20 or c in "\x7f<>\"'` " for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "mailto":
        return allow_mailto and "@" in parts.path
    return scheme in ("http", "https") and bool(parts.hostname)


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.validateLink = lambda url: is_safe_link(url)  # type: ignore[method-assign]
    return md


_MD = _markdown()

# Parses every link, safe or not, so that unsafe ones can be named instead of silently dropped.
_MD_ALL_LINKS = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_MD_ALL_LINKS.validateLink = lambda url: True  # type: ignore[method-assign]


def unsafe_links(source: str, *, allow_mailto: bool = True) -> list[str]:
    """Link and image targets in Markdown that are not absolute http(s) (or mailto:) links, in order."""
    source = source or ""
    if "[" not in source and "<" not in source:
        return []  # every link and image starts with "[" ("![", "[x](", "[x][ref]") or is an autolink "<..>"
    found: list[str] = []
    stack = list(_MD_ALL_LINKS.parse(source))
    while stack:
        token = stack.pop(0)
        if token.children:
            stack[:0] = token.children
        if token.type in ("link_open", "image"):
            target = str(token.attrGet("href" if token.type == "link_open" else "src") or "")
            if not is_safe_link(target, allow_mailto=allow_mailto and token.type == "link_open"):
                found.append(target)
    return list(dict.fromkeys(found))


def markdown_to_html(source: str) -> str:
    """Render Markdown with raw HTML disabled and only http(s)/mailto links kept."""
    return _MD.render(source or "")


_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"(\*\*|__|\*|_|`|~~)")
_HTML_TAG = re.compile(r"<[^>]{0,500}>")


def markdown_to_text(source: str) -> str:
    """Plain text from Markdown: links keep their words, emphasis marks and tags dropped, entities decoded."""
    text = _MD_LINK.sub(r"\1", source or "")
    text = re.sub(r"^\s{0,3}(#{1,6}|>|[-*+]|\d+[.)])\s+", "", text, flags=re.M)
    text = _MD_MARKS.sub("", text)
    text = _HTML_TAG.sub("", text)
    text = html.unescape(text)
    return " ".join(text.split())


def markdown_links(source: str) -> list[str]:
    """The safe http(s) link targets in Markdown, in order of appearance, each once."""
    found = []
    for token in _MD.parse(source or ""):
        for child in token.children or ():
            if child.type == "link_open":
                href = str(child.attrGet("href") or "")
                if href.lower().startswith(("http://", "https://")):
                    found.append(href)
    return list(dict.fromkeys(found))


def _inline_plain(token: Token, number: Callable[[str], int | None]) -> str:
    out: list[str] = []
    link: tuple[str, int] | None = None  # (href, where its words start in out)
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type == "softbreak":
            out.append(" ")
        elif child.type == "hardbreak":
            out.append("\n")
        elif child.type == "image":
            out.append(child.content or str(child.attrGet("alt") or ""))
        elif child.type == "link_open":
            link = (str(child.attrGet("href") or ""), len(out))
        elif child.type == "link_close" and link is not None:
            href, start = link
            words = "".join(out[start:]).strip()
            if href.lower().startswith("mailto:"):
                address = href[len("mailto:"):].split("?")[0]
                if words != address:
                    out.append(f" ({address})")
            else:
                n = number(href)
                out.append(f" [{n}]" if n is not None else f" <{href}>")
            link = None
    return "".join(out)


def markdown_to_plain(source: str, *, number: Callable[[str], int | None] = lambda _url: None) -> str:
    """Markdown as readable plain text: paragraphs apart, list items one per line ("- ", "1. "), and each
    link's words followed by its number in the text part's link list (`number`), or the address itself."""
    blocks: list[tuple[str, int]] = []  # (text, top-level list it belongs to, or -1 for a paragraph)
    lists: list[list[int]] = []  # per open list: [next number] (ordered) or [] (bullets)
    group, marker = 0, ""
    for token in _MD.parse(source or ""):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            if not lists:
                group += 1
            lists.append([int(token.attrGet("start") or 1)] if token.type == "ordered_list_open" else [])
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif token.type == "list_item_open":
            counter = lists[-1]
            marker = "  " * (len(lists) - 1) + (f"{counter[0]}. " if counter else "- ")
            if counter:
                counter[0] += 1
        elif token.type == "inline":
            text = html.unescape(_inline_plain(token, number)).strip()
            blocks.append((marker + text, group if lists else -1))
            marker = ""
        elif token.type in ("fence", "code_block"):
            blocks.append((token.content.rstrip("\n"), -1))
    out = ""
    for i, (text, in_list) in enumerate(blocks):
        if i:
            out += "\n" if in_list >= 0 and in_list == blocks[i - 1][1] else "\n\n"
        out += text
    return out


def teaser(text: str, limit: int = TEASER_LIMIT) -> str:
    """Cut plain text to at most `limit` characters at a word boundary, adding an ellipsis when cut."""
    text = unicodedata.normalize("NFC", " ".join((text or "").split()))
    if len(text) <= limit:
        return text
    room = limit - len(_ELLIPSIS)
    cut = text[: room + 1]
    space = cut.rfind(" ")
    if space > 0:
        head = cut[:space]
    else:
        # One word longer than the limit: cut it, but never inside a grapheme's combining marks.
        head = text[:room]
        while head and unicodedata.combining(text[len(head)]):
            head = head[:-1]
    head = head.rstrip(" ,;:.-–—(")
    return head + _ELLIPSIS


def format_date(value: dt.date) -> str:
    """Unambiguous dates for every reader: '1 March 2026', never 3/1/2026."""
    return f"{value.day} {value:%B %Y}"


_LIST_ITEM = re.compile(r"^(\s*)(-|\d+\.) ")


def wrap(text: str, width: int = 78, *, indent: str = "", subsequent: str | None = None) -> str:
    """Wrap plain text for the text part without breaking URLs or words.

    Paragraphs are separated by blank lines; within one, a line starting with "- " or "1. " is a list
    item, wrapped on its own with a hanging indent (unless `subsequent` sets the indent).
    """
    paragraphs = [p for p in re.split(r"\n\s*\n", text or "")]
    out = []
    for para in paragraphs:
        lines = para.split("\n")
        if subsequent is None and any(_LIST_ITEM.match(line) for line in lines):
            items: list[str] = []
            for line in lines:
                if _LIST_ITEM.match(line) or not items:
                    items.append(line.rstrip())
                else:
                    items[-1] += " " + line.strip()
            wrapped = []
            for item in items:
                m = _LIST_ITEM.match(item)
                hang = indent + " " * (len(m.group(0)) if m else 0)
                lead = indent + (m.group(1) if m else "")
                body = " ".join(item[len(m.group(1)) if m else 0:].split())
                wrapped.append(textwrap.fill(body, width=width, initial_indent=lead, subsequent_indent=hang,
                                             break_long_words=False, break_on_hyphens=False))
            out.append("\n".join(wrapped))
            continue
        out.append(textwrap.fill(" ".join(para.split()), width=width, initial_indent=indent,
                                 subsequent_indent=indent if subsequent is None else subsequent,
                                 break_long_words=False, break_on_hyphens=False))
    return "\n\n".join(out)

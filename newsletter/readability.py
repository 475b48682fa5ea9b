"""Readability: an issue's texts -> grade level, reading ease and the sentences to shorten, per part.

Scores come from textstat 0.7.3, pinned on purpose: it counts syllables with pyphen's bundled
hyphenation dictionaries, while textstat >= 0.7.4 fetches the CMU dictionary through NLTK's
downloader at run time, which fails offline. Nothing here touches the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from .models import Issue
from .text import markdown_to_text

__all__ = ["LONG_SENTENCE_WORDS", "Readability", "score", "sentences", "issue_readability", "format_table"]

#: Plain-language guidance (and our check) calls a sentence long above this many words.
LONG_SENTENCE_WORDS = 25

# A sentence ends at . ! or ? (and a closing quote or bracket) before a space and a capital, digit or quote.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
# Case-sensitive on purpose: "Ms. Lee" goes on, "... of MS. People" is two sentences.
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|vs|al|approx|Fig|e\.g|i\.e)\.$")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’-]*")


@dataclass(frozen=True)
class Readability:
    """How hard one text is to read; `where` names the file a fix belongs in."""

    part: str  # intro | disclaimer | teaser | body
    label: str  # what the reader knows it as: the summary's id, "intro", "disclaimer"
    where: str  # the file to edit
    grade: float  # Flesch-Kincaid grade level
    ease: float  # Flesch reading ease (higher is easier; 60-70 is plain English)
    sentences: int
    words: int
    longest_words: int
    longest_sentence: str
    long_share: float  # share of sentences over LONG_SENTENCE_WORDS words, 0..1
    hardest_sentence: str = ""  # the sentence with the highest grade of its own: the one to rewrite first
    hardest_grade: float = 0.0
    ours: bool = True  # written by us (intro, disclaimer, summary files), not a partner's feed entry


def sentences(markdown: str) -> list[str]:
    """The sentences of a Markdown text as plain words; a paragraph or list item always ends one."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n|\n\s*(?=[-*+]\s|\d+[.)]\s)", markdown or ""):
        pieces: list[str] = []
        for piece in _SENTENCE_END.split(markdown_to_text(block)):
            if pieces and _ABBREVIATION.search(pieces[-1]):  # "Dr. Lee" is one sentence
                pieces[-1] += " " + piece
            elif piece.strip():
                pieces.append(piece.strip())
        out += pieces
    return out


def word_count(sentence: str) -> int:
    return len(_WORD.findall(sentence))


def score(text: str, *, part: str = "", label: str = "", where: str = "") -> Readability:
    """Grade, ease and sentence lengths of plain text (Markdown is flattened first)."""
    import textstat  # imported late: pyphen loads its dictionaries on first use, only `check` needs them

    parts = sentences(text)
    # textstat counts sentences by their final marks: give a heading or list item one.
    plain = " ".join(p if p[-1] in ".!?\"'”’)" else p + "." for p in parts)
    lengths = [word_count(s) for s in parts]
    longest = max(range(len(parts)), key=lengths.__getitem__, default=None)
    grades = [_sentence_grade(p, n, textstat) for p, n in zip(parts, lengths)]
    hardest = max(range(len(parts)), key=grades.__getitem__, default=None)
    return Readability(
        part=part, label=label, where=where,
        grade=float(textstat.flesch_kincaid_grade(plain)) if parts else 0.0,
        ease=float(textstat.flesch_reading_ease(plain)) if parts else 100.0,
        sentences=len(parts), words=sum(lengths),
        longest_words=lengths[longest] if longest is not None else 0,
        longest_sentence=parts[longest] if longest is not None else "",
        long_share=(sum(n > LONG_SENTENCE_WORDS for n in lengths) / len(parts)) if parts else 0.0,
        hardest_sentence=parts[hardest] if hardest is not None else "",
        hardest_grade=round(grades[hardest], 1) if hardest is not None else 0.0,
    )


def _sentence_grade(sentence: str, words: int, textstat: Any) -> float:
    """Flesch-Kincaid's formula for one sentence: long sentences and long words both raise it."""
    if not words:
        return 0.0
    return 0.39 * words + 11.8 * textstat.syllable_count(sentence) / words - 15.59


def summary_body(findings: str, why_it_matters: str, limitations: str) -> str:
    return "\n\n".join(p for p in (findings, why_it_matters, limitations) if p.strip())


def issue_readability(issue: Issue, disclaimer: str) -> tuple[Readability, ...]:
    """One row per text a reader meets: the intro, each summary's teaser and body, the disclaimer."""
    issue_file = str(issue.folder / "issue.toml")
    rows = [score(issue.intro, part="intro", label="intro", where=issue_file)] if issue.intro.strip() else []
    for s in issue.summaries:
        where = s.origin or s.id
        ours = where.endswith(".md")  # feeds are partners' words: we can point at them, not rewrite them
        if s.teaser.strip():
            rows.append(replace(score(s.teaser, part="teaser", label=s.id, where=where), ours=ours))
        body = summary_body(s.findings, s.why_it_matters, s.limitations)
        if body.strip() and body.strip() != s.teaser.strip():  # a feed entry's one text is both
            rows.append(replace(score(body, part="body", label=s.id, where=where), ours=ours))
    rows.append(score(disclaimer, part="disclaimer", label="disclaimer", where="newsletter/render.py"))
    return tuple(rows)


def format_table(rows: tuple[Readability, ...] | list[Readability], *, label_width: int = 38) -> str:
    """A fixed-width table for the terminal: one line per text."""
    head = f"{'text':<{label_width}} {'part':<10} {'grade':>5} {'ease':>5} {'longest':>7} {'> 25 w':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        label = r.label if len(r.label) <= label_width else r.label[: label_width - 1] + "…"
        lines.append(f"{label:<{label_width}} {r.part:<10} {r.grade:>5.1f} {r.ease:>5.0f} "
                     f"{r.longest_words:>5} w {r.long_share:>6.0%}")
    return "\n".join(lines)

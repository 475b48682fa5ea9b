"""Glossary: content/glossary.yml -> plain explanations, and the terms a text uses without one nearby."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import SourceError
from .readability import sentences

__all__ = ["Term", "Glossary", "load_glossary", "unexplained_terms"]

_KEYS = {"term", "plain", "also", "look_for"}
# Words too common to show that a term was explained.
_COMMON = {"about", "after", "again", "against", "because", "before", "being", "between", "body's", "could",
           "different", "during", "every", "other", "people", "person", "should", "something", "their", "there",
           "these", "thing", "things", "those", "through", "where", "which", "while", "without", "would"}


@dataclass(frozen=True)
class Term:
    """One glossary entry: the term, its one-sentence plain explanation, what shows it was explained."""

    term: str
    plain: str
    also: tuple[str, ...] = ()  # other spellings and forms that count as the term
    look_for: tuple[str, ...] = ()  # words near the term that show it was explained

    @property
    def forms(self) -> tuple[str, ...]:
        return (self.term, *self.also)

    def pattern(self) -> re.Pattern[str]:
        # Case matters only for all-capital abbreviations ("OCT" is not "Oct."); "Relapse" at the
        # start of a sentence is still the term.
        alternatives = "|".join(re.escape(f) if f.isupper() else f"(?i:{re.escape(f)})"
                                for f in sorted(self.forms, key=len, reverse=True))
        return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")

    def cues(self) -> tuple[str, ...]:
        """The explicit `look_for` words, else the explanation's longer words that are not the term's own."""
        if self.look_for:
            return self.look_for
        own = {w.lower() for f in self.forms for w in re.findall(r"[\w']+", f)}
        words = [w.lower() for w in re.findall(r"[A-Za-z][\w']{5,}", self.plain)]
        return tuple(dict.fromkeys(w for w in words if w not in own and w not in _COMMON))


@dataclass(frozen=True)
class Glossary:
    terms: tuple[Term, ...] = ()
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.terms)


def _strings(value: object, path: Path, where: str, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SourceError(path, f"{where}: must be a word or a list of words", field=field)
    return tuple(v.strip() for v in value)


def load_glossary(path: Path) -> Glossary:
    """Read the glossary; a missing file is an empty glossary, a broken one an error naming the entry."""
    if not path.exists():
        return Glossary(path=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise SourceError(path, f"not valid YAML: {getattr(exc, 'problem', exc)}",
                          line=None if line is None else line + 1) from None
    except UnicodeDecodeError:
        raise SourceError(path, "not UTF-8 text") from None
    entries = (data or {}).get("terms") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise SourceError(path, "must hold a list of terms under `terms:`", field="terms")
    terms: list[Term] = []
    seen: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"term {number}"
        if not isinstance(entry, dict):
            raise SourceError(path, f"{where}: must be a mapping with `term` and `plain`", field="terms")
        unknown = set(entry) - _KEYS
        if unknown:
            raise SourceError(path, f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                                    f"(known: {', '.join(sorted(_KEYS))})", field="terms")
        term, plain = entry.get("term"), entry.get("plain")
        if not isinstance(term, str) or not term.strip():
            raise SourceError(path, f"{where}: `term` must be a word or phrase", field="term")
        where = f"term {term!r}"
        if not isinstance(plain, str) or not plain.strip():
            raise SourceError(path, f"{where}: `plain` must be a one-sentence explanation", field="plain")
        item = Term(term=term.strip(), plain=" ".join(plain.split()),
                    also=_strings(entry.get("also"), path, where, "also"),
                    look_for=_strings(entry.get("look_for"), path, where, "look_for"))
        for form in item.forms:
            if form.lower() in seen:
                raise SourceError(path, f"{where}: {form!r} is already listed under {seen[form.lower()]!r}",
                                  field="term")
            seen[form.lower()] = item.term
        terms.append(item)
    return Glossary(terms=tuple(terms), path=path)


def _explained(term: Term, window: str) -> bool:
    if term.plain.lower() in window.lower():
        return True
    text = term.pattern().sub(" ", window).lower()  # the term itself does not explain the term
    return any(re.search(rf"(?<![\w-]){re.escape(cue.lower())}", text) for cue in term.cues())


def unexplained_terms(glossary: Glossary, markdown: str) -> list[tuple[Term, str]]:
    """(term, sentence) for each glossary term whose first use has no explanation in or beside its sentence."""
    parts = sentences(markdown)
    out: list[tuple[Term, str]] = []
    for term in glossary.terms:
        pattern = term.pattern()
        first = next((i for i, s in enumerate(parts) if pattern.search(s)), None)
        if first is None:
            continue
        window = " ".join(parts[max(0, first - 1): first + 2])
        if not _explained(term, window):
            out.append((term, parts[first]))
    return out

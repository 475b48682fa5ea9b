"""The bounce corpus: every message in tests/data/bounces/ gets the verdict written next to it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from newsletter.bounces.parse import BounceParseError, classify, severity

CORPUS = Path(__file__).parent / "data" / "bounces"
VERDICTS = tomllib.loads((CORPUS / "verdicts.toml").read_text(encoding="utf-8"))


def verdict_of(name: str) -> dict[str, object]:
    try:
        found = classify((CORPUS / name).read_bytes())
    except BounceParseError as exc:
        return {"kind": "error", "why": str(exc)}
    out: dict[str, object] = {"kind": found.kind}
    if found.counted:
        out["recipients"] = list(found.recipients)
    if found.kind in ("hard", "soft"):
        out["code"] = found.status
    return out


def test_corpus_is_big_enough() -> None:
    kinds = [v["kind"] for v in VERDICTS.values()]
    assert sum(k in ("hard", "soft") for k in kinds) >= 30
    assert sum(k == "complaint" for k in kinds) >= 5
    assert sum(k == "auto-reply" for k in kinds) >= 3
    assert set(VERDICTS) == {p.name for p in CORPUS.glob("*.eml")}


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_verdict(name: str) -> None:
    expected = dict(VERDICTS[name])
    got = verdict_of(name)
    got.pop("why", None)
    assert got == expected


def test_corpus_score() -> None:
    """The figure docs/bounces.md quotes (prints it with -s)."""
    correct = 0
    for name, expected in VERDICTS.items():
        got = verdict_of(name)
        got.pop("why", None)
        correct += got == dict(expected)
    print(f"bounce corpus: {correct}/{len(VERDICTS)} verdicts correct")
    assert correct == len(VERDICTS)


def test_original_message_id_and_verp_are_found() -> None:
    found = classify((CORPUS / "gmail-no-such-user.eml").read_bytes())
    assert found.original_message_id == "2026-11-25.41.0f1e2d3c4b5a69788796@ms-research.example.org"
    assert any(a.startswith("bounces+2026-11-25.41.") for a in found.addressed_to)
    redacted = classify((CORPUS / "arf-microsoft-redacted.eml").read_bytes())
    assert redacted.recipients == () and redacted.original_message_id is not None


@pytest.mark.parametrize(("status", "text", "permanent", "kind"), [
    ("5.1.1", "", True, "hard"),
    ("5.7.1", "user unknown", True, "soft"),  # policy codes win over words
    ("5.2.2", "mailbox full", True, "soft"),
    ("4.2.2", "no such user", False, "soft"),
    ("", "550 sorry", True, "hard"),
    ("", "552 message too large", True, "soft"),
    ("5.0.0", "quota exceeded", True, "soft"),
])
def test_severity(status: str, text: str, permanent: bool, kind: str) -> None:
    assert severity(status, text, permanent=permanent) == kind


def test_garbage_is_never_a_crash() -> None:
    """Truncated and mangled copies of every corpus message: a verdict or BounceParseError, nothing else."""
    for path in sorted(CORPUS.glob("*.eml")):
        data = path.read_bytes()
        for cut in (len(data) // 3, len(data) // 2, len(data) - 7):
            for sample in (data[:cut], data[:cut].replace(b"\r\n", b"\n\x00"), bytes(reversed(data[:cut]))):
                try:
                    classify(sample)
                except BounceParseError:
                    pass

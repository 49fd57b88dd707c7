"""Which writing system a text is in, so an embedder judges only texts it was trained on.

all-MiniLM-L6-v2 was trained on English: Chinese or Thai personas of different people land at
cosine > 0.9. fontTools (installed with matplotlib) carries the Unicode script data, so no
language-detection model is needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from fontTools import unicodedata as ucd

__all__ = [
    "ANY_SCRIPT",
    "LATIN",
    "MIN_COVERED_SHARE",
    "covered",
    "dominant_script",
    "script_counts",
]

# not writing systems: Common, Inherited, unknown
_NEUTRAL: Final = frozenset({"Zyyy", "Zinh", "Zzzz"})

ANY_SCRIPT: Final = None
"""An embedder's ``scripts`` for "judges any text" (lexical or multilingual)."""

LATIN: Final = frozenset({"Latn"})
"""The scripts of an English-only model."""

MIN_COVERED_SHARE: Final = 0.8
"""A text is an embedder's to judge when this share of its letters is in the embedder's scripts
(an English persona with a Chinese name in it still is; a Chinese one with an English word is not)."""


@lru_cache(maxsize=65_536)
def _script(char: str) -> str:
    return str(ucd.script(char))


def script_counts(text: str) -> Counter[str]:
    """Count characters per script, leaving out neutral ones (digits, punctuation)."""
    if text.isascii():
        letters = sum(c.isalpha() for c in text)
        return Counter({"Latn": letters}) if letters else Counter()
    counts = Counter(map(_script, text))
    for neutral in _NEUTRAL:
        counts.pop(neutral, None)
    return counts


def dominant_script(text: str) -> str:
    """Return the script most letters are in (Zyyy, Common, when there are none)."""
    counts = script_counts(text)
    return counts.most_common(1)[0][0] if counts else "Zyyy"


def covered(text: str, scripts: Iterable[str] | None) -> bool:
    """Whether an embedder trained on these scripts (None: any) should judge the text."""
    if scripts is None:
        return True
    counts = script_counts(text)
    total = sum(counts.values())
    if total == 0:
        return True
    allowed = set(scripts)
    inside = sum(n for script, n in counts.items() if script in allowed)
    return inside >= MIN_COVERED_SHARE * total

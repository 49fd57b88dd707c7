"""Text measures shared by prompt budgets, memory and the offline engine.

An approximate token count (4 characters a token) and a text's keywords: pure functions of the
text, so a seeded run trims and retrieves the same whatever engine answers it.
"""

from __future__ import annotations

import string
from functools import lru_cache

_STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from into onto over under about after
    before between through during without within who whom whose which that this these those is
    are was were be been being am do does did done has have had having it its they them their
    there here he she his her him you your yours we our ours us i me my mine not no nor so than
    too very can could should would will shall may might must just also only own same such
    each every some any all both few more most other what when where why how as up down out off
    again further then once while because until per via one two three who's it's don't
    persona personas message messages received event events world step reply answer json schema
    field fields write writes written someone person people like likes task following give return
    only valid object""".split()
)
# a word: letters, apostrophes and hyphens from its first letter on
_RUN_CHARS = string.ascii_letters + "'-"
_ASCII_RUNS = bytes(b if chr(b) in _RUN_CHARS else 32 for b in range(256)).lower()


def approx_tokens(text: str) -> int:
    """Count a text's tokens roughly (4 characters a token, at least 1)."""
    return max(1, (len(text) + 3) // 4)


def keywords(text: str, limit: int = 40) -> list[str]:
    """Return a text's distinct content words, first seen first, at most limit of them."""
    return list(cached_keywords(text, limit))


@lru_cache(maxsize=8192)
def cached_keywords(text: str, limit: int) -> tuple[str, ...]:
    """Return keywords as a tuple, cached: world texts and personas repeat across many prompts."""
    runs = text.encode("ascii", "replace").translate(_ASCII_RUNS).decode("ascii").split()
    if "'" in text or "-" in text:
        runs = [run.strip("'-") for run in runs if len(run) > 3]
    seen = dict.fromkeys([word for word in runs if len(word) > 3 and word not in _STOPWORDS])
    return tuple(seen)[: max(limit, 1)]

"""Final answers compared by meaning, not by string, for solver agreement and scoring.

Solvers answering ``0.5``, ``1/2`` and ``\\frac{1}{2}`` agree. Hugging Face's math-verify (sympy
underneath) parses and compares them; nothing is executed. A number followed by words keeps the
number; other text is read as LaTeX unless it holds a plain word. When the verifier cannot
decide, equivalent returns None for a model judge to settle, unless the texts match.

Known leniencies of the verifier, kept: ``50%`` matches both ``0.5`` and ``50``, and rounding is
to 6 places, so ``0.333`` is not ``1/3``.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

__all__ = ["MAX_ANSWER_CHARS", "equivalent", "parse_answer"]

MAX_ANSWER_CHARS = 300  # a longer answer is prose, left to the judge
_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")
# a number, then only plain words (units, currency names): the words are dropped
_NUMBER_THEN_WORDS = re.compile(r"^([-+]?\$?\d[\d,]*(?:\.\d+)?%?)\s+[A-Za-z][A-Za-z .^/\d]*$")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # a word, not a LaTeX command's name
_MATH_WORDS = frozenset({"sqrt", "sin", "cos", "tan", "log", "exp", "infty", "inf", "pi", "oo"})


def _quiet() -> None:
    # parse's signal-based timeout works only in the main thread and warns elsewhere; answers
    # are capped at MAX_ANSWER_CHARS instead
    logging.getLogger("math_verify").setLevel(logging.ERROR)


def _text(answer: str) -> str:
    text = answer.strip().rstrip(".").strip()
    match = _NUMBER_THEN_WORDS.match(text)
    return match.group(1) if match else text


@lru_cache(maxsize=65536)
def parse_answer(answer: str) -> tuple[Any, ...]:
    """The verifier's reading of one answer (empty when it cannot read it).

    Args:
        answer: a final answer as a solver wrote it.

    Returns:
        math-verify's parse (sympy objects and the matched text), as a tuple.
    """
    from math_verify import parse

    _quiet()
    text = _text(answer)
    if not text or len(text) > MAX_ANSWER_CHARS:
        return ()
    # a plain word read as LaTeX would be a product of letters ("three" = t*h*r*e*e)
    prose = any(w.lower() not in _MATH_WORDS for w in _WORD.findall(text))
    wrapped = text if prose or any(d in text for d in _DELIMITERS) else f"${text}$"
    found = parse(wrapped, parsing_timeout=None)
    if not found and wrapped != text:
        found = parse(text, parsing_timeout=None)
    return tuple(found)


def _plain(answer: str) -> str:
    return " ".join(answer.strip().rstrip(".").lower().split())


def equivalent(a: str, b: str) -> bool | None:
    """Whether two final answers mean the same, or None when the verifier cannot decide.

    Args:
        a: one answer.
        b: the other.

    Returns:
        True or False as math-verify decides (symmetric: either order matches); None when
        either answer does not parse and their normalised texts differ.
    """
    from math_verify import verify

    if _plain(a) == _plain(b):
        return True
    pa, pb = parse_answer(a), parse_answer(b)
    if not pa or not pb:
        return None
    return bool(verify(list(pa), list(pb), timeout_seconds=None)
                or verify(list(pb), list(pa), timeout_seconds=None))

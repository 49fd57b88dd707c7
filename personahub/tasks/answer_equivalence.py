"""Final answers compared by meaning, not by string, for solver agreement and scoring.

Solvers answering ``0.5``, ``1/2`` and ``\\frac{1}{2}`` agree. Hugging Face's math-verify (sympy
underneath) parses and compares them; nothing is executed. Numbers written with words are read
first (answer_numbers: ``3 million`` is 3000000, ``3 1/2`` is 3.5, ``10 to 12`` is no single
value), so no word that changes a value is dropped; a number followed by plain words (a unit)
keeps the number; other text is read as LaTeX unless it holds a plain word. When the verifier
cannot decide, equivalent returns None for a model judge to settle, unless the texts match.

A percentage is its number and its share alike, whatever the number: ``12.5%`` and ``12.5
percent`` match both ``12.5`` and ``0.125`` (a question asking for a percent is answered ``12.5``
or ``12.5%``), and two percentages compare their numbers (``50%`` is not ``0.5%``). Rounding is
math-verify's, to 6 places, so ``0.333`` is not ``1/3``.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from personahub.tasks.answer_numbers import read_numbers

__all__ = ["MAX_ANSWER_CHARS", "equivalent", "parse_answer"]

MAX_ANSWER_CHARS = 300  # a longer answer is prose, left to the judge
_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")
_PERCENT = re.compile(r"^([-+]?(?:\d+(?:\.\d+)?|\.\d+|\d+/\d+))%$")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # a word, not a LaTeX command's name
_MATH_WORDS = frozenset({"sqrt", "sin", "cos", "tan", "log", "exp", "infty", "inf", "pi", "oo"})


def _quiet() -> None:
    # parse's signal-based timeout works only in the main thread and warns elsewhere; answers
    # are capped at MAX_ANSWER_CHARS instead
    logging.getLogger("math_verify").setLevel(logging.ERROR)


def _text(answer: str) -> str | None:
    """Return the answer as the verifier reads it: worded numbers written out (None: no single value)."""
    text = answer.strip().rstrip(".").strip()
    return read_numbers(text) if len(text) <= MAX_ANSWER_CHARS else text


@lru_cache(maxsize=65536)
def parse_answer(answer: str) -> tuple[object, ...]:
    """Return the verifier's reading of one answer (empty when it cannot read it).

    Args:
        answer: a final answer as a solver wrote it.

    Returns:
        math-verify's parse (sympy objects and the matched text), as a tuple.
    """
    from math_verify import parse

    _quiet()
    text = _text(answer)
    if not text or len(text) > MAX_ANSWER_CHARS:  # no single value, or prose
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
    if _plain(a) == _plain(b):
        return True
    ta, tb = _text(a), _text(b)
    if ta is None or tb is None:  # a range or two quantities: no single value to compare
        return None
    pct_a, pct_b = _PERCENT.match(ta), _PERCENT.match(tb)
    if pct_a and pct_b:  # 50% and 0.5%: their numbers
        return _verified(pct_a.group(1), pct_b.group(1))
    if pct_a or pct_b:
        number, other = (pct_a.group(1), tb) if pct_a else (pct_b.group(1), ta)  # type: ignore[union-attr]
        as_number, as_share = _verified(number, other), _verified(f"({number})/100", other)
        if as_number is None or as_share is None:
            return None
        return as_number or as_share
    return _verified(ta, tb)


def _verified(a: str, b: str) -> bool | None:
    """math-verify's verdict on two texts read by parse_answer (None: either does not parse)."""
    from math_verify import verify

    pa, pb = parse_answer(a), parse_answer(b)
    if not pa or not pb:
        return None
    return bool(verify(list(pa), list(pb), timeout_seconds=None)
                or verify(list(pb), list(pa), timeout_seconds=None))

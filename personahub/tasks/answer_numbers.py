"""Numbers written with words, read before math-verify so that no word that changes a value is
dropped.

math-verify reads the first number of ``3 million`` and ``10 to 12`` and nothing after it, so
``3 million`` would equal 3. An answer made of numbers and plain words is read here first:

- a scale word multiplies (``3 million`` is 3000000, ``2 and a half million`` 2500000);
- a mixed number adds (``3 1/2``, ``3½``, ``2 and a half``, ``4 and three quarters``);
- ``20 percent`` and ``20 per cent`` are ``20%``;
- ``1 000`` (digits grouped by spaces) is 1000, and ``-$5`` is -5;
- a range (``10 to 12``, ``10-12``, ``between 10 and 12``, ``10 or 12``), a bound (``at least
  5``), two quantities (``5 hours 30 minutes``, ``3 dollars and 50 cents``) or two numbers side
  by side (``3 4``) is left undecided: no one number is the answer;
- one number followed by plain words is that number (``3 cm`` is 3: a unit of one kind).

Text with anything else (LaTeX, an equation, a set) is math-verify's, unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import lru_cache

__all__ = ["UNDECIDED", "read_numbers"]

#: what read_numbers returns for an answer that holds no single value
UNDECIDED = None

_SCALES = {"hundred": 100, "thousand": 10**3, "million": 10**6, "billion": 10**9,
           "trillion": 10**12}
_PARTS = {"half": Fraction(1, 2), "halves": Fraction(1, 2), "third": Fraction(1, 3),
          "thirds": Fraction(1, 3), "quarter": Fraction(1, 4), "quarters": Fraction(1, 4),
          "fourth": Fraction(1, 4), "fourths": Fraction(1, 4), "fifth": Fraction(1, 5),
          "fifths": Fraction(1, 5), "eighth": Fraction(1, 8), "eighths": Fraction(1, 8)}
_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7}
_VULGAR = {"½": " 1/2", "⅓": " 1/3", "⅔": " 2/3", "¼": " 1/4", "¾": " 3/4", "⅕": " 1/5",
           "⅛": " 1/8", "⅜": " 3/8", "⅝": " 5/8", "⅞": " 7/8"}
# words before a number that make it a bound, not a value
_BOUNDS = (("at", "least"), ("at", "most"), ("less", "than"), ("more", "than"),
           ("fewer", "than"), ("greater", "than"), ("up", "to"))
# outside plain text (an equation, LaTeX), the rules that are certain anywhere
_INLINE_SCALE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s+(hundred|thousand|million|billion|trillion)s?\b",
                           re.IGNORECASE)
_INLINE_PERCENT = re.compile(r"(\d)\s*(?:percent|per cent|pct)\b", re.IGNORECASE)
_INLINE_RANGE = re.compile(r"\d\s*(?:\bto\b|\bor\b|–|—)\s*[-+$]?\d", re.IGNORECASE)

_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<frac>\d+/\d+)(?![\w/])"
    r"|(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?![\w/])"
    r"|(?P<word>[A-Za-z]+(?:['’][A-Za-z]+)*)(?!\d)"
    r"|(?P<pct>%)"
    r"|(?P<dash>[-–—])"
    r"|(?P<cur>[$€£])"
    r"|(?P<punct>[,;:.!?\"'()])"
    r"|(?P<other>.)", re.DOTALL)


@dataclass
class _Item:
    """One token: a number (its value, whether it was folded, a percent), a word or a mark."""

    kind: str  # num, word, pct, dash, punct
    text: str
    start: int
    end: int
    value: Fraction | None = None
    folded: bool = False
    percent: bool = False
    spaced: bool = True  # whitespace before it


def _tokens(text: str) -> list[_Item] | None:
    """Return the answer's tokens, or None when it holds anything but numbers, words and plain marks."""
    items: list[_Item] = []
    spaced = True
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "other":
            return None
        if kind == "space":
            spaced = True
            continue
        raw = match.group()
        if kind in ("num", "frac"):
            top, _, bottom = raw.replace(",", "").partition("/")
            if bottom and int(bottom) == 0:
                return None
            value = Fraction(int(top), int(bottom)) if bottom else Fraction(top)
            items.append(_Item("num", raw.replace(",", ""), match.start(), match.end(), value,
                               spaced=spaced))
        elif kind == "cur":  # a currency sign joins its number: the spacing before it counts
            continue
        elif kind == "pct":
            items.append(_Item("pct", raw, match.start(), match.end(), spaced=spaced))
        else:
            items.append(_Item(kind, raw.lower() if kind == "word" else raw, match.start(),
                               match.end(), spaced=spaced))
        spaced = False
    return items


def _signs(items: list[_Item]) -> list[_Item]:
    """Join a dash right before a number, not after one, to the number as its sign."""
    out: list[_Item] = []
    for item in items:
        prev = out[-1] if out else None
        if (item.kind == "num" and not item.spaced and prev is not None and prev.kind == "dash"
                and prev.text == "-" and (len(out) < 2 or out[-2].kind != "num" or prev.spaced)):
            out.pop()
            item = _Item("num", "-" + item.text, prev.start, item.end,
                         -(item.value or Fraction(0)), spaced=prev.spaced)
        out.append(item)
    return out


def _whole(item: _Item) -> bool:
    return item.kind == "num" and item.value is not None and item.value.denominator == 1 \
        and "/" not in item.text and "." not in item.text


def _fold(items: list[_Item]) -> list[_Item]:
    """Fold digit groups, mixed numbers, scale words and percents into the number they make."""
    out: list[_Item] = []
    i = 0
    while i < len(items):
        item = items[i]
        if item.kind != "num" or item.value is None:
            out.append(item)
            i += 1
            continue
        value, end = item.value, i
        sign = -1 if value < 0 else 1
        # 1 000 000: digits grouped by spaces
        if _whole(item) and len(item.text.lstrip("-")) <= 3:
            while (end + 1 < len(items) and _whole(items[end + 1]) and items[end + 1].spaced
                   and len(items[end + 1].text) == 3 and not items[end + 1].text.startswith("-")):
                end += 1
                value = value * 1000 + sign * (items[end].value or 0)
        # 3 1/2, 2 and 1/2, 2 and a half, 4 and three quarters
        nxt = items[end + 1:end + 4]
        if _whole(items[end]) or end > i:
            if nxt and nxt[0].kind == "num" and "/" in nxt[0].text and 0 < (nxt[0].value or 0) < 1:
                value, end = value + sign * (nxt[0].value or 0), end + 1
            elif len(nxt) >= 2 and nxt[0].text == "and" and nxt[1].kind == "num" and \
                    "/" in nxt[1].text and 0 < (nxt[1].value or 0) < 1:
                value, end = value + sign * (nxt[1].value or 0), end + 2
            elif len(nxt) >= 3 and nxt[0].text == "and" and nxt[1].text in _COUNTS and \
                    nxt[2].text in _PARTS:
                part = _COUNTS[nxt[1].text] * _PARTS[nxt[2].text]
                if part < 1:
                    value, end = value + sign * part, end + 3
        # 3 million, 1.5 billion, 3 hundred thousand
        while end + 1 < len(items) and items[end + 1].text in _SCALES:
            end += 1
            value *= _SCALES[items[end].text]
        # 20%, 20 percent, 20 per cent
        percent = False
        if end + 1 < len(items) and items[end + 1].kind == "pct":
            percent, end = True, end + 1
        elif end + 1 < len(items) and items[end + 1].text in ("percent", "pct"):
            percent, end = True, end + 1
        elif end + 2 < len(items) and items[end + 1].text == "per" and items[end + 2].text == "cent":
            percent, end = True, end + 2
        changed = value != item.value
        out.append(item if end == i else _Item(
            "num", item.text, item.start, items[end].end, value, folded=changed, percent=percent,
            spaced=item.spaced))
        i = end + 1
    return out


def _number_text(value: Fraction) -> str:
    """Return a value as math-verify reads it exactly: an integer, a finite decimal, else p/q."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    with localcontext() as context:
        context.prec = 60
        return format(Decimal(value.numerator) / Decimal(value.denominator), "f")


def _shown(item: _Item) -> str:
    return (_number_text(item.value) if item.folded and item.value is not None else item.text) \
        + ("%" if item.percent else "")


def _undecided(items: list[_Item]) -> bool:
    """Tell whether the answer is a range, a bound, two quantities, or two numbers side by side: no single
    value."""
    numbers = [k for k, item in enumerate(items) if item.kind == "num"]
    words = [item.text for item in items if item.kind == "word"]
    for k in numbers:
        before = tuple(item.text for item in items[max(0, k - 2):k])
        if any(before[-2:] == bound for bound in _BOUNDS):
            return True
    if len(numbers) < 2:
        return False
    for a, b in zip(numbers, numbers[1:], strict=False):
        between = items[a + 1:b]
        if any(item.kind == "dash" for item in between):
            return True  # 10-12, 10 – 12
        if not between:
            return True  # 3 4: side by side
    return bool(words)  # 5 hours 30 minutes, 10 to 12, 3 dollars and 50 cents


@lru_cache(maxsize=65536)
def read_numbers(answer: str) -> str | None:
    """Return an answer with its worded numbers written as numbers, or UNDECIDED (None).

    Args:
        answer: a final answer, stripped of its closing full stop.

    Returns:
        The answer unchanged when it holds no worded number or is not plain words and numbers;
        the number alone (``"3000000"``, ``"20%"``) when it starts the answer and only words
        follow; the answer with its folded numbers written out when words come first; None
        when no single value can be read (a range, a bound, two quantities).
    """
    text = answer.replace("\\%", "%")
    for char, written in _VULGAR.items():
        text = text.replace(char, written)
    tokens = _tokens(text)
    if tokens is None:
        return _inline(answer)
    items = _fold(_signs(tokens))
    numbers = [item for item in items if item.kind == "num"]
    if not numbers:
        return answer
    if _undecided(items):
        return UNDECIDED
    if len(numbers) > 1:  # a list of bare numbers, "1, 2": math-verify reads tuples and sets
        return answer
    number = numbers[0]
    first = next(k for k, item in enumerate(items) if item.kind != "punct")
    if items[first] is number:
        return _shown(number)
    if not number.folded and not number.percent:
        return answer
    return text[:number.start] + _shown(number) + text[number.end:]


def _inline(answer: str) -> str | None:
    """Text that is not plain words and numbers: scale and percent words written out, a range
    undecided, the rest unchanged."""
    if _INLINE_RANGE.search(answer):
        return UNDECIDED
    text = _INLINE_PERCENT.sub(r"\1%", answer)

    def scaled(match: re.Match[str]) -> str:
        return _number_text(Fraction(match.group(1)) * _SCALES[match.group(2).lower()])

    return _INLINE_SCALE.sub(scaled, text)

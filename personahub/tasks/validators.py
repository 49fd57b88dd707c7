"""Building blocks of the semantic checks that run after schema validation.

They catch what a schema cannot: a tool named by a keyword, a math problem that asks nothing, a
conversation of one real turn. A check takes the stored content and returns the first issue or
None. Generated code and tools are data: nothing here executes what they name.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping

from personahub.personas.quality import QualityIssue, letter_share, word_count

MIN_INSTRUCTION_CHARS = 15
MIN_INSTRUCTION_WORDS = 3
MIN_LETTER_SHARE = 0.5  # letters among the non-space characters of a free text
MIN_PROBLEM_WORDS = 8
MIN_TURNS = 2
MIN_TITLE_CHARS = 3
MIN_BODY_WORDS = 8
MIN_BODY_CHARS = 40

Content = Mapping[str, object]

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# one argument: NAME, NAME: TYPE, NAME (TYPE ...), NAME = DEFAULT, NAME: TYPE = DEFAULT
_ARG = re.compile(r"\*{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:(?::|\()\s*\S.*|=\s*\S.*)?",
                  re.DOTALL)
_NO_ARGS = frozenset({"", "none", "no arguments", "no args", "()", "-", "n/a"})
_ASKS = re.compile(
    r"\b(?:what|why|how|find|calculate|compute|determine|prove|show that|solve|evaluate|estimate|"
    r"express|simplify|deduce|decide|identify|explain why|work out|figure out|is it possible|"
    r"list all|arrange)\b", re.IGNORECASE)
_QUANTITY = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
    r"forty|fifty|hundred|thousand|million|billion|half|halves|third|quarter|twice|thrice|double|"
    r"triple|dozen|percent|percentage|ratio|rate|fraction|average|mean|median|sum|total|product|"
    r"difference|number|probability|area|volume|length|distance|speed|angle|perimeter|radius|"
    r"many|much)\b", re.IGNORECASE)


def squash(value: object) -> str:
    """Return a field's value as text with runs of whitespace made single spaces."""
    return " ".join(str(value or "").split())


def has_letters(value: object) -> bool:
    """Whether a field's value says anything (has a letter)."""
    return any(c.isalpha() for c in str(value or ""))


def free_text_issue(text: str, what: str, min_chars: int, min_words: int) -> QualityIssue | None:
    """Length and letters of a free text (an instruction, a problem statement)."""
    if len(text) < min_chars or word_count(text) < min_words:
        limits = [f"{min_chars} characters"] if min_chars else []
        limits += [f"{min_words} words"] if min_words else []
        return QualityIssue("too_short", f"the {what} is under {' or '.join(limits)}")
    if letter_share(text) < MIN_LETTER_SHARE:
        return QualityIssue("few_letters", f"under {MIN_LETTER_SHARE:.0%} of the {what} is letters")
    return None


# --------------------------------------------------------------------------- tools


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated entries (commas inside brackets belong to a type)."""
    entries: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            entries.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    entries.append("".join(current).strip())
    return entries


def _json_args_issue(text: str) -> str | None:
    """Arguments given as JSON: {"name": "type"} or [{"name": ..., "type": ...}] or ["name"]."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return "input_args looks like JSON but does not parse"
    return _structured_args_issue(data)


def _structured_args_issue(data: object) -> str | None:
    """Arguments as a JSON value, as the release also has them."""
    if isinstance(data, dict):
        names = list(data.get("properties", data))
    elif isinstance(data, list):
        names = [d.get("name") if isinstance(d, dict) else d for d in data]
    else:
        return "input_args JSON is neither an object nor a list"
    bad = [n for n in names if not isinstance(n, str) or not IDENTIFIER.fullmatch(n)
           or keyword.iskeyword(n)]
    return f"argument names {bad[:3]} are not identifiers" if bad else None


def args_issue(value: object) -> str | None:
    """Why input_args does not read as name: type entries or JSON, or None."""
    if isinstance(value, dict | list) and value:
        return _structured_args_issue(value)
    text = str(value or "").strip()
    if text.lower() in _NO_ARGS:
        return None
    if text[0] in "[{":
        return _json_args_issue(text)
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    for entry in _split_args(text):
        match = _ARG.fullmatch(entry)
        if match is None:
            return f"argument {entry!r} is not 'name' or 'name: type'"
        if keyword.iskeyword(match.group("name")):
            return f"argument name {match.group('name')!r} is a Python keyword"
    return None


# --------------------------------------------------------------------------- problems


def problem_text(content: Content) -> str:
    """Return a problem's whole text: its facts, then its question (older items hold both in problem)."""
    return " ".join(part for part in (squash(content.get("problem")),
                                      squash(content.get("question"))) if part)


def problem_issue(content: Content, *, needs_quantity: bool) -> QualityIssue | None:
    """Check a problem statement can be answered: long enough, a question, a quantity if asked."""
    text = problem_text(content)
    issue = free_text_issue(text, "problem", 0, MIN_PROBLEM_WORDS)
    if issue:
        return issue
    if not text.rstrip(" \"'’”)]").endswith("?") and not _ASKS.search(text):
        return QualityIssue("not_a_question", "asks nothing: no '?' and no find / what / how many "
                                              "/ calculate / prove ...")
    if needs_quantity and not _QUANTITY.search(text):
        return QualityIssue("no_quantity", "a math problem without a number or a quantity")
    return None

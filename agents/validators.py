"""Semantic checks of generated items, one small validator per emission kind and synthesis task.

The model seam already validates every answer against its Pydantic schema; these run after it
and catch what a schema cannot: a tool whose ``function_name`` is a keyword, a "math problem"
that asks nothing, a conversation of one real turn. A validator takes the stored content (the
schema's ``model_dump(by_alias=True)``) and returns the first ``QualityIssue`` or None.
Generated code and tool specs are data: nothing here executes or imports what they name.

``EMISSION_VALIDATORS`` (simulation kinds) and ``TASK_VALIDATORS`` (synthesis tasks) map names to
validators; ``check_emission`` / ``check_item`` look them up. The thresholds are the constants
below.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Callable, Mapping
from typing import Any

from personahub.personas.quality import QualityIssue, letter_share, word_count

MIN_INSTRUCTION_CHARS = 15
MIN_INSTRUCTION_WORDS = 3
MIN_LETTER_SHARE = 0.5  # letters among the non-space characters of a free text
MIN_PROBLEM_WORDS = 8
MIN_TURNS = 2
MIN_TITLE_CHARS = 3
MIN_BODY_WORDS = 8
MIN_BODY_CHARS = 40

Content = Mapping[str, Any]
Validator = Callable[[Content], QualityIssue | None]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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


def _text(value: Any) -> str:
    return " ".join(str(value or "").split())


def _has_letters(value: Any) -> bool:
    return any(c.isalpha() for c in str(value or ""))


def _free_text_issue(text: str, what: str, min_chars: int, min_words: int) -> QualityIssue | None:
    """Length and letters of a free text (an instruction, a problem statement)."""
    if len(text) < min_chars or word_count(text) < min_words:
        return QualityIssue("too_short", f"the {what} is under {min_chars} characters or "
                                         f"{min_words} words")
    if letter_share(text) < MIN_LETTER_SHARE:
        return QualityIssue("few_letters", f"under {MIN_LETTER_SHARE:.0%} of the {what} is letters")
    return None


# --------------------------------------------------------------------------- instruction


def check_instruction(content: Content) -> QualityIssue | None:
    """An instruction (emission or synthesis item) of non-trivial length."""
    return _free_text_issue(_text(content.get("instruction")), "instruction",
                            MIN_INSTRUCTION_CHARS, MIN_INSTRUCTION_WORDS)


# --------------------------------------------------------------------------- dialogue


def check_npc_line(content: Content) -> QualityIssue | None:
    """An NPC dialogue emission: the speaker is the agent; its line must say something."""
    if not _has_letters(content.get("line")):
        return QualityIssue("empty_line", "the dialogue line is empty")
    return None


def check_npc_profile(content: Content) -> QualityIssue | None:
    """A synthesized NPC: a name and a non-empty line."""
    if not _has_letters(content.get("name")):
        return QualityIssue("no_name", "the NPC has no name")
    if not _has_letters(content.get("line")):
        return QualityIssue("empty_line", "the NPC's line is empty")
    return None


def check_neighbour_conversation(content: Content) -> QualityIssue | None:
    """A conversation emission: at least ``MIN_TURNS`` turns that say something."""
    turns = [t for t in content.get("turns") or [] if _has_letters(t.get("line"))]
    if len(turns) < MIN_TURNS:
        return QualityIssue("too_few_turns", f"under {MIN_TURNS} non-empty turns")
    return None


def check_multi_turn(content: Content) -> QualityIssue | None:
    """A synthesized conversation: user turns only, or user/assistant pairs, at least two."""
    if "turns" in content:
        pairs = content.get("turns") or []
        said = [t for t in pairs if _has_letters(t.get("user")) and _has_letters(t.get("assistant"))]
        if len(said) < len(pairs):
            return QualityIssue("empty_turn", "a turn has an empty user or assistant message")
        count = len(said)
    else:
        count = sum(_has_letters(t) for t in content.get("user_turns") or [])
    if count < MIN_TURNS:
        return QualityIssue("too_few_turns", f"under {MIN_TURNS} non-empty turns")
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
    if isinstance(data, dict):
        names = list(data.get("properties", data))
    elif isinstance(data, list):
        names = [d.get("name") if isinstance(d, dict) else d for d in data]
    else:
        return "input_args JSON is neither an object nor a list"
    bad = [n for n in names if not isinstance(n, str) or not _IDENTIFIER.fullmatch(n)
           or keyword.iskeyword(n)]
    return f"argument names {bad[:3]} are not identifiers" if bad else None


def args_issue(value: Any) -> str | None:
    """Why ``input_args`` does not read as ``name: type`` entries (or JSON), or None."""
    text = str(value or "").strip()
    if text.lower() in _NO_ARGS:
        return None  # a function without arguments
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


def check_tool_spec(content: Content) -> QualityIssue | None:
    """A tool spec: identifier function name (not a keyword), name, description, typed args."""
    function = str(content.get("function_name") or "").strip()
    if not _IDENTIFIER.fullmatch(function):
        return QualityIssue("bad_identifier", f"function_name {function!r} is not a Python identifier")
    if keyword.iskeyword(function):
        return QualityIssue("keyword_identifier", f"function_name {function!r} is a Python keyword")
    if not _has_letters(content.get("name")):
        return QualityIssue("no_name", "the tool has no name")
    if not _has_letters(content.get("description")):
        return QualityIssue("no_description", "the tool has no description")
    problem = args_issue(content.get("input_args"))
    if problem:
        return QualityIssue("bad_args", problem)
    return None


# --------------------------------------------------------------------------- problems


def _problem_issue(content: Content, *, needs_quantity: bool) -> QualityIssue | None:
    text = _text(content.get("problem"))
    issue = _free_text_issue(text, "problem", 0, MIN_PROBLEM_WORDS)
    if issue:
        return issue
    if not text.rstrip(" \"'’”)]").endswith("?") and not _ASKS.search(text):
        return QualityIssue("not_a_question", "asks nothing: no '?' and no find / what / how many "
                                              "/ calculate / prove ...")
    if needs_quantity and not _QUANTITY.search(text):
        return QualityIssue("no_quantity", "a math problem without a number or a quantity")
    return None


def check_math_problem(content: Content) -> QualityIssue | None:
    """A math problem that can be answered: a question, long enough, with a quantity."""
    return _problem_issue(content, needs_quantity=True)


def check_reasoning_problem(content: Content) -> QualityIssue | None:
    """A reasoning problem that can be answered: a question, long enough."""
    return _problem_issue(content, needs_quantity=False)


# --------------------------------------------------------------------------- knowledge text


def check_knowledge_text(content: Content) -> QualityIssue | None:
    """A knowledge text: a title and a body of some length."""
    title = _text(content.get("title"))
    if len(title) < MIN_TITLE_CHARS or not _has_letters(title):
        return QualityIssue("no_title", f"the title is under {MIN_TITLE_CHARS} characters")
    return _free_text_issue(_text(content.get("text")), "body", MIN_BODY_CHARS, MIN_BODY_WORDS)


# --------------------------------------------------------------------------- registries

EMISSION_VALIDATORS: dict[str, Validator] = {
    "instruction": check_instruction,
    "npc_dialogue": check_npc_line,
    "tool_spec": check_tool_spec,
    "conversation": check_neighbour_conversation,
    "math_problem": check_math_problem,
    "reasoning_problem": check_reasoning_problem,
    "knowledge_text": check_knowledge_text,
}
TASK_VALIDATORS: dict[str, Validator] = {
    "math_problem": check_math_problem,
    "reasoning_problem": check_reasoning_problem,
    "instruction": check_instruction,
    "multi_turn": check_multi_turn,
    "knowledge_text": check_knowledge_text,
    "npc": check_npc_profile,
    "tool": check_tool_spec,
}


def check_emission(kind: str, content: Content) -> QualityIssue | None:
    """The first problem of a simulation emission of ``kind`` (KeyError for an unknown kind)."""
    return EMISSION_VALIDATORS[kind](content)


def check_item(task: str, content: Content) -> QualityIssue | None:
    """The first problem of a synthesis item of ``task`` (KeyError for an unknown task)."""
    return TASK_VALIDATORS[task](content)

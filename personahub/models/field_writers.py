"""How the offline engine writes a string field, chosen by the field's name.

The engine sees field names only. Its own rules name a writer (a TextMaker method) for the names
it knows; an output kind may declare writers for its own field names, and the engine reads them
through a lookup it is handed (the task registry's, wired by the runtime), so nothing below the
tasks is written into when a kind is registered. check_writer is the rule a kind's writer obeys:
it may add a writer for a name the rules leave to plain sentences, never change another's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

# a TextMaker method name, or a function of the TextMaker
Writer = str | Callable[[Any], str]
# a field name's declared writer, or None when no kind declares one
FieldWriters = Callable[[str], Writer | None]
DEFAULT_WRITER = "sentence"


def writer_for(name: str, declared: FieldWriters | None = None) -> Writer:
    """Return the writer of a field: a kind's declared one, else the engine's own rule."""
    if declared is not None:
        writer = declared(name)
        if writer is not None:
            return writer
    return builtin_writer(name)


def check_writer(name: str, writer: Writer, declared: FieldWriters | None = None) -> bool:
    """Check a kind's writer for a field name; False when the field is already written so.

    Raises:
        ValueError: the writer would change how an existing field is written.
    """
    current = writer_for(name, declared)
    if current == writer:
        return False
    if (declared is not None and declared(name) is not None) or current != DEFAULT_WRITER:
        raise ValueError(f"offline engine: field {name!r} is already written by {current!r}")
    return True


@lru_cache(maxsize=1024)
def builtin_writer(name: str) -> Writer:
    """Return how the offline engine writes a field of this name by its own rules."""
    key = name.lower()
    if "function" in key and "name" in key or key in ("identifier", "func", "tool_name"):
        return "identifier"
    if key in ("relation", "relationship", "relation_label", "role_to_them"):
        return "relation"
    if "persona" in key:
        return "persona"
    if key in ("name", "title", "tool", "label"):
        return "title"
    if key in ("input_args", "args", "arguments", "parameters"):
        return "arguments"
    if key in ("return", "returns", "output"):
        return "returns"
    if key in ("depend", "depends", "dependencies"):
        return "dependencies"
    if key in ("problem", "puzzle", "exercise"):
        return "problem"
    if key in ("solution", "reasoning", "steps", "worked_solution"):
        return "solution"
    if key in ("answer", "final_answer"):
        return "answer"
    if key in ("user", "user_turn", "user_message"):
        return "request"
    if key in ("assistant", "assistant_turn", "assistant_reply"):
        return "assistant_reply"
    if key == "question":
        return "question"
    if key in ("instruction", "prompt", "request", "query", "user_prompt"):
        return "request"
    if key in ("line", "utterance", "dialogue", "message", "say", "speech", "reply"):
        return "spoken_line"
    if "description" in key or key in ("summary", "text", "content", "body", "reason"):
        return "description"
    return DEFAULT_WRITER

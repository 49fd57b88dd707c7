"""What one output kind is: the Task that simulation, synthesis and export all read.

A task holds its schema, its semantic check, the text dedup and exports look at, and the spec of
each pipeline that makes it. Export rendering has defaults here; a kind with its own shape
overrides them in a Task subclass.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from personahub.personas.quality import QualityIssue

Content = Mapping[str, Any]
Validator = Callable[[Content], QualityIssue | None]
# How the offline engine writes a string field: a TextMaker method name or a function of it.
# The engine sees field names only, so writers are per field name.
OfflineWriter = str | Callable[[object], str]


@dataclass(frozen=True, kw_only=True)
class EmissionSpec:
    """The simulation side of a kind: what the agent prompt asks."""

    prompt: str  # the agent prompt's ``## Task`` section
    addressed: bool = False  # said to a graph neighbour, as a message
    max_tokens: int | None = None  # one call's output limit (None: the fallback)


@dataclass(frozen=True, kw_only=True)
class SynthesisSpec:
    """The synthesis side of a kind: its listing and the prompt's task text, for every prompting mode."""

    summary: str
    instruction: str
    needs_world: bool = False
    solvable: bool = False  # ``--solve`` asks for a worked solution afterwards
    max_tokens: int | None = None  # None: the emission's limit, else the fallback
    schema: type[BaseModel] | None = None  # None: the task's schema


@dataclass(frozen=True)
class Criterion:
    """One yes/no question the judge answers about an item; some apply only to solved items."""

    name: str
    question: str
    needs_solution: bool = False


# What the judge asks of a kind that states no criteria of its own.
DEFAULT_CRITERIA: tuple[Criterion, ...] = (
    Criterion("coherent", "The item is coherent, complete and makes sense on its own."),
    Criterion("fits_kind", "The item is what its kind asks for, not something else."),
)

# A problem's output limit is twice what prose needs: a small model may write only digits (one
# character a token) and must still close the JSON; 640 tokens leave 560 characters, above the
# 350-550 of the shipped demonstrations.
PROBLEM_MAX_TOKENS = 640

# What the paper measured of its math problems (96.5% of 200 valid), for problem kinds.
PROBLEM_CRITERIA: tuple[Criterion, ...] = (
    Criterion("well_posed", "The problem is stated completely and unambiguously: everything it "
                            "needs is given and the question is clear."),
    Criterion("solvable", "The problem has a definite answer that can be worked out from what it "
                          "states."),
    Criterion("solution_correct", "The given solution is correct and reaches the right answer.",
              needs_solution=True),
)


def _joined_values(content: Content) -> str:
    return " ".join(str(v) for v in content.values())


@dataclass(frozen=True, kw_only=True)
class Task:
    """One output kind, for every pipeline that makes or exports it."""

    name: str  # the kind's one name everywhere: scenarios, tables, exports
    schema: type[BaseModel]
    check: Validator  # the semantic check after schema validation
    describe: Callable[[Content], str] = _joined_values  # the content's searchable text
    description: str = ""  # Persona Hub's description in exports ("": the name, spaced)
    emission: EmissionSpec | None = None
    synthesis: SynthesisSpec | None = None
    offline_writers: Mapping[str, OfflineWriter] = field(default_factory=dict)
    # For kinds whose item answers a request: chat exports hold the request as the user turn.
    # None when the item is itself the user's turn (an instruction, a problem).
    chat_request: str | None = None
    judge_criteria: tuple[Criterion, ...] = DEFAULT_CRITERIA

    def criteria_for(self, *, has_solution: bool) -> tuple[Criterion, ...]:
        """Return the judge's criteria for one item (solution criteria only when it has a solution)."""
        return tuple(c for c in self.judge_criteria if has_solution or not c.needs_solution)

    def gate(self, value: BaseModel) -> str | None:
        """Return the check as the model call takes it: a rejected answer earns one fresh sample."""
        issue = self.check(value.model_dump(by_alias=True))
        return None if issue is None else str(issue)

    # -- text ----------------------------------------------------------------------------------
    def text(self, content: Content) -> str:
        """Return the text near-duplicate detection, diversity and exports look at."""
        return self.describe(content)

    def emission_text(self, content: Content) -> str:
        """Return the text of an emission as a run stores it."""
        return self.text(content)

    # -- simulation ----------------------------------------------------------------------------
    def agent_prompt(self) -> str:
        """Return the agent prompt's task section (KeyError when agents do not emit this kind)."""
        if self.emission is None:
            raise KeyError(self.name)
        return self.emission.prompt

    def addressed_content(self, content: dict[str, object], text: str, speaker: str,
                          listener: str) -> tuple[dict[str, object], str]:
        """(content to store, text sent to the listener) of an emission said to a neighbour.

        ``content`` is shared by every message of a pool (``sim/message_rows.py``): return new
        content rather than change it.
        """
        return content, text

    # -- synthesis -----------------------------------------------------------------------------
    def synthesis_spec(self) -> SynthesisSpec:
        """Return the synthesis side (KeyError when synthesis jobs do not make this kind)."""
        if self.synthesis is None:
            raise KeyError(self.name)
        return self.synthesis

    def synthesis_schema(self, *, with_assistant: bool = False) -> type[BaseModel]:
        """Return the schema a synthesis job asks for."""
        if self.synthesis is not None and self.synthesis.schema is not None:
            return self.synthesis.schema
        return self.schema

    def synthesis_instruction(self, *, with_assistant: bool = False) -> str:
        """Return the synthesis prompt's task text (before the few-shot note)."""
        return self.synthesis_spec().instruction

    # -- export --------------------------------------------------------------------------------
    @property
    def export_description(self) -> str:
        """Persona Hub's description field of an exported item."""
        return self.description or self.name.replace("_", " ")

    def chat_messages(self, content: Content, solution: Mapping[str, object] | None = None, *,
                      persona: str = "") -> list[dict[str, str]]:
        """Chat messages, user first; the assistant turn is the item when it answers a request,
        else a solution, else absent."""
        if self.chat_request is not None:
            ask = f"You are this person: {persona.strip()}\n\n{self.chat_request}" \
                if persona.strip() else self.chat_request
            return [{"role": "user", "content": ask},
                    {"role": "assistant", "content": self.text(content)}]
        messages = [{"role": "user", "content": self.text(content)}]
        if solution:
            messages.append({"role": "assistant",
                             "content": f"{solution['solution']}\n\nAnswer: {solution['answer']}"})
        return messages

    def chat_tools(self, content: Content) -> list[dict[str, object]] | None:
        """OpenAI tools for a chat-format row, when the item describes tools."""
        return None

    def personahub_text(self, content: Content, text: str) -> str:
        """Persona Hub's synthesized text of an item."""
        return text


def json_text(content: Content) -> str:
    """Return an item's content as JSON text (the searchable text of kinds without a prose field)."""
    return json.dumps(content, ensure_ascii=False)

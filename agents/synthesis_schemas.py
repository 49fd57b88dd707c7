"""Pydantic schemas for persona-driven synthesis tasks (one per task) and their plain text.

Each task asks the model for one object; ``SYNTH_SCHEMAS`` maps task names to schemas so jobs,
exports and tests select tasks by name. The tool task reuses Persona Hub's tool shape
(``agents.tool_schema.ToolSpec``): a function interface that is data only and never executed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from personahub.agents.tool_schema import ToolSpec
from pydantic import BaseModel, Field

_ARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MathProblem(BaseModel):
    """A challenging math word problem set in the persona's world (no solution)."""

    problem: str = Field(min_length=8, description="the full problem statement")


class ReasoningProblem(BaseModel):
    """A logical reasoning problem (puzzle, deduction) shaped by the persona (no solution)."""

    problem: str = Field(min_length=8, description="the full problem statement")


class InstructionItem(BaseModel):
    """One user prompt the persona would type to an AI assistant."""

    instruction: str = Field(min_length=8, description="the user prompt, in the persona's voice")


class UserTurns(BaseModel):
    """A multi-turn conversation, user side only: each turn follows up on the previous one."""

    user_turns: list[str] = Field(min_length=2, max_length=5,
                                  description="what the user types, turn by turn")


class ChatTurn(BaseModel):
    """One exchange: the user's message and the assistant's answer to it."""

    user: str = Field(min_length=2, description="what the user types")
    assistant: str = Field(min_length=2, description="the assistant's reply")


class Conversation(BaseModel):
    """A multi-turn conversation with both sides; pairs keep user/assistant alternating."""

    turns: list[ChatTurn] = Field(min_length=2, max_length=5)


class KnowledgeText(BaseModel):
    """A knowledge-rich text (an explainer or article) the persona would write or want."""

    title: str = Field(min_length=2)
    text: str = Field(min_length=8, description="the body of the text")


class NpcProfile(BaseModel):
    """A game non-player character: the persona projected into the given game world."""

    name: str = Field(min_length=2, description="the character's name in the world")
    role: str = Field(min_length=2, description="their place in the world (faction, trade)")
    description: str = Field(min_length=8, description="background and motivations")
    line: str = Field(min_length=2, description="what they say when the player meets them")


class Solution(BaseModel):
    """A worked solution to a synthesized problem (second pass, ``--solve``)."""

    solution: str = Field(min_length=2, description="the reasoning, step by step")
    answer: str = Field(min_length=1, description="the final answer, short")


class InferredPersona(BaseModel):
    """Text-to-persona: who would likely read, write or need the given text."""

    persona: str = Field(min_length=8, description="one sentence describing that person")


SYNTH_SCHEMAS: dict[str, type[BaseModel]] = {
    "math_problem": MathProblem,
    "reasoning_problem": ReasoningProblem,
    "instruction": InstructionItem,
    "multi_turn": UserTurns,
    "knowledge_text": KnowledgeText,
    "npc": NpcProfile,
    "tool": ToolSpec,
}
SOLVABLE_TASKS = frozenset({"math_problem", "reasoning_problem"})


def schema_for(task: str, *, with_assistant: bool = False) -> type[BaseModel]:
    """The schema a task asks for (multi_turn with assistant turns uses ``Conversation``)."""
    if task == "multi_turn" and with_assistant:
        return Conversation
    return SYNTH_SCHEMAS[task]


def content_of(value: BaseModel) -> dict[str, Any]:
    """The stored JSON content of an answer (tool keys as in Persona Hub: ``return``)."""
    return value.model_dump(by_alias=True)


def item_text(task: str, content: dict[str, Any]) -> str:
    """The text of an item that near-duplicate detection, diversity and exports look at."""
    if task in ("math_problem", "reasoning_problem"):
        return content["problem"]
    if task == "instruction":
        return content["instruction"]
    if task == "multi_turn":
        if "turns" in content:
            return "\n".join(t["user"] for t in content["turns"])
        return "\n".join(content["user_turns"])
    if task == "knowledge_text":
        return f"{content['title']}\n\n{content['text']}"
    if task == "npc":
        head = f"{content['name']} ({content['role']}): {content['description']}"
        return f"{head} \"{content['line']}\""
    return json.dumps(content, ensure_ascii=False)


def chat_turns(task: str, content: dict[str, Any],
               solution: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """Chat messages (user first, roles alternating) for an item; assistant only when known."""
    if task == "multi_turn":
        if "turns" in content:
            messages = []
            for turn in content["turns"]:
                messages += [{"role": "user", "content": turn["user"]},
                             {"role": "assistant", "content": turn["assistant"]}]
            return messages
        # user-only turns: one user message holding the conversation's opening turn
        return [{"role": "user", "content": content["user_turns"][0]}]
    messages = [{"role": "user", "content": item_text(task, content)}]
    if solution:
        messages.append({"role": "assistant",
                         "content": f"{solution['solution']}\n\nAnswer: {solution['answer']}"})
    return messages


def tool_to_openai_function(tool: ToolSpec | dict[str, Any]) -> dict[str, Any]:
    """Persona Hub's tool shape as an OpenAI function-calling tool (a description, not code).

    ``input_args`` is free text ("city, date" or "year: int"); each identifier before an optional
    ``:`` type becomes a required string parameter.
    """
    data = tool.model_dump(by_alias=True) if isinstance(tool, ToolSpec) else dict(tool)
    params: dict[str, Any] = {}
    for chunk in str(data.get("input_args", "")).split(","):
        match = _ARG.search(chunk.split(":")[0])
        if match and match.group(0) not in params:
            params[match.group(0)] = {"type": "string", "description": chunk.strip()}
    description = str(data.get("description", ""))
    if data.get("return"):
        description += f" Returns: {data['return']}"
    return {
        "type": "function",
        "function": {
            "name": data["function_name"],
            "description": description.strip(),
            "parameters": {"type": "object", "properties": params, "required": list(params)},
        },
    }

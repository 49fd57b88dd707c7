"""Agent reflections (Generative Agents' term): a short summary in the agent's voice that replaces
its keyword summary. A failed one changes nothing and counts as a failure of the step.
"""

from __future__ import annotations

from typing import Any

from personahub.agents.prompts.agent import reflection_messages
from personahub.agents.prompts.budget import PromptBudget
from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.sim.memory import AgentMemory
from personahub.tasks.reflection import Reflection

PURPOSE = "reflection"
REFLECTION_MAX_TOKENS = 200  # two or three sentences


async def reflect(llm: StructuredCaller, memory: AgentMemory, *, persona: str, persona_id: str,
                  step: int, budget: PromptBudget) -> StructuredResult[Any]:
    """Ask the model for one agent's reflection at a step (memory is only read)."""
    messages = reflection_messages(persona=persona, summary=memory.summary_lines(),
                                   memory=memory.reflection_material(step + 1), budget=budget)
    return await llm.structured(Reflection, messages, purpose=PURPOSE, persona_id=persona_id,
                                step=step, max_tokens=REFLECTION_MAX_TOKENS)


def apply_reflection(memory: AgentMemory, step: int, result: StructuredResult[Any]) -> str | None:
    """Apply a reflection's result; the error (memory unchanged) when it has no valid value."""
    if result.value is None:
        last = result.records[-1] if result.records else None
        return getattr(last, "error", None) or "no valid reflection"
    memory.reflected(step, result.value.summary)
    return None

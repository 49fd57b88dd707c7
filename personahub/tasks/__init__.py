"""One module per output kind, and the registry every pipeline looks kinds up in.

A kind's module holds everything about it as one Task. Adding a kind is one module plus one
register line below; registration order is listing order.
"""

from __future__ import annotations

from personahub.tasks import (
    conversation,
    instruction,
    knowledge_text,
    math_problem,
    multi_turn,
    npc,
    npc_dialogue,
    reasoning_problem,
    tool_spec,
)
from personahub.tasks.base import Content, Criterion, EmissionSpec, SynthesisSpec, Task
from personahub.tasks.registry import (
    UnknownTaskError,
    addressed_kinds,
    emission_kinds,
    emission_task,
    get,
    register,
    stored_task,
    synthesis_names,
    synthesis_task,
    tasks,
    unregister,
)

register(math_problem.TASK)
register(reasoning_problem.TASK)
register(instruction.TASK)
register(multi_turn.TASK)
register(knowledge_text.TASK)
register(npc.TASK)
register(tool_spec.TASK)
register(npc_dialogue.TASK)
register(conversation.TASK)

__all__ = ["Content", "Criterion", "EmissionSpec", "SynthesisSpec", "Task",
           "UnknownTaskError", "addressed_kinds", "emission_kinds", "emission_task",
           "get", "register", "stored_task", "synthesis_names", "synthesis_task", "tasks",
           "unregister"]

"""Output limits (``max_tokens``) of the output kinds, which a kind's caller passes its model call.

The model layer knows no kinds, so each call carries its own limit (``--max-tokens`` overrides
it); calls that are no kind's state their own limit beside their purpose.
"""

from __future__ import annotations

from personahub.models.generation import FALLBACK_MAX_TOKENS
from personahub.tasks.registry import stored_task


def kind_max_tokens(kind: str) -> int:
    """Return the output limit of a call emitting a kind.

    Args:
        kind: an emission kind (e.g. ``instruction``).

    Returns:
        The task's emission limit, else the model layer's fallback.
    """
    task = stored_task(kind, emission=True)
    if task is not None and task.emission and task.emission.max_tokens:
        return task.emission.max_tokens
    return FALLBACK_MAX_TOKENS


def synthesis_max_tokens(task_name: str) -> int:
    """Return the output limit of a synthesis call for a task.

    Args:
        task_name: a registered task's name.

    Returns:
        The task's synthesis limit, else its emission limit, else the fallback.
    """
    task = stored_task(task_name, emission=False)
    if task is not None and task.synthesis and task.synthesis.max_tokens:
        return task.synthesis.max_tokens
    if task is not None and task.emission and task.emission.max_tokens:
        return task.emission.max_tokens
    return FALLBACK_MAX_TOKENS

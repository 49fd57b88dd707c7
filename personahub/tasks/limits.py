"""Output limits (``max_tokens``) of the output kinds: what a kind's caller passes its model call.

The model layer knows no kinds or purposes: a call carries its own ``max_tokens``, which
``--max-tokens`` overrides (``models.generation``). A kind's limits are in its task
(``personahub/tasks/``); the calls that are no kind's (surveys, decisions, judging, ...) state
their own limit as a constant beside their purpose (issue 43).
"""

from __future__ import annotations

from personahub.models.generation import FALLBACK_MAX_TOKENS
from personahub.tasks.registry import stored_task


def kind_max_tokens(kind: str) -> int:
    """The output limit of a call emitting ``kind``: its task's emission limit.

    Args:
        kind: an emission kind (e.g. ``instruction``).

    Returns:
        The task's emission ``max_tokens``, else the model layer's fallback (an unknown kind, or a
        task without a limit).
    """
    task = stored_task(kind, emission=True)
    if task is not None and task.emission and task.emission.max_tokens:
        return task.emission.max_tokens
    return FALLBACK_MAX_TOKENS


def synthesis_max_tokens(task_name: str) -> int:
    """The output limit of a synthesis call for ``task_name`` (e.g. ``math_problem``).

    Args:
        task_name: a registered task's name.

    Returns:
        The task's synthesis ``max_tokens``, else its emission limit, else the model layer's
        fallback.
    """
    task = stored_task(task_name, emission=False)
    if task is not None and task.synthesis and task.synthesis.max_tokens:
        return task.synthesis.max_tokens
    if task is not None and task.emission and task.emission.max_tokens:
        return task.emission.max_tokens
    return FALLBACK_MAX_TOKENS

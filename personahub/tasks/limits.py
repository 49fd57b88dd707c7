"""Default output limits (``max_tokens``) by purpose: what each caller passes its model call.

The model layer knows no kinds or purposes: a call carries its own ``max_tokens``,
which ``--max-tokens`` overrides (``models.generation``). This table is where the callers take
theirs from: an output kind's limits are in its task (``personahub/tasks/``), the other calls'
here. Sized for the JSON with room to spare, small enough that a runaway generation ends soon.
"""

from __future__ import annotations

from personahub.models.generation import FALLBACK_MAX_TOKENS
from personahub.tasks.registry import stored_task

# Output tokens per call by purpose (the part of the purpose before ':'), for calls that are not
# an output kind's.
DEFAULT_MAX_TOKENS: dict[str, int] = {
    "survey": 160,
    "reflection": 200,
    "decide": 120,
    "interview": 240,
    # persona fields are bounded at one character a token (a small model's runaway: see
    # personas/expand.py), so these leave room for the worst case at the default fanout / per-text
    "expand": 800,
    "text-to-persona": 400,
    "text_to_persona": 400,
    "write_persona": 240,  # two or three sentences about one person (pipelines/prompts/population.py)
    "solve": 600,
    "equivalence": 60,  # a yes/no on two final answers (pipelines/prompts/evaluate.py)
    "judge": 400,  # a verdict and a one-sentence reason per criterion (pipelines/prompts/judge.py)
}


def default_max_tokens(purpose: str) -> int:
    """The default output limit for a call made for ``purpose`` (e.g. ``synth:math_problem``).

    An emission kind's call (purpose: the kind) takes its task's limit; a synthesis call
    (``synth:TASK``) the task's synthesis limit, else its emission limit; any other purpose its
    entry in ``DEFAULT_MAX_TOKENS`` (by the part before ':'), else the model layer's fallback.

    Args:
        purpose: the call's purpose label, as it is passed to ``structured``.

    Returns:
        The ``max_tokens`` to pass with the call (``--max-tokens`` still overrides it).
    """
    head, _, rest = purpose.partition(":")
    if head == "synth":
        task = stored_task(rest, emission=False)
        if task is not None and task.synthesis and task.synthesis.max_tokens:
            return task.synthesis.max_tokens
        if task is not None and task.emission and task.emission.max_tokens:
            return task.emission.max_tokens
        return DEFAULT_MAX_TOKENS.get(rest, FALLBACK_MAX_TOKENS)
    task = stored_task(head, emission=True)
    if task is not None and task.emission and task.emission.max_tokens:
        return task.emission.max_tokens
    return DEFAULT_MAX_TOKENS.get(head, FALLBACK_MAX_TOKENS)

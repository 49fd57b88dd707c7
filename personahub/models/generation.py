"""Generation limits: every model call carries ``max_tokens``; sampling settings are explicit.

A request without ``max_tokens`` may generate until the server's context is full (llama.cpp
servers do exactly that), so each output kind has a default sized for its schema, and
``--max-tokens`` overrides them all. These settings are part of the cache key and of a job's
stored config.
"""

from __future__ import annotations

from dataclasses import dataclass

from personahub.core.validate import check_max_tokens, check_optional_number
from personahub.tasks import stored_task

# Output tokens per call by purpose (the part of the purpose before ':'), for calls that are not
# an output kind's; each kind's limits are in its task (``personahub/tasks/``). Sized for the JSON
# with room to spare, small enough that a runaway generation ends soon.
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
    "judge": 400,  # a verdict and a one-sentence reason per criterion (pipelines/prompts/judge.py)
}
FALLBACK_MAX_TOKENS = 512


@dataclass(frozen=True, kw_only=True)
class Generation:
    """``max_tokens`` (None: per-purpose default), ``temperature`` and ``top_p`` for every call."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        check_max_tokens(self.max_tokens)  # stored in an INTEGER column: bounded (core.validate)
        check_optional_number(self.temperature, "--temperature", low=0, high=2)
        check_optional_number(self.top_p, "--top-p", above=0, high=1)

    def max_tokens_for(self, purpose: str) -> int:
        """The ``max_tokens`` a call for ``purpose`` carries."""
        if self.max_tokens is not None:
            return self.max_tokens
        return default_max_tokens(purpose)


def default_max_tokens(purpose: str) -> int:
    """The default output limit for a call made for ``purpose`` (e.g. ``synth:math_problem``).

    An emission kind's call (purpose: the kind) takes its task's limit; a synthesis call
    (``synth:TASK``) the task's synthesis limit, else its emission limit.
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

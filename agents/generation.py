"""Generation limits: every model call carries ``max_tokens``; sampling settings are explicit.

A request without ``max_tokens`` may generate until the server's context is full (llama.cpp
servers do exactly that), so each output kind has a default sized for its schema, and
``--max-tokens`` overrides them all. These settings are part of the cache key and of a job's
stored config.
"""

from __future__ import annotations

from dataclasses import dataclass

from personahub.personas.errors import PersonahubError

# Output tokens per call by purpose (the part of the purpose before ':'); sized for the JSON of
# each kind with room to spare, small enough that a runaway generation ends soon.
DEFAULT_MAX_TOKENS: dict[str, int] = {
    "instruction": 256,
    "npc_dialogue": 200,
    "tool_spec": 400,
    "conversation": 450,
    "math_problem": 320,
    "reasoning_problem": 320,
    "knowledge_text": 600,
    "survey": 160,
    "expand": 400,
    "text-to-persona": 200,
    "text_to_persona": 200,
    "solve": 600,
}
FALLBACK_MAX_TOKENS = 512
SYNTH_MAX_TOKENS: dict[str, int] = {"multi_turn": 600, "npc": 400, "knowledge_text": 700, "tool": 450}


@dataclass(frozen=True, kw_only=True)
class Generation:
    """``max_tokens`` (None: per-purpose default), ``temperature`` and ``top_p`` for every call."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise PersonahubError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise PersonahubError(f"--temperature must be within [0, 2], got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise PersonahubError(f"--top-p must be within (0, 1], got {self.top_p}")

    def max_tokens_for(self, purpose: str) -> int:
        """The ``max_tokens`` a call for ``purpose`` carries."""
        if self.max_tokens is not None:
            return self.max_tokens
        return default_max_tokens(purpose)


def default_max_tokens(purpose: str) -> int:
    """The default output limit for a call made for ``purpose`` (e.g. ``synth:math``)."""
    head, _, rest = purpose.partition(":")
    if head == "synth":
        return SYNTH_MAX_TOKENS.get(rest, DEFAULT_MAX_TOKENS.get(rest, FALLBACK_MAX_TOKENS))
    return DEFAULT_MAX_TOKENS.get(head, FALLBACK_MAX_TOKENS)

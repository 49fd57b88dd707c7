"""Generation limits: every model call carries a token limit; sampling settings are explicit.

Without one a llama.cpp server generates until its context is full, so each call passes a limit
sized for its schema, --max-tokens overrides them all, and a fallback covers calls that pass none.
These settings are part of the cache key and the job's config.
"""

from __future__ import annotations

from dataclasses import dataclass

from personahub.core.engine_options import check_fields, default

# the limit of a call that passes none
FALLBACK_MAX_TOKENS = 512


@dataclass(frozen=True, kw_only=True)
class Generation:
    """The token limit (None: each call's own), temperature and top-p for every call."""

    max_tokens: int | None = default("max_tokens")
    temperature: float | None = default("temperature")
    top_p: float | None = default("top_p")

    def __post_init__(self) -> None:
        check_fields(self)  # max_tokens is stored in an INTEGER column: bounded

    def max_tokens_for(self, asked: int | None) -> int:
        """Return the limit a call carries: --max-tokens, else the call's own, else the fallback."""
        if self.max_tokens is not None:
            return self.max_tokens
        return FALLBACK_MAX_TOKENS if asked is None else asked

"""How the model is reached and called, and the seam's configuration errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personahub.core.engine_options import check_fields, default
from personahub.core.errors import ResumableStop, UsageError
from personahub.core.validate import check_seed
from personahub.models.adaptive_limit import Concurrency, concurrency_bound
from personahub.models.generation import Generation
from personahub.models.structured import STRUCTURED_SETTINGS, StructuredSetting


class LLMConfigError(UsageError):
    """The --llm spec or its environment is unusable: a usage error."""


class LLMUnavailable(ResumableStop):
    """The model endpoint cannot be reached: the job stops, resumably."""


class EndpointFailing(LLMUnavailable):
    """A call's transient failures outlasted its retry budget: the job stops, resumably."""


class Stalled(LLMUnavailable):
    """No model call completed for the stall bound: the job stops, resumably."""


# a call's retry budget: two timed-out attempts or nine fast errors, at most 150 s
DEFAULT_MAX_RETRIES = 8
CALL_BUDGET_TIMEOUTS = 2
CALL_BUDGET_SLACK_S = 30.0
STALL_SLACK_S = 30.0


def call_budget_s(timeout_s: float) -> float:
    """Seconds one call may spend before its failures stop the job."""
    return CALL_BUDGET_TIMEOUTS * timeout_s + CALL_BUDGET_SLACK_S


def stall_bound_s(timeout_s: float, rps: float | None = None) -> float:
    """Seconds without a completed call that mean a stalled job."""
    return call_budget_s(timeout_s) + STALL_SLACK_S + (1 / rps if rps else 0.0)


@dataclass(frozen=True, kw_only=True)
class LLMSettings:
    """How to reach and call the model."""

    spec: str = default("llm")
    seed: int = 0
    timeout_s: float = default("timeout_s")
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_s: float = 0.5
    concurrency: Concurrency = default("concurrency")
    structured: StructuredSetting = default("structured")
    max_tokens: int | None = default("max_tokens")
    temperature: float | None = default("temperature")
    top_p: float | None = default("top_p")
    offline_latency_s: float = default("offline_latency_s")
    rps: float | None = default("rps")

    @classmethod
    def of_job(cls, config: Any, **overrides: object) -> LLMSettings:
        """Return the settings of a job config with the usual model fields, plus overrides."""
        fields = {"spec": config.llm, "seed": config.seed, "concurrency": config.concurrency,
                  "timeout_s": config.timeout_s, "structured": config.structured,
                  "max_tokens": config.max_tokens, "temperature": config.temperature,
                  "top_p": config.top_p, "rps": config.rps,
                  "offline_latency_s": config.offline_latency_s}
        return cls(**{**fields, **overrides})

    def __post_init__(self) -> None:
        try:
            check_seed(self.seed)
            check_fields(self)  # the engine options' own checks; concurrency parsed
        except UsageError as exc:
            raise LLMConfigError(str(exc)) from None
        if self.max_retries < 0:
            raise LLMConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.structured not in STRUCTURED_SETTINGS:
            raise LLMConfigError(f"--structured {self.structured!r}: use one of "
                                 f"{', '.join(STRUCTURED_SETTINGS)}")

    @property
    def call_budget_s(self) -> float:
        return call_budget_s(self.timeout_s)

    @property
    def stall_bound_s(self) -> float:
        """A call's budget, plus slack for a free slot and a rate token."""
        return stall_bound_s(self.timeout_s, self.rps)

    @property
    def max_in_flight(self) -> int:
        """The most calls in flight (an HTTP pool's size)."""
        return concurrency_bound(self.concurrency)

    @property
    def generation(self) -> Generation:
        return Generation(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)

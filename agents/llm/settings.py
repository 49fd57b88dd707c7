"""How the model is reached and called (``LLMSettings``), and the seam's configuration errors.

Plain data, validated on construction, safe to log once the spec is redacted; every layer of the
seam (``personahub.core.contracts``) is built from one of these by
``agents.llm.client.make_client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personahub.agents.llm.adaptive_limit import Concurrency, concurrency_bound
from personahub.agents.llm.generation import Generation
from personahub.agents.llm.offline import OFFLINE_MODEL_NAME
from personahub.agents.llm.structured import STRUCTURED_SETTINGS, StructuredSetting
from personahub.core.errors import ResumableStop, UsageError
from personahub.core.validate import check_number, check_optional_number, check_seed


class LLMConfigError(UsageError):
    """The --llm spec or its environment is unusable: a usage error (the CLI exits 2)."""


class LLMUnavailable(ResumableStop):
    """The model endpoint cannot be reached (connection refused, DNS failure...): a job stops,
    resumable."""


@dataclass(frozen=True, kw_only=True)
class LLMSettings:
    """How to reach and call the model; plain data, safe to log once redacted."""

    spec: str = OFFLINE_MODEL_NAME
    seed: int = 0
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    concurrency: Concurrency = 16
    structured: StructuredSetting = "auto"
    max_tokens: int | None = None  # None: per output kind (agents.llm.generation)
    temperature: float | None = None
    top_p: float | None = None
    offline_latency_s: float = 0.0
    rps: float | None = None

    def __post_init__(self) -> None:
        try:  # every job's client is built here: one check of these for all of them
            check_seed(self.seed)
            check_optional_number(self.rps, "--rps", above=0)
            check_number(self.timeout_s, "--timeout", above=0)
            check_number(self.offline_latency_s, "--offline-latency", low=0)
        except UsageError as exc:
            raise LLMConfigError(str(exc)) from None
        object.__setattr__(self, "concurrency", parse_concurrency(self.concurrency))
        if self.max_retries < 0:
            raise LLMConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.structured not in STRUCTURED_SETTINGS:
            raise LLMConfigError(f"--structured {self.structured!r}: use one of "
                                 f"{', '.join(STRUCTURED_SETTINGS)}")
        self.generation  # noqa: B018 - validates max_tokens, temperature and top_p

    @property
    def max_in_flight(self) -> int:
        """The most calls in flight this setting allows (an HTTP pool's size)."""
        return concurrency_bound(self.concurrency)

    @property
    def generation(self) -> Generation:
        """Output limit and sampling settings of every call."""
        return Generation(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)


def parse_concurrency(value: Any) -> Concurrency:
    """``value`` as a concurrency setting: an integer >= 1 or ``auto`` (a one-line error else)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = int(text)
        except ValueError:
            raise LLMConfigError(f"--concurrency {value!r}: give a number >= 1 or 'auto'") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LLMConfigError(f"--concurrency must be >= 1 or 'auto', got {value!r}")
    return value

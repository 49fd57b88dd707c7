"""The one seam to language models: the client factory and the client it returns, a stack of layers
with one interface (accounting, validation, cache, retries, limits, failover, endpoints).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from personahub.core.call_spill import RecordSink, SinkSlot
from personahub.core.contracts import (
    CallRecord,
    CallRequest,
    Endpoint,
    ModelEndpoint,
    StructuredResult,
)
from personahub.models.bounds import bounded, unbounded
from personahub.models.cache import ResponseCache
from personahub.models.concurrency_limit import ConcurrencyLimit
from personahub.models.embedders import EmbedderSettings, OpenAIEmbedder
from personahub.models.endpoint_specs import (
    make_endpoints,
    redact_spec,
    spec_size,
    with_spec_seed,
)
from personahub.models.failures import FailFast
from personahub.models.field_writers import FieldWriters
from personahub.models.liveness import Liveness
from personahub.models.offline import OFFLINE_MODEL_NAME
from personahub.models.option_logprobs import OptionProbabilities, option_probabilities
from personahub.models.seam_accounting import Accounted, CallStats
from personahub.models.seam_cache import CUT_OFF, Cached
from personahub.models.seam_failover import DEAD_ENDPOINT_COOLDOWN_S, Failover
from personahub.models.seam_limits import Limited, RateLimiter
from personahub.models.seam_retry import Retrying
from personahub.models.seam_validate import Validated
from personahub.models.settings import LLMConfigError, LLMSettings, LLMUnavailable
from personahub.models.structured import ModeBook

T = TypeVar("T", bound=BaseModel)
__all__ = ["CUT_OFF", "DEAD_ENDPOINT_COOLDOWN_S", "CallRecord", "CallStats", "LLMClient",
           "LLMConfigError", "LLMSettings", "LLMUnavailable", "RateLimiter", "StructuredResult",
           "check_reachable", "make_client", "redact_spec", "resolve_spec"]


class LLMClient:
    """The stack's top: validated structured answers with their call records."""

    def __init__(self, settings: LLMSettings, endpoints: Sequence[Endpoint] | None = None, *,
                 field_writers: FieldWriters | None = None) -> None:
        settings = with_spec_seed(settings)  # offline?seed=N: the offline engine, seed N
        self.settings = settings
        self.generation = settings.generation
        self.modes = ModeBook(settings.structured,
                              len(endpoints) if endpoints is not None else spec_size(settings.spec))
        self.endpoints = (list(endpoints) if endpoints is not None
                          else make_endpoints(settings, self.modes, field_writers))
        self._build()

    def _build(self) -> None:
        settings, caps = self.settings, [e.capabilities for e in self.endpoints]
        fail_fast = FailFast(len(self.endpoints))
        self._failover = Failover(self.endpoints, fail_fast=fail_fast)
        below: ModelEndpoint = self._failover
        self._limits: Limited | None = None
        in_process = all(c.in_process for c in caps)
        if settings.rps or not in_process:
            below = self._limits = Limited(below, rps=settings.rps,
                                           concurrency=None if in_process else settings.concurrency)
        self._spill = SinkSlot()
        for endpoint in self.endpoints:
            if isinstance(getattr(endpoint, "spill", None), SinkSlot):
                endpoint.spill = self._spill  # type: ignore[attr-defined]
        retry = Retrying(below, max_retries=settings.max_retries, backoff_s=settings.backoff_s,
                         modes=self.modes, fail_fast=fail_fast,
                         on_timeout=self._limits.lower_on_timeout if self._limits else None,
                         budget_s=settings.call_budget_s, attempt_s=settings.timeout_s,
                         spill=self._spill)
        self._retry = retry
        self._cached = Cached(retry, params=self._cache_params)
        negotiated = not all(c.native_schemas for c in caps)
        validated = self.validated = Validated(self._cached, modes=self.modes if negotiated
                                               else None, spill=self._spill)
        self._top = Accounted(validated, liveness=Liveness(settings.stall_bound_s),
                              spill=self._spill)
        self.stats = self._top.stats
        self.liveness = self._top.liveness

    def spill_to(self, sink: RecordSink | None) -> None:
        """Hand every attempt to a sink once final (None: stop), so a kill loses no billed attempt."""
        self._spill.sink = sink

    @property
    def label(self) -> str:
        return self._failover.label

    @property
    def is_offline(self) -> bool:
        return all(e.capabilities.deterministic for e in self.endpoints)

    @property
    def cache_model(self) -> str:
        return ",".join(sorted({e.model_name for e in self.endpoints}))

    @property
    def cache(self) -> ResponseCache | None:
        return self._cached.cache

    @property
    def _semaphore(self) -> ConcurrencyLimit | None:
        return self._limits.slots if self._limits is not None else None

    def use_cache(self, cache: ResponseCache | None) -> None:
        """Answer from and record into a cache from now on (None: off)."""
        self._cached.cache = cache

    @property
    def uncached(self) -> ModelEndpoint:
        return self._retry

    def answer_misses_with(self, below: ModelEndpoint | None) -> None:
        """Send cache misses to other layers (a Ray run keeps the cache on the driver)."""
        self._cached.inner = below if below is not None else self._retry

    def _cache_params(self, max_tokens: int) -> dict[str, object]:
        """Return what besides the conversation decides an answer."""
        settings = self.settings
        params: dict[str, object] = {"structured": settings.structured, "max_tokens": max_tokens,
                                  "temperature": settings.temperature, "top_p": settings.top_p}
        if self.is_offline:
            params["seed"] = settings.seed
        return params

    def mark_down(self, index: int, seconds: float = DEAD_ENDPOINT_COOLDOWN_S) -> None:
        """Skip an endpoint for some seconds (it refused a connection)."""
        self._failover.mark_down(index, seconds)

    def structured_modes(self) -> dict[str, str]:
        return {e.label: e.current_mode() for e in self.endpoints}

    def concurrency_report(self) -> dict[str, object]:
        """Return the concurrency asked for and the limit it came to."""
        if self._limits is None or self._limits.concurrency is None:
            return {"setting": self.settings.concurrency, "final": None, "peak": None}
        return self._limits.report()

    async def structured(self, schema: type[T], messages: list[Any], *, purpose: str,
                         persona_id: str | None = None, step: int | None = None,
                         check: Callable[[T], str | None] | None = None, sample: int = 0,
                         max_tokens: int | None = None) -> StructuredResult[T]:
        """Ask for an instance of a schema; the value is None when every attempt failed. A rejected answer
        earns one fresh sample.
        """
        request = self.request_for(schema, messages, purpose=purpose, persona_id=persona_id,
                                   step=step, check=check, sample=sample, max_tokens=max_tokens)
        result = await self._top.call(request)
        if result.value is not None:
            result.value = unbounded(result.value, schema)
        return result

    async def option_probabilities(self, messages: list[Any], labels: Sequence[str], *,
                                   purpose: str, persona_id: str | None = None,
                                   top_logprobs: int = 20) -> StructuredResult[OptionProbabilities]:
        """Each label's probability as the answer's first token; raises without log-probabilities."""
        return await option_probabilities(self, messages, labels, purpose=purpose,
                                          persona_id=persona_id, top_logprobs=top_logprobs)

    def request_for(self, schema: type[T], messages: list[Any], *, purpose: str,
                    persona_id: str | None = None, step: int | None = None,
                    check: Callable[[T], str | None] | None = None, sample: int = 0,
                    max_tokens: int | None = None) -> CallRequest:
        """Return the request a structured call (or a batch) sends. Further samples use even numbers: odd ones
        are for
        a weak answer's fresh sample.
        """
        max_tokens = self.generation.max_tokens_for(max_tokens)
        return CallRequest(bounded(schema, max_tokens), messages, purpose, max_tokens,
                           persona_id, step, check=check, sample=sample)


@overload
def make_client(settings: LLMSettings, *, field_writers: FieldWriters | None = None) -> LLMClient: ...
@overload
def make_client(settings: EmbedderSettings, *,
                field_writers: FieldWriters | None = None) -> OpenAIEmbedder: ...


def make_client(settings: LLMSettings | EmbedderSettings, *,
                field_writers: FieldWriters | None = None) -> LLMClient | OpenAIEmbedder:
    """Build the client the settings' type names.

    Args:
        settings: a chat model's settings, or an embedder's.
        field_writers: where the offline engine reads output kinds' writers for their own
            field names (the task registry's offline_writer; the runtime hands it).

    Returns:
        An LLMClient, or an OpenAIEmbedder for embedder settings.
    """
    if isinstance(settings, EmbedderSettings):
        return OpenAIEmbedder.of(settings)
    return LLMClient(settings, field_writers=field_writers)


def resolve_spec(cli_value: str | None) -> str:
    """Resolve the spec from --llm, else PERSONAHUB_LLM, else offline; an empty --llm is refused."""
    if cli_value is not None and not cli_value.strip():
        raise LLMConfigError("--llm is empty: give 'offline', 'openai:<model>' or a URL "
                             "(an unset shell variable?)")
    return cli_value or os.environ.get("PERSONAHUB_LLM") or OFFLINE_MODEL_NAME


def check_reachable(client: LLMClient, timeout_s: float = 5.0) -> list[str]:
    """Fail fast with one line when no HTTP endpoint answers; returns the labels of unreachable ones."""
    import httpx

    down: list[str] = []
    failure: BaseException | None = None
    for index, endpoint in enumerate(client.endpoints):
        if endpoint.capabilities.in_process:
            continue
        url = (endpoint.base_url or "https://api.openai.com/v1").rstrip("/") + "/models"
        try:
            httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            down.append(endpoint.label)
            failure = exc
            client.mark_down(index)
    if failure is not None and len(down) == len(client.endpoints):
        where = getattr(client.endpoints[0], "setting", None) or "--llm / PERSONAHUB_LLM"
        raise LLMUnavailable(f"model endpoint {down[0]} is unreachable ({type(failure).__name__}); "
                             f"check {where}") from failure
    return down

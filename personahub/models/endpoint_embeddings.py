"""OpenAI-compatible embeddings through the seam's policy: the texts travel as a call request's messages
under the same layers as chat calls, with record/replay per text.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from personahub.core.call_spill import RecordSink, SinkSlot
from personahub.core.contracts import (
    CallRequest,
    Capabilities,
    StructuredResult,
    token_count,
)
from personahub.models.attempts import failed
from personahub.models.cache import ResponseCache
from personahub.models.failures import FailFast
from personahub.models.liveness import Liveness
from personahub.models.seam_accounting import Accounted
from personahub.models.seam_embed_cache import EmbeddingCached
from personahub.models.seam_failover import Failover
from personahub.models.seam_limits import Limited
from personahub.models.seam_retry import Retrying
from personahub.models.settings import LLMConfigError, LLMSettings
from personahub.models.structured import ModeBook

if TYPE_CHECKING:
    from openai import AsyncOpenAI

EMBED_PURPOSE = "embed"
#: what a stopped embedding job tells the user to check (it has no --llm)
EMBED_SERVER = "--embedder (OPENAI_BASE_URL)"


class EmbeddingVectors(BaseModel):
    """The vectors of one batch of texts, in the texts' order."""

    vectors: list[list[float]]


class EmbeddingEndpoint:
    """One embeddings endpoint; its SDK client is built per event loop."""

    capabilities = Capabilities()
    setting = "--embedder / OPENAI_BASE_URL"  # what an unreachable one's error line points to

    def __init__(self, *, model_name: str, base_url: str | None, make_client: Callable[[], AsyncOpenAI],
                 timeout_s: float, index: int = 0) -> None:
        self.model_name, self.base_url, self.timeout_s, self.index = model_name, base_url, timeout_s, index
        self.label = f"openai:{model_name}"
        self._make_client = make_client
        self._client: tuple[asyncio.AbstractEventLoop, AsyncOpenAI] | None = None

    def current_mode(self) -> str:
        """Embeddings have no structured mode."""
        return "embeddings"

    def _client_now(self) -> AsyncOpenAI:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client[0] is not loop:  # pools belong to one loop
            self._client = (loop, self._make_client())
        return self._client[1]

    async def openai_client(self) -> AsyncOpenAI:
        """Return the running loop's SDK client (what a Batch API session asks of an endpoint)."""
        return self._client_now()

    async def aclose(self) -> None:
        """Close the running loop's HTTP client before the loop closes."""
        held, self._client = self._client, None
        if held is not None and held[0] is asyncio.get_running_loop():
            await held[1].close()

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """Return the vectors of the request's texts."""
        record = request.record(model=self.label, endpoint=self.index, max_tokens=None)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client_now().embeddings.create(
                    model=self.model_name, input=list(request.messages))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            return failed(record, exc, started)
        record.latency_ms = (time.perf_counter() - started) * 1000
        record.status = "ok"
        record.tokens_in = token_count(getattr(response.usage, "prompt_tokens", 0) or 0)
        rows = sorted(response.data, key=lambda d: d.index)
        vectors = EmbeddingVectors.model_construct(vectors=[list(d.embedding) for d in rows])
        return StructuredResult(vectors, [record])


def openai_embedding_endpoint(model: str, settings: LLMSettings) -> EmbeddingEndpoint:
    """Return the endpoint for an OpenAI model (OPENAI_API_KEY; OPENAI_BASE_URL honoured)."""
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise LLMConfigError("openai embedder: OPENAI_API_KEY is not set")
    base = os.environ.get("OPENAI_BASE_URL") or None
    if base:
        from personahub.models.endpoint_specs import refuse_url_credentials

        refuse_url_credentials(base, "OPENAI_BASE_URL")

    def client() -> AsyncOpenAI:
        from openai import AsyncOpenAI

        return AsyncOpenAI(api_key=key, base_url=base, timeout=settings.timeout_s, max_retries=0)

    return EmbeddingEndpoint(model_name=model, base_url=base, make_client=client,
                             timeout_s=settings.timeout_s)


class EmbeddingClient:
    """Embeds batches through retry, limits and accounting; records come back with each batch."""

    def __init__(self, endpoint: EmbeddingEndpoint, settings: LLMSettings) -> None:
        self.endpoint = endpoint
        self.endpoints = [endpoint]
        self._failover = Failover([endpoint])
        limited = Limited(self._failover, concurrency=settings.concurrency, rps=settings.rps)
        self._spill = SinkSlot()
        retry = Retrying(limited, max_retries=settings.max_retries, backoff_s=settings.backoff_s,
                         modes=ModeBook("prompt", 1), fail_fast=FailFast(1),
                         on_timeout=limited.lower_on_timeout,
                         budget_s=settings.call_budget_s, attempt_s=settings.timeout_s,
                         spill=self._spill, server=EMBED_SERVER)
        self._cached = EmbeddingCached(retry, make_value=lambda v: EmbeddingVectors.model_construct(
            vectors=v))
        self._top = Accounted(self._cached,
                              liveness=Liveness(settings.stall_bound_s, server=EMBED_SERVER),
                              spill=self._spill)
        self.stats = self._top.stats
        self.liveness = self._top.liveness

    def spill_to(self, sink: RecordSink | None) -> None:
        """Hand every attempt to a sink once final (None: stop), so a kill loses no billed attempt."""
        self._spill.sink = sink

    @property
    def cache_model(self) -> str:
        """The model name cached vectors are keyed under."""
        return self.endpoint.model_name

    def use_cache(self, cache: ResponseCache | None) -> None:
        """Answer from and record into a cache from now on (None: off)."""
        self._cached.cache = cache

    def mark_down(self, index: int, seconds: float | None = None) -> None:
        """Skip an endpoint for a while (a reachability check found it down)."""
        self._failover.mark_down(index, seconds)

    async def aclose(self) -> None:
        """Close the endpoint's HTTP client on the loop that used it."""
        await self.endpoint.aclose()

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]] | None, StructuredResult[Any]]:
        """Return the vectors (None when every attempt failed) and the result with its records and cache
        entries. A call that raises carries its records on the exception.
        """
        request = CallRequest(EmbeddingVectors, list(texts), EMBED_PURPOSE, 0)
        result = await self._top.call(request)
        value = result.value
        return (value.vectors if value is not None else None), result

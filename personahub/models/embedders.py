"""Embedders as the model seam builds them: a factory for every spec, and an OpenAI embeddings model
behind the seam's policy that a dedup job checks, caches and accounts like a chat model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from personahub.core.call_spill import RecordSink
from personahub.core.contracts import CallStats, StructuredResult, carry_records
from personahub.core.engine_options import check_fields, default
from personahub.core.errors import PersonahubError
from personahub.core.loop import run as run_on_loop
from personahub.models.cache import ResponseCache
from personahub.models.endpoint_embeddings import (
    EmbeddingClient,
    EmbeddingEndpoint,
    EmbeddingVectors,
    openai_embedding_endpoint,
)
from personahub.models.liveness import Liveness
from personahub.models.settings import LLMConfigError, LLMSettings
from personahub.personas.embedding import (
    Embedder,
    check_embedder_spec,
    normalise,
    offline_embedder,
)
from personahub.personas.writing_systems import ANY_SCRIPT

__all__ = ["EMBED_MAX_RETRIES", "EmbedderSettings", "OpenAIEmbedder", "calls_model",
           "make_embedder"]

EMBED_MAX_RETRIES = 3  # an embedding request is cheap to ask again; a stage stops soon after


def calls_model(spec: str) -> bool:
    """Whether an embedder spec calls a model."""
    return spec.strip().partition(":")[0].lower() == "openai"


@dataclass(frozen=True, kw_only=True)
class EmbedderSettings:
    """How to reach an embedding model."""

    spec: str
    rps: float | None = default("rps")
    timeout_s: float = default("timeout_s")
    max_retries: int = EMBED_MAX_RETRIES

    def __post_init__(self) -> None:
        if not calls_model(self.spec):
            raise LLMConfigError(f"embedder {self.spec!r}: only openai:<model> calls a model")
        if not self.spec.partition(":")[2].strip():
            raise LLMConfigError("embedder 'openai' needs a model, e.g. "
                                 "openai:text-embedding-3-small")
        LLMSettings(timeout_s=self.timeout_s, max_retries=self.max_retries, rps=self.rps)


@dataclass
class OpenAIEmbedder:
    """OpenAI (or compatible) embeddings through the model seam's policy: a dedup job's model client, a
    call record per attempt, record/replay per text.
    """

    model: str
    batch_size: int = 256
    timeout_s: float = default("timeout_s")
    max_retries: int = EMBED_MAX_RETRIES
    rps: float | None = None
    name: str = field(init=False)
    scripts: frozenset[str] | None = field(default=ANY_SCRIPT, init=False)  # multilingual models
    _client: EmbeddingClient | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_fields(self)  # the timeout and the rate, as the engine options check them
        self.name = f"openai:{self.model}"

    @classmethod
    def of(cls, settings: EmbedderSettings) -> OpenAIEmbedder:
        """Return the embedder some settings describe."""
        return cls(model=settings.spec.partition(":")[2].strip(), timeout_s=settings.timeout_s,
                   max_retries=settings.max_retries, rps=settings.rps)

    def _get_client(self) -> EmbeddingClient:
        if self._client is None:
            settings = LLMSettings(timeout_s=self.timeout_s, max_retries=self.max_retries,
                                   rps=self.rps)
            self._client = EmbeddingClient(openai_embedding_endpoint(self.model, settings), settings)
        return self._client

    async def embed_with_results(self, texts: Sequence[str]
                                 ) -> tuple[np.ndarray, list[StructuredResult[EmbeddingVectors]]]:
        """Normalised vectors of texts and the requests' results, in batches. A request that fails for good
        raises, its attempts' records on the exception.
        """
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), []
        client = self._get_client()
        out: list[list[float]] = []
        results: list[StructuredResult[EmbeddingVectors]] = []
        for lo in range(0, len(texts), self.batch_size):
            vectors, result = await client.embed(texts[lo : lo + self.batch_size])
            results.append(result)
            if vectors is None:
                error = PersonahubError(f"{self.name}: embedding failed ({result.records[-1].error})")
                carry_records(error, [r for done in results for r in done.records])
                raise error
            out.extend(vectors)
        return normalise(np.asarray(out, dtype=np.float32)), results

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed via the API in batches from synchronous code; re-normalised locally."""

        async def once() -> tuple[np.ndarray, list[StructuredResult[EmbeddingVectors]]]:
            try:
                return await self.embed_with_results(list(texts))
            finally:
                await self.aclose()

        return run_on_loop(once())[0]

    async def aclose(self) -> None:
        """Close the HTTP client on the loop that used it (before that loop closes)."""
        if self._client is not None:
            await self._client.aclose()

    @property
    def endpoints(self) -> list[EmbeddingEndpoint]:
        """The seam's endpoint (its model name tags the call log)."""
        return self._get_client().endpoints

    @property
    def cache_model(self) -> str:
        """The name cached vectors are stored under: the embedding model's."""
        return self.model

    @property
    def stats(self) -> CallStats:
        return self._get_client().stats

    @property
    def liveness(self) -> Liveness:
        """The seam's watch on completed calls (the stall watchdog reads it)."""
        return self._get_client().liveness

    def spill_to(self, sink: RecordSink | None) -> None:
        """Every attempt to a sink once final (None: stop)."""
        self._get_client().spill_to(sink)

    def use_cache(self, cache: ResponseCache | None) -> None:
        """Answer from and record into a cache of vectors."""
        self._get_client().use_cache(cache)

    def mark_down(self, index: int, seconds: float | None = None) -> None:
        """Skip an endpoint for a while (a reachability check found it down)."""
        self._get_client().mark_down(index, seconds)


def make_embedder(spec: str, *, rps: float | None = None) -> Embedder:
    """Any embedder from its spec: hash, local or openai. An unknown spec is a usage error."""
    check_embedder_spec(spec)
    if calls_model(spec):
        try:
            return OpenAIEmbedder.of(EmbedderSettings(spec=spec, rps=rps))
        except LLMConfigError as exc:
            raise PersonahubError(str(exc)) from None
    return offline_embedder(spec)

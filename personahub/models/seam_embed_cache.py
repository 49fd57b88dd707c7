"""Record/replay of embeddings, one cache entry per text.

An embedding depends only on the model and one text, so a replay hits whatever batches the texts come
in and a text is never sent twice. Failures are not cached: a failed batch stops the job.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from personahub.core.contracts import CacheEntry, CallRecord, CallRequest, ModelEndpoint, StructuredResult
from personahub.models.cache import CacheMiss, ResponseCache, request_hash


def embedding_request(model: str, text: str) -> dict[str, object]:
    """Return the request one cached vector answers (no URL, no credentials)."""
    return {"kind": "embedding", "model": model, "input": text}


def embedding_key(model: str, text: str) -> str:
    """Return the cache key of a text's vector under a model."""
    return request_hash(embedding_request(model, text))


def token_shares(total: int, texts: Sequence[str]) -> list[int]:
    """Return a request's prompt tokens split over its texts by length (they sum to the total)."""
    sizes = [max(1, len(t)) for t in texts]
    whole = sum(sizes)
    shares = [total * s // whole for s in sizes]
    if shares:
        shares[-1] += total - sum(shares)
    return shares


class EmbeddingCached:
    """Answers texts from a cache when it holds them; None passes calls through."""

    def __init__(self, inner: ModelEndpoint, *, make_value: Callable[[list[list[float]]], BaseModel]) -> None:
        self.inner = inner
        self.make_value = make_value
        self.cache: ResponseCache | None = None

    @property
    def label(self) -> str:
        return self.inner.label

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """Return the batch's vectors: cached ones, and the misses asked below."""
        cache = self.cache
        if cache is None:
            return await self.inner.call(request)
        texts = [str(t) for t in request.messages]
        keys = [embedding_key(cache.model, t) for t in texts]
        hits = [cache.get(k) for k in keys]
        missing = [i for i, hit in enumerate(hits) if hit is None]
        if missing and cache.mode == "replay":
            raise CacheMiss(f"--cache replay: no recorded embedding for {len(missing)} of "
                            f"{len(texts)} texts (model {cache.model!r}, first key "
                            f"{keys[missing[0]][:16]}); record them with --cache record and the "
                            "same --embedder")
        vectors: list[Any] = [json.loads(h[0]) if h is not None and h[0] else None for h in hits]
        records: list[CallRecord] = []
        if len(missing) < len(texts):
            records.append(request.record(model=cache.model, endpoint=None, cached=True, status="ok",
                                          tokens_in=sum(h[1] or 0 for h in hits if h is not None)))
        if not missing:
            return StructuredResult(self.make_value(vectors), records)
        asked = [texts[i] for i in missing]
        result = await self.inner.call(dataclasses.replace(request, messages=asked))
        records = result.records + records
        if result.value is None:
            return StructuredResult(None, records, result.raw, failure=result.failure)
        entries = self._store(cache, asked, result)
        for i, vector in zip(missing, result.value.vectors, strict=True):
            vectors[i] = vector
        return StructuredResult(self.make_value(vectors), records, cache_entries=entries)

    @staticmethod
    def _store(cache: ResponseCache, texts: list[str], result: StructuredResult[Any]) -> list[CacheEntry]:
        assert result.value is not None  # only answered calls are stored
        shares = token_shares(result.last.tokens_in or 0, texts)
        entries = [CacheEntry(embedding_key(cache.model, text), cache.model,
                              embedding_request(cache.model, text), json.dumps(vector), tokens, 0, 0)
                   for text, vector, tokens in zip(texts, result.value.vectors, shares, strict=True)]
        for entry in entries:
            cache.put(entry)
        return entries

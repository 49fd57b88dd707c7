"""Record/replay as a layer: answers from the cache, or recorded into it.

Each call takes the next sample of its request. A hit returns the stored raw answer, valid or not, so
a replay repeats repairs; a stored failure replays as a failure; a replay miss raises. New entries
come back only in the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel

from personahub.core.contracts import CallRequest, Failure, ModelEndpoint, StructuredResult
from personahub.models.cache import (
    Answer,
    CacheEntry,
    CacheMiss,
    ResponseCache,
    cache_key,
    failure_key,
    request_hash,
    request_payload,
)

# marks a cached answer the server cut off at the token limit
CUT_OFF = "finish_reason=length"
Slot = tuple[str, int, dict[str, object]]


class Cached:
    """Answers from a cache when it holds the answer; None passes calls through."""

    def __init__(self, inner: ModelEndpoint, *, params: Callable[[int], Mapping[str, object]]) -> None:
        self.inner = inner
        self.params = params  # what besides the conversation decides an answer, per token limit
        self.cache: ResponseCache | None = None

    @property
    def label(self) -> str:
        return self.inner.label

    def _slot(self, cache: ResponseCache, request: CallRequest) -> Slot:
        params = self.params(request.max_tokens)
        if request.sample:  # a fresh sample is another request
            params = {**params, "sample": request.sample}
        payload = request_payload(cache.model, request.messages, request.schema, params)
        base = request_hash(payload)
        sample = cache.next_sample(base)
        return cache_key(base, sample), sample, payload

    async def call(self, request: CallRequest) -> StructuredResult[BaseModel]:
        """Return a cached answer, a recorded one, or (replaying) a reproduced failure."""
        cache = self.cache
        if cache is None:
            return await self.inner.call(request)
        slot = self._slot(cache, request)
        hit = cache.get(slot[0])
        if hit is not None:
            return self._hit(cache, request, hit)
        if cache.mode == "replay":
            return self._replay_failure(cache, request, slot)
        result = await self.inner.call(request)
        self._store(cache, slot, result)
        return result

    def _hit(self, cache: ResponseCache, request: CallRequest, hit: Answer) -> StructuredResult[BaseModel]:
        raw, tokens_in, tokens_out, note = hit
        record = request.record(model=cache.model, endpoint=None, cached=True, tokens_in=tokens_in,
                                tokens_out=tokens_out,
                                finish_reason="length" if note == CUT_OFF else None)
        return StructuredResult(None, [record], raw)

    def _replay_failure(self, cache: ResponseCache, request: CallRequest,
                        slot: Slot) -> StructuredResult[BaseModel]:
        failed = cache.get(failure_key(slot[0]))
        if failed is None:
            raise CacheMiss(
                f"--cache replay: no recorded answer for the {request.purpose!r} call (persona "
                f"{request.persona_id}, step {request.step}, attempt {request.attempt}, sample "
                f"{slot[1]}, model {cache.model!r}, key {slot[0][:16]}); use the same --llm, --structured "
                "and --max-tokens it was recorded with, or record it with --cache record")
        # the recorded call failed for good: so does the replay
        record = request.record(model=cache.model, endpoint=None, cached=True, status="error",
                                error=failed[3])
        return StructuredResult(None, [record], None, failure=Failure(str(failed[3]), False))

    def _store(self, cache: ResponseCache, slot: Slot, result: StructuredResult[BaseModel]) -> None:
        key, sample, payload = slot
        if result.failure is None:
            record = result.last
            entry = CacheEntry(key, cache.model, payload, result.raw, record.tokens_in,
                               record.tokens_out, sample, error=CUT_OFF if result.truncated else None)
        else:
            entry = CacheEntry(failure_key(key), cache.model, payload, None, 0, 0, sample,
                               error=result.failure.description)
        cache.put(entry)
        result.cache_entries.append(entry)

"""Provider batches for an embedding model: a dedup job's embeddings requests sent as batches.

The batching embedder returns what the wrapped embedder returns online. Custom ids are digests of the
texts, so a resume collects from a stored batch instead of sending twice.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personahub.core.contracts import (
    CallRecord,
    CallRequest,
    Failure,
    StructuredResult,
    carried_records,
    carry_records,
    token_count,
)
from personahub.core.errors import PersonahubError
from personahub.core.provider_batch_records import AWAITING_RESULTS, BatchHandle
from personahub.models.embedders import OpenAIEmbedder
from personahub.models.endpoint_embeddings import EMBED_PURPOSE, EmbeddingVectors
from personahub.models.provider_batch import BatchSession, line_failure
from personahub.models.provider_batch_caller import (
    LOCAL_PREFIX,
    BatchBook,
    BatchTally,
    check_fallback,
    forget_spent,
    status_text,
    still_awaiting,
    written_for_import,
)
from personahub.models.provider_batch_lines import (
    RequestLine,
    ResultLine,
    by_custom_id,
    read_results_file,
    request_line,
)
from personahub.personas.embedding import normalise

EMBEDDINGS_URL = "/v1/embeddings"


@dataclass
class EmbedCall:
    """One embeddings request travelling by batch: its texts, attempt, records so far and, once answered,
    its vectors or the error that ended it.
    """

    key: str
    texts: list[str]
    attempt: int = 0
    records: list[CallRecord] = field(default_factory=list)
    vectors: list[list[float]] | None = None
    error: str | None = None

    @property
    def custom_id(self) -> str:
        return f"{self.key}#{self.attempt}"

    @property
    def done(self) -> bool:
        return self.vectors is not None or self.error is not None

    def request(self) -> CallRequest:
        return CallRequest(EmbeddingVectors, list(self.texts), EMBED_PURPOSE, 0,
                           attempt=self.attempt)


def embed_key(texts: Sequence[str]) -> str:
    """Return a request's key: a digest of its texts (stable across a resume)."""
    text = json.dumps(list(texts), ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


class BatchingEmbedder:
    """An embedder with its requests sent as provider batches; everything else is the embedder's."""

    def __init__(self, embedder: OpenAIEmbedder, book: BatchBook, *, job_kind: str, job_id: str,
                 window: str = "24h", fallback: str = "batch", batch_file: str | None = None,
                 poll_s: float = 5.0, max_poll_s: float = 60.0, max_resends: int = 3,
                 on_handle: Callable[[BatchHandle], None] | None = None,
                 on_status: Callable[[str], None] | None = None) -> None:
        check_fallback(fallback)
        self.embedder, self.book = embedder, book
        self.job_kind, self.job_id = job_kind, job_id
        self.fallback, self.batch_file, self.max_resends = fallback, batch_file, max_resends
        self.on_handle, self.on_status = on_handle, on_status
        endpoint = embedder.endpoints[0]
        self.label = endpoint.label
        self.session = BatchSession(None, window=window, poll_s=poll_s, max_poll_s=max_poll_s,
                                    on_handle=self._keep, wire=endpoint, lines=self._lines,
                                    url=EMBEDDINGS_URL)
        self.tally = BatchTally()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.embedder, name)

    def _keep(self, handle: BatchHandle) -> None:
        self.book.add(handle)
        if self.on_handle is not None:
            self.on_handle(handle)

    def _lines(self, calls: Sequence[EmbedCall]) -> tuple[list[RequestLine], str]:
        body = {"model": self.embedder.model}
        return ([request_line(c.custom_id, {**body, "input": list(c.texts)}, EMBEDDINGS_URL)
                 for c in calls], "embeddings")

    async def embed_with_results(self, texts: Sequence[str]
                                 ) -> tuple[np.ndarray, list[StructuredResult[EmbeddingVectors]]]:
        """Normalised vectors and one result per request, as the wrapped embedder answers. A request that
        fails for good raises, every attempt's record carried on the error.
        """
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), []
        size = self.embedder.batch_size
        calls = [EmbedCall(embed_key(texts[lo:lo + size]), list(texts[lo:lo + size]))
                 for lo in range(0, len(texts), size)]
        pending = list(calls)
        while pending:
            held: dict[str, list[EmbedCall]] = {}
            fresh = []
            for call in pending:
                handle = self.book.holding(call.custom_id)
                if handle is None:
                    fresh.append(call)
                else:
                    held.setdefault(handle.key, []).append(call)
            again: list[EmbedCall] = []
            for key, mine in held.items():
                again += await self._stored(self.book.handles[key], mine)
            if fresh:
                again += await self._submit(fresh)
            pending = again
            if pending and self.fallback == "online":
                await self._online(pending)
                pending = []
        failed = [c for c in calls if c.vectors is None]
        results = [StructuredResult(EmbeddingVectors.model_construct(vectors=c.vectors or []),
                                    c.records) for c in calls]
        if failed:
            error = PersonahubError(f"{self.embedder.name}: embedding failed ({failed[0].error})")
            carry_records(error, [r for c in calls for r in c.records])
            raise error
        vectors = [v for c in calls for v in (c.vectors or [])]
        return normalise(np.asarray(vectors, dtype=np.float32)), results

    async def _submit(self, calls: list[EmbedCall]) -> list[EmbedCall]:
        key = f"{self.job_id}:{uuid.uuid4().hex[:12]}"
        if self.batch_file is not None:
            self._keep(self.session.write_file(self.batch_file, key, calls,
                                               job_kind=self.job_kind, job_id=self.job_id))
            self.tally.created += 1
            raise written_for_import(len(calls), self.batch_file, self.job_id)
        handle = await self.session.submit(key, calls, job_kind=self.job_kind, job_id=self.job_id)
        self.tally.created += 1
        return await self._await(handle, calls)

    async def _stored(self, handle: BatchHandle, calls: list[EmbedCall]) -> list[EmbedCall]:
        if handle.status == AWAITING_RESULTS:
            raise still_awaiting(handle, self.job_id)
        self.tally.polled += 1
        handle = await self.session.resume(handle, calls)
        return await self._await(handle, calls)

    async def _await(self, handle: BatchHandle, calls: list[EmbedCall]) -> list[EmbedCall]:
        """Wait for the batch and apply its results; returns the requests to send again."""
        if not handle.done:
            self._status(handle)
            handle = await self.session.wait(handle, on_status=self._status)
        self._status(handle)
        if handle.output_file_id and handle.output_file_id.startswith(LOCAL_PREFIX):
            results = read_results_file(handle.output_file_id[len(LOCAL_PREFIX):])
        else:
            results = await self.session.results(handle)
        self.book.used.update((handle.key, c.custom_id) for c in calls)
        return self._apply(handle, calls, by_custom_id(results))

    def _apply(self, handle: BatchHandle, calls: list[EmbedCall],
               found: dict[str, ResultLine]) -> list[EmbedCall]:
        latency = (1000 * (handle.finished_at - handle.created_at)
                   if handle.finished_at is not None and handle.created_at is not None else 0.0)
        again, made = [], []
        for call in calls:
            record = call.request().record(model=self.label, endpoint=0, max_tokens=None,
                                           structured_mode="embeddings",
                                           provider_batch_id=handle.batch_id,
                                           custom_id=call.custom_id, latency_ms=latency,
                                           started_at=handle.created_at or time.time())
            call.records.append(record)
            made.append(record)
            line = found.get(call.custom_id)
            vectors = _vectors(line, len(call.texts)) if line is not None and line.answered else None
            if vectors is not None:
                assert line is not None
                record.status = "ok"
                usage = line.body.get("usage") or {}
                record.tokens_in = token_count(usage.get("prompt_tokens") or 0)
                call.vectors = vectors
                self.tally.outcomes["ok"] += 1
                continue
            failure = (line_failure(line, handle) if line is None or not line.answered
                       else Failure("HTTP 200: the body holds no vectors for the texts", True, 200))
            record.status, record.error = "error", failure.description
            if failure.retryable and call.attempt < self.max_resends:
                call.attempt += 1
                again.append(call)
                self.tally.outcomes[f"resent: {failure.description.split(':', 1)[0]}"] += 1
            else:
                call.error = failure.description
                self.tally.outcomes["failed"] += 1
        self.embedder.stats.add(made)  # online attempts are counted by the embedder's client
        return again

    async def _online(self, calls: list[EmbedCall]) -> None:
        """Return the online fallback: what the batches left, asked online."""
        for call in calls:
            self.tally.online += 1
            try:
                vectors, results = await self.embedder.embed_with_results(call.texts)
            except PersonahubError as exc:
                call.records += carried_records(exc)
                call.error = str(exc)
                continue
            call.records += [r for result in results for r in result.records]
            call.vectors = vectors.tolist()

    async def forget_spent(self) -> None:
        """Delete the provider files of the batches whose answers are committed."""
        await forget_spent(self.session, self.book, self._keep, self.tally)

    def _status(self, handle: BatchHandle) -> None:
        if self.on_status is not None:
            self.on_status(status_text(handle))


def _vectors(line: ResultLine, n: int) -> list[list[float]] | None:
    """Return the vectors of an answered line, in input order (None: not as many as asked)."""
    data = line.body.get("data") if isinstance(line.body, dict) else None
    if not isinstance(data, list) or len(data) != n:
        return None
    try:
        rows = sorted(data, key=lambda d: int(d["index"]))
        return [[float(x) for x in d["embedding"]] for d in rows]
    except (KeyError, TypeError, ValueError):
        return None

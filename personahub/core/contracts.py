"""The contracts of the model seam: what a call asks, what it returns, and what answers it.

Kept to a few imports (no LangChain, no HTTP client) so that callers, test doubles and the job
loops can type against the seam without loading it. Every layer of the seam (an endpoint, or a
wrapper around one: failover, limits, retry, cache, validation, accounting) is a
``ModelEndpoint``: it takes a ``CallRequest`` and returns a ``StructuredResult`` whose records
and cache entries travel with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)
T_co = TypeVar("T_co", bound=BaseModel, covariant=True)
#: the record/replay cache's modes (``--cache``; ``personahub/models/cache.py``)
CACHE_MODES: tuple[str, ...] = ("off", "record", "replay")


#: the most tokens one attempt can report (far past any model's context window): a figure above
#: it, below 0, or not a whole number is no real count (a broken server or proxy), and is
#: stored as unknown (``llm_calls.tokens_in``/``tokens_out`` NULL), never as itself
MAX_CALL_TOKENS = 10**9
#: ``llm_calls.status`` of an attempt recorded as it went out, whose outcome never came back (a
#: kill, a cancelled call): the server got it and a paid API bills it, its tokens are unknown
SENT = "sent"


def token_count(value: object) -> int | None:
    """A server's token figure as a count, or None (unknown) when it cannot be one: negative,
    above ``MAX_CALL_TOKENS``, not a whole number. What a server reports is data, never a
    reason for a job to stop: every figure written to ``llm_calls`` passes through here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_CALL_TOKENS:
        return value
    return None


def new_call_id() -> str:
    """16 random hex digits (a uuid4 costs several times more, and only half of it was kept)."""
    return os.urandom(8).hex()


@dataclass
class CallRecord:
    """One attempt at one model call, as written to ``llm_calls``."""

    purpose: str
    model: str
    attempt: int
    # ok | error (endpoint) | invalid (cut off, not JSON, or rejected by a check) | sent (gone
    # out, no outcome recorded: ``SENT``)
    status: str
    latency_ms: float
    # as the server reports them (0: it reported none); None: unknown, an impossible figure
    # (``token_count``) or an attempt still out
    tokens_in: int | None = 0
    tokens_out: int | None = 0
    error: str | None = None
    persona_id: str | None = None
    step: int | None = None
    cached: bool = False
    endpoint: int | None = 0
    structured_mode: str | None = None
    max_tokens: int | None = None
    finish_reason: str | None = None
    repaired: bool = False  # valid only after local repair (models.repair)
    queue_ms: float = 0.0  # waiting for a concurrency slot or rate token (not in latency_ms)
    # prompt tokens the server's prefix cache reused, as it reports them (None: not reported)
    cached_prompt_tokens: int | None = None
    # sent in a batch (models.provider_batch): the provider's batch id (or ``file:NAME`` for an
    # imported results file) and the request's custom_id there; None for online attempts
    batch_id: str | None = None
    custom_id: str | None = None
    call_id: str = field(default_factory=new_call_id)
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class CacheEntry:
    """One recorded answer, as written to ``llm_cache``."""

    key: str
    model: str
    request: Mapping[str, Any]
    response: str | None
    tokens_in: int | None  # None: unknown (as ``CallRecord``'s)
    tokens_out: int | None
    sample: int
    error: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Failure:
    """A failed attempt, described for ``llm_calls.error`` and for what happens next."""

    description: str
    retryable: bool
    status: int | None = None
    body: str = ""
    retry_after_s: float | None = None
    unreachable: bool = False
    other_endpoint_up: bool = False  # set by failover: another endpoint may answer at once
    # cut short of --timeout for taking far longer than the endpoint's recent answers
    # (``models.seam_deadlines``): asked again at once, and not a sign of overload
    straggler: bool = False

    @property
    def reason_key(self) -> str:
        """What makes two failures 'the same reason' (status and the message's start)."""
        return f"{self.status}:{self.body[:80]}"


@dataclass(frozen=True)
class CallRequest:
    """One structured call as it travels down the stack.

    ``attempt`` numbers the next attempt (layers that ask again raise it); ``after`` is the
    endpoint whose attempt just failed, so that a retry goes on to the next one. ``sample``
    is 0 for a first answer and 1 for the fresh sample a weak answer earns (``seam_validate``):
    it is part of the cache key and reaches the endpoint (an HTTP ``seed``; the offline engine's
    digest), so the second attempt is neither a cache hit nor the same request. ``check`` is
    the job's quality check of a valid answer (the reason it rejects it, or None).
    """

    schema: type[BaseModel]
    messages: Sequence[Any]  # langchain_core BaseMessage
    purpose: str
    max_tokens: int
    persona_id: str | None = None
    step: int | None = None
    attempt: int = 1
    after: int | None = None
    sample: int = 0
    check: Callable[[Any], str | None] | None = None
    stragglers: int = 0  # attempts of this call cut as stragglers so far (``seam_deadlines``)

    def record(self, **fields: Any) -> CallRecord:
        """A fresh record of one attempt at this request."""
        values: dict[str, Any] = {"purpose": self.purpose, "attempt": self.attempt,
                                  "persona_id": self.persona_id, "step": self.step,
                                  "max_tokens": self.max_tokens, "status": "", "latency_ms": 0.0}
        values.update(fields)
        return CallRecord(**values)


@dataclass
class StructuredResult(Generic[T]):
    """A validated answer (or None), the attempts it took, and the cache entries they made.

    Below the validating layer ``value`` stays None and ``raw`` is the answer text; ``failure``
    describes the last attempt when it failed in transport (None after an answer).
    """

    value: T | None
    records: list[CallRecord]
    raw: str | None = None
    cache_entries: list[CacheEntry] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def last(self) -> CallRecord:
        """The last attempt's record."""
        return self.records[-1]

    @property
    def truncated(self) -> bool:
        """True when the server cut the answer off at ``max_tokens``."""
        return bool(self.records) and self.records[-1].finish_reason == "length"


@dataclass
class CallStats:
    """Running totals of the attempts a client made (what progress displays show)."""

    attempts: int = 0
    ok: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, records: Sequence[CallRecord]) -> None:
        """Count ``records`` (a finished call's attempts)."""
        for record in records:
            self.attempts += 1
            self.tokens_in += record.tokens_in or 0
            self.tokens_out += record.tokens_out or 0
        if records:
            if records[-1].status == "ok":
                self.ok += 1
            else:
                self.failed += 1

    def rate(self) -> float:
        """Attempts per second since the client was made."""
        return self.attempts / max(1e-9, time.monotonic() - self.started)


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint can do, declared by the endpoint (so no layer asks what class it is).

    ``native_schemas``: takes the schema itself, no structured-mode negotiation;
    ``in_process``: answers in this process (no connection pool, no concurrency limit);
    ``deterministic``: the same request always gets the same answer (a resend is useless,
    and the seed is part of the cache key).
    """

    native_schemas: bool = False
    in_process: bool = False
    deterministic: bool = False


@runtime_checkable
class ModelEndpoint(Protocol):
    """An endpoint, or a wrapper with the endpoint's interface."""

    @property
    def label(self) -> str:
        """What logs call it (no credentials)."""
        ...

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """Make the call; transport failures come back in ``failure``, never raised."""
        ...


class Endpoint(ModelEndpoint, Protocol):
    """The stack's bottom: an endpoint proper, with what it serves and what it can do."""

    @property
    def model_name(self) -> str:
        """The served model's name (what the cache keys on; no URL, no credentials)."""
        ...

    base_url: str | None
    capabilities: Capabilities

    def current_mode(self) -> str:
        """The structured-output mode it is asked in now (for the run's config)."""
        ...


class CarriesCalls(Protocol):
    """Anything that carries the call records and new cache entries of the calls that made it
    (a ``StructuredResult``, an agent's outcome, a step's result): what a batch commit writes."""

    @property
    def records(self) -> Sequence[CallRecord]: ...

    @property
    def cache_entries(self) -> Sequence[CacheEntry]: ...


class ServesModels(Protocol):
    """A client as the batch commit sees it: its endpoints name the model of each call record
    (by ``CallRecord.endpoint``)."""

    @property
    def endpoints(self) -> Sequence[Endpoint]: ...


class StructuredCaller(ServesModels, Protocol):
    """The client façade the job loops and agents call (``models.LLMClient``; the tests'
    ``FakeClient``). Call records and cache entries come back with each result, nowhere else.
    A call passes its own ``max_tokens`` (None: the model layer's fallback; ``--max-tokens``
    overrides it); ``purpose`` is only a label for its records and cache key."""

    @property
    def label(self) -> str: ...

    @property
    def is_offline(self) -> bool: ...

    @property
    def cache_model(self) -> str:
        """The model name cache entries are keyed and stored under."""
        ...

    @property
    def stats(self) -> CallStats:
        """Running totals of the attempts made (what progress displays show)."""
        ...

    def use_cache(self, cache: Any) -> None:
        """Answer from (and record into) ``cache`` (an ``models.cache.ResponseCache``; None
        turns caching off)."""
        ...

    def structured_modes(self) -> dict[str, str]:
        """The structured-output mode each endpoint uses now (for the run's config)."""
        ...

    def concurrency_report(self) -> dict[str, Any]:
        """``--concurrency`` and the limit it came to (for the run's config)."""
        ...

    async def structured(self, schema: type[T], messages: list[Any], *, purpose: str,
                         persona_id: str | None = None, step: int | None = None,
                         check: Callable[[T], str | None] | None = None, sample: int = 0,
                         max_tokens: int | None = None) -> StructuredResult[T]: ...


def carry_records(exc: BaseException, earlier: Sequence[CallRecord]) -> None:
    """Put ``earlier`` attempts in front of those an exception that ends a call carries, so the
    accounting layer still counts every attempt of a call that raised."""
    exc.seam_records = [*earlier, *getattr(exc, "seam_records", [])]  # type: ignore[attr-defined]


def carried_records(exc: BaseException) -> list[CallRecord]:
    """The attempts an exception that ended a call carries (see ``carry_records``)."""
    return list(getattr(exc, "seam_records", []))

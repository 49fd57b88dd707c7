"""The contracts of the model seam: what a call asks, what it returns, and what answers it.

Kept to a few imports so callers and test doubles can type against the seam without loading it.
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
#: the record/replay cache's modes
CACHE_MODES: tuple[str, ...] = ("off", "record", "replay")


#: the most tokens one attempt can report; a larger, negative or fractional figure is stored as
#: unknown
MAX_CALL_TOKENS = 10**9
#: the status of an attempt whose outcome never came back (a kill)
SENT = "sent"


def token_count(value: object) -> int | None:
    """Return a server's token figure as a count, or None: a server's report never stops a job."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_CALL_TOKENS:
        return value
    return None


def new_call_id() -> str:
    """16 random hex digits (a uuid4 costs several times more)."""
    return os.urandom(8).hex()


@dataclass
class CallRecord:
    """One attempt at one model call, as written to llm_calls."""

    purpose: str
    model: str
    attempt: int
    # ok, error (endpoint), invalid (cut off, not JSON, rejected), sent (no outcome)
    status: str
    latency_ms: float
    # None: unknown or still out
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
    repaired: bool = False
    queue_ms: float = 0.0  # waiting for a slot or rate token
    # None: not reported
    cached_prompt_tokens: int | None = None
    # provider batch id and custom id; None online
    provider_batch_id: str | None = None
    custom_id: str | None = None
    call_id: str = field(default_factory=new_call_id)
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class CacheEntry:
    """One recorded answer, as written to llm_cache."""

    key: str
    model: str
    request: Mapping[str, Any]
    response: str | None
    tokens_in: int | None
    tokens_out: int | None
    sample: int
    error: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Failure:
    """A failed attempt, for the log and for what happens next."""

    description: str
    retryable: bool
    status: int | None = None
    body: str = ""
    retry_after_s: float | None = None
    unreachable: bool = False
    other_endpoint_up: bool = False
    # a straggler: asked again at once
    straggler: bool = False

    @property
    def reason_key(self) -> str:
        """What makes two failures the same reason (status and the message's start)."""
        return f"{self.status}:{self.body[:80]}"


@dataclass(frozen=True)
class CallRequest:
    """One structured call as it travels down the stack. A weak answer earns a fresh sample, part of the
    cache key, so the second attempt is a different request.
    """

    schema: type[BaseModel]
    messages: Sequence[Any]
    purpose: str
    max_tokens: int
    persona_id: str | None = None
    step: int | None = None
    attempt: int = 1
    after: int | None = None
    sample: int = 0
    check: Callable[[Any], str | None] | None = None
    stragglers: int = 0

    def record(self, **fields: Any) -> CallRecord:
        values: dict[str, Any] = {"purpose": self.purpose, "attempt": self.attempt,
                                  "persona_id": self.persona_id, "step": self.step,
                                  "max_tokens": self.max_tokens, "status": "", "latency_ms": 0.0}
        values.update(fields)
        return CallRecord(**values)


@dataclass
class StructuredResult(Generic[T]):
    """A validated answer (or None), the attempts it took, and the cache entries they made."""

    value: T | None
    records: list[CallRecord]
    raw: str | None = None
    cache_entries: list[CacheEntry] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def last(self) -> CallRecord:
        return self.records[-1]

    @property
    def truncated(self) -> bool:
        return bool(self.records) and self.records[-1].finish_reason == "length"


@dataclass
class CallStats:
    """Running totals of a client's attempts, for progress displays."""

    attempts: int = 0
    ok: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, records: Sequence[CallRecord]) -> None:
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
        return self.attempts / max(1e-9, time.monotonic() - self.started)


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint can do, declared so no layer asks what class it is."""

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
        """Make the call; transport failures come back in the result, never raised."""
        ...


class Endpoint(ModelEndpoint, Protocol):
    """The stack's bottom: an endpoint proper."""

    @property
    def model_name(self) -> str:
        """The served model's name (the cache's key)."""
        ...

    base_url: str | None
    capabilities: Capabilities

    def current_mode(self) -> str:
        ...


class CarriesCalls(Protocol):
    """Anything carrying its calls' records and cache entries."""

    @property
    def records(self) -> Sequence[CallRecord]: ...

    @property
    def cache_entries(self) -> Sequence[CacheEntry]: ...


class ServesModels(Protocol):
    """A client whose endpoints name each record's model."""

    @property
    def endpoints(self) -> Sequence[Endpoint]: ...


class StructuredCaller(ServesModels, Protocol):
    """The client job loops and agents call. Records and cache entries come back with each result, nowhere
    else.
    """

    @property
    def label(self) -> str: ...

    @property
    def is_offline(self) -> bool: ...

    @property
    def cache_model(self) -> str:
        ...

    @property
    def stats(self) -> CallStats:
        ...

    def use_cache(self, cache: Any) -> None:
        ...

    def structured_modes(self) -> dict[str, str]:
        ...

    def concurrency_report(self) -> dict[str, Any]:
        ...

    async def structured(self, schema: type[T], messages: list[Any], *, purpose: str,
                         persona_id: str | None = None, step: int | None = None,
                         check: Callable[[T], str | None] | None = None, sample: int = 0,
                         max_tokens: int | None = None) -> StructuredResult[T]: ...


def carry_records(exc: BaseException, earlier: Sequence[CallRecord]) -> None:
    """Put earlier attempts in front of those an exception carries, so every attempt is counted."""
    exc.seam_records = [*earlier, *getattr(exc, "seam_records", [])]  # type: ignore[attr-defined]


def carried_records(exc: BaseException) -> list[CallRecord]:
    """Return the attempts an exception that ended a call carries."""
    return list(getattr(exc, "seam_records", []))

"""The one seam to language models.

``LLMClient(LLMSettings(spec=...))`` turns a spec string into a model client:

- ``offline`` — the deterministic offline engine (not a language model);
- ``openai:<model>`` — OpenAI (``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` honoured);
- ``http://host:port/v1`` — any OpenAI-compatible server (vLLM, Ollama, llama.cpp); the served
  model name comes from ``?model=NAME`` or ``PERSONAHUB_MODEL``;
- several URLs separated by commas — used round-robin; a retry goes to the next endpoint, and
  an endpoint that refuses connections is skipped for ``DEAD_ENDPOINT_COOLDOWN_S`` seconds.

Around the model, in this one place: an explicit timeout, retries with backoff on 429/5xx/timeouts,
a concurrency limit, an optional requests-per-second limit (one token bucket shared by all
endpoints), one repair attempt for invalid structured answers, the record/replay cache
(``agents.cache``), and a ``CallRecord`` for every attempt (tokens, latency, status, cached) that
the run log writes to ``llm_calls``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from agents.cache import (
    CacheEntry,
    CacheMiss,
    ResponseCache,
    cache_key,
    failure_key,
    request_hash,
    request_payload,
)
from agents.offline import OFFLINE_MODEL_NAME, OfflineChatModel
from personas.errors import PersonahubError

T = TypeVar("T", bound=BaseModel)
StructuredMethod = Literal["json_schema", "tools"]
_SECRET_PARAMS = {"key", "api_key", "apikey", "token", "access_token", "secret", "password"}
DEAD_ENDPOINT_COOLDOWN_S = 5.0
# Connections per HTTP client. httpcore re-scans every pooled connection for every waiting
# request whenever one finishes (O(requests x connections)); at 64 connections on one pool that
# alone costs milliseconds of CPU per call and caps a 0.5 s-latency server near 40 calls/s on
# two cores (4 per pool measured best: 87 vs 75 calls/s with 8). An endpoint therefore gets
# ceil(concurrency / SHARD_CONNECTIONS) clients ("shards")
# and each call goes to the least busy one.
SHARD_CONNECTIONS = 4


class LLMConfigError(PersonahubError):
    """The --llm spec or its environment is unusable."""


class LLMUnavailable(PersonahubError):
    """The model endpoint cannot be reached (connection refused, DNS failure...)."""


@dataclass(frozen=True, kw_only=True)
class LLMSettings:
    """How to reach and call the model; plain data, safe to log once redacted."""

    spec: str = OFFLINE_MODEL_NAME
    seed: int = 0
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 16
    structured_method: StructuredMethod = "json_schema"
    temperature: float | None = None
    offline_latency_s: float = 0.0
    rps: float | None = None

    def __post_init__(self) -> None:
        if self.rps is not None and self.rps <= 0:
            raise LLMConfigError(f"--rps must be > 0 requests per second, got {self.rps}")
        if self.timeout_s <= 0:
            raise LLMConfigError(f"timeout must be > 0 seconds, got {self.timeout_s}")
        if self.concurrency < 1:
            raise LLMConfigError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise LLMConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.structured_method not in ("json_schema", "tools"):
            raise LLMConfigError(f"unknown structured method {self.structured_method!r}")


def _new_call_id() -> str:
    """16 random hex digits (a uuid4 costs several times more, and only half of it was kept)."""
    return os.urandom(8).hex()


@dataclass
class CallRecord:
    """One attempt at one model call, as written to ``llm_calls``."""

    purpose: str
    model: str
    attempt: int
    status: str  # ok | error | invalid
    latency_ms: float
    tokens_in: int = 0
    tokens_out: int = 0
    error: str | None = None
    persona_id: str | None = None
    step: int | None = None
    cached: bool = False
    endpoint: int | None = 0
    call_id: str = field(default_factory=_new_call_id)
    started_at: float = field(default_factory=time.time)


@dataclass
class StructuredResult(Generic[T]):
    """A validated answer (or None after failure) and the attempts it took."""

    value: T | None
    records: list[CallRecord]
    raw: str | None = None


def redact_spec(spec: str) -> str:
    """The spec with credentials in URLs (user:password@, ?key=...) replaced by ``***``."""
    parts = []
    for item in spec.split(","):
        item = item.strip()
        if "://" not in item:
            parts.append(item)
            continue
        url = urlsplit(item)
        netloc = url.hostname or ""
        if url.port:
            netloc += f":{url.port}"
        if url.username or url.password:
            netloc = "***@" + netloc
        query = urlencode(
            [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(url.query)],
            safe="*",
        )
        parts.append(urlunsplit((url.scheme, netloc, url.path, query, url.fragment)))
    return ",".join(parts)


@dataclass(frozen=True)
class Endpoint:
    """One model endpoint: its LangChain chat model and a label fit for logs."""

    model: BaseChatModel
    label: str
    base_url: str | None = None
    shards: tuple[BaseChatModel, ...] = ()

    @property
    def model_name(self) -> str:
        """The served model's name (what the cache keys on; no URL, no credentials)."""
        return str(getattr(self.model, "model_name", None) or self.label)


class RateLimiter:
    """Token bucket: ``rate`` requests per second on average, bursts of at most ``burst``.

    Each caller reserves a token (the balance may go negative) and sleeps until its token is
    due, so waiting callers are served in arrival order without a lock held across awaits.
    """

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if rate <= 0 or burst < 1:
            raise LLMConfigError(f"rate limit needs rate > 0 and burst >= 1 (got {rate}, {burst})")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp: float | None = None
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; the seconds to wait before using it (0 when one was available)."""
        with self._lock:
            now = time.monotonic()
            if self._stamp is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        """Wait for a token."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


def _http_client(settings: LLMSettings) -> Any:
    """A private async HTTP client per endpoint (langchain-openai otherwise shares one per
    process, whose pooled connections die with the event loop that opened them)."""
    import httpx

    size = min(settings.concurrency, SHARD_CONNECTIONS)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    return httpx.AsyncClient(limits=limits, timeout=settings.timeout_s)


def _shard_count(settings: LLMSettings) -> int:
    return max(1, -(-settings.concurrency // SHARD_CONNECTIONS))


def _chat_openai(model: str, base_url: str | None, api_key: str | None,
                 settings: LLMSettings) -> BaseChatModel:
    """One ``ChatOpenAI`` with its own HTTP client, posting through ``PassThroughCompletions``."""
    from langchain_openai import ChatOpenAI
    from openai import AsyncOpenAI

    from agents.openai_wire import pass_through_clients

    root = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=settings.timeout_s,
                       max_retries=0, http_client=_http_client(settings))
    return ChatOpenAI(model=model, base_url=base_url, api_key=api_key, timeout=settings.timeout_s,
                      max_retries=0, temperature=settings.temperature, **pass_through_clients(root))


def _openai_compatible(url: str, settings: LLMSettings) -> Endpoint:
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise LLMConfigError(f"--llm: {redact_spec(url)!r} is not an http(s) URL")
    query = dict(parse_qsl(parsed.query))
    model_name = query.pop("model", None) or os.environ.get("PERSONAHUB_MODEL") or "default"
    api_key = query.pop("api_key", None) or os.environ.get("OPENAI_API_KEY") or "not-needed"
    base = urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))
    shards = tuple(_chat_openai(model_name, base, api_key, settings)
                   for _ in range(_shard_count(settings)))
    return Endpoint(shards[0], f"{model_name}@{redact_spec(base)}", base, shards)


def make_endpoints(settings: LLMSettings) -> list[Endpoint]:
    """Build the chat model(s) a spec names; raises LLMConfigError with the setting at fault."""
    spec = settings.spec.strip()
    if not spec:
        raise LLMConfigError("--llm is empty (use 'offline', 'openai:<model>' or a URL)")
    if spec == OFFLINE_MODEL_NAME:
        model = OfflineChatModel(seed=settings.seed, latency_s=settings.offline_latency_s)
        return [Endpoint(model, OFFLINE_MODEL_NAME)]
    if spec.startswith("openai:"):
        name = spec.split(":", 1)[1].strip()
        if not name:
            raise LLMConfigError("--llm openai:<model> needs a model name, e.g. openai:gpt-4o-mini")
        if not os.environ.get("OPENAI_API_KEY"):
            raise LLMConfigError(f"--llm {spec}: OPENAI_API_KEY is not set")
        base = os.environ.get("OPENAI_BASE_URL") or None
        shards = tuple(_chat_openai(name, base, None, settings)
                       for _ in range(_shard_count(settings)))
        return [Endpoint(shards[0], spec, base, shards)]
    if "://" in spec:
        return [_openai_compatible(url.strip(), settings) for url in spec.split(",") if url.strip()]
    raise LLMConfigError(
        f"--llm {spec!r} is not understood: use 'offline', 'openai:<model>' or http(s)://host/v1"
    )


def _error_kind(exc: BaseException) -> tuple[str, bool]:
    """(short description, retryable?) for an exception raised by a model call."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout", True
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on openai
        openai = None
    if openai is not None:
        if isinstance(exc, openai.APITimeoutError):
            return "timeout", True
        if isinstance(exc, openai.APIConnectionError):
            return f"connection error: {exc}", True
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            return f"HTTP {status}: {str(exc)[:200]}", status == 429 or status >= 500
    return f"{type(exc).__name__}: {str(exc)[:200]}", False


def _is_unreachable(exc: BaseException) -> bool:
    try:
        import openai
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError)


@lru_cache(maxsize=256)
def _response_format(schema: type[BaseModel]) -> dict[str, Any]:
    """OpenAI ``response_format`` asking for JSON matching ``schema`` (cached per schema)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()},
    }


@lru_cache(maxsize=256)
def _openai_tools(schema: type[BaseModel]) -> list[dict[str, Any]]:
    """``schema`` as a one-tool list for tool calling (cached per schema; read, never changed)."""
    return [convert_to_openai_tool(schema)]


def _usage(message: AIMessage) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)


def _payload(message: AIMessage, method: StructuredMethod) -> str:
    """The JSON text of an answer: the tool call's arguments or the message content."""
    if method == "tools":
        if message.tool_calls:
            return json.dumps(message.tool_calls[0]["args"])
        invalid = getattr(message, "invalid_tool_calls", None)
        if invalid:
            return str(invalid[0].get("args") or "")
    content = message.content
    if isinstance(content, list):
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


class LLMClient:
    """Calls the configured model(s) for validated structured answers and records every attempt."""

    def __init__(self, settings: LLMSettings, endpoints: Sequence[Endpoint] | None = None) -> None:
        self.settings = settings
        self._owns_endpoints = endpoints is None
        self.endpoints = list(endpoints) if endpoints is not None else make_endpoints(settings)
        self._endpoints_loop: asyncio.AbstractEventLoop | None = None
        self._next = 0
        self._down_until = [0.0] * len(self.endpoints)
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self._bindings: dict[tuple[int, type[BaseModel]], tuple[BaseChatModel, Any]] = {}
        self._limiter = RateLimiter(settings.rps) if settings.rps else None
        self._records: list[CallRecord] = []
        self._cache: ResponseCache | None = None
        self._busy: dict[tuple[int, int], int] = {}  # calls in flight per (endpoint, shard)

    @property
    def label(self) -> str:
        """What the console banner and the run log call this engine."""
        return ",".join(e.label for e in self.endpoints)

    @property
    def is_offline(self) -> bool:
        """True when the offline engine answers (no language model is used)."""
        return all(isinstance(e.model, OfflineChatModel) for e in self.endpoints)

    @property
    def cache_model(self) -> str:
        """The model name cache entries are keyed and stored under (endpoints' names, sorted)."""
        return ",".join(sorted({e.model_name for e in self.endpoints}))

    @property
    def cache(self) -> ResponseCache | None:
        """The record/replay cache in use, if any."""
        return self._cache

    def use_cache(self, cache: ResponseCache | None) -> None:
        """Answer from (and record into) ``cache`` from now on; None turns caching off."""
        self._cache = cache

    def drain_records(self) -> list[CallRecord]:
        """Hand over (and forget) the call records collected since the last drain."""
        records, self._records = self._records, []
        return records

    def drain_cache_entries(self) -> list[CacheEntry]:
        """Hand over (and forget) the answers recorded since the last drain (for ``llm_cache``)."""
        return self._cache.drain() if self._cache is not None else []


    def drain_cache_rows(self) -> list[dict[str, Any]]:
        """``drain_cache_entries`` as ``llm_cache`` rows, for writers below this layer."""
        from agents.cache import cache_rows

        return cache_rows(self.drain_cache_entries())
    def mark_down(self, index: int, seconds: float = DEAD_ENDPOINT_COOLDOWN_S) -> None:
        """Skip endpoint ``index`` in round-robin for ``seconds`` (it refused a connection)."""
        self._down_until[index] = time.monotonic() + seconds

    def _healthy_other(self, index: int) -> bool:
        now = time.monotonic()
        return any(i != index and until <= now for i, until in enumerate(self._down_until))

    def _pick(self, after: int | None = None) -> tuple[int, Endpoint]:
        """The next endpoint in round-robin (after ``after`` for a retry), skipping dead ones."""
        loop = asyncio.get_running_loop()
        if self._endpoints_loop is not loop:
            # HTTP clients keep connection pools bound to the loop that opened them; a client
            # reused under a new event loop gets fresh ones instead of dead connections.
            if self._owns_endpoints and self._endpoints_loop is not None:
                self.endpoints = make_endpoints(self.settings)
            self._endpoints_loop = loop
        n = len(self.endpoints)
        if after is None:
            start = self._next
            self._next += 1
        else:
            start = after + 1
        if n > 1:
            now = time.monotonic()
            for offset in range(n):
                index = (start + offset) % n
                if self._down_until[index] <= now:
                    return index, self.endpoints[index]
        index = start % n  # all down (or only one): try it anyway
        return index, self.endpoints[index]

    def _offline_kwargs(self, schema: type[BaseModel]) -> dict[str, Any]:
        """What the offline model is asked with: the schema class itself as ``response_format``
        (it keeps one engine request per class), or tools converted once per schema."""
        if self.settings.structured_method == "tools":
            return {"tools": _openai_tools(schema), "tool_choice": schema.__name__}
        return {"response_format": schema}

    def _bound(self, model: BaseChatModel, schema: type[BaseModel]) -> Any:
        if self.settings.structured_method == "tools":
            return model.bind_tools([schema], tool_choice=schema.__name__)
        if isinstance(model, OfflineChatModel):
            return model.bind(response_format=_response_format(schema))
        # The same ``response_format`` on the wire, but passed as ``extra_body``: as a typed
        # parameter the openai SDK walks the whole JSON schema on every request (about 8 ms of
        # CPU a call here, most of a client's time at high concurrency).
        return model.bind(extra_body={"response_format": _response_format(schema)})

    def _bound_cached(self, model: BaseChatModel, schema: type[BaseModel]) -> Any:
        """``_bound`` once per (HTTP client, schema): building the binding costs on every call."""
        key = (id(model), schema)
        bound = self._bindings.get(key)
        if bound is None or bound[0] is not model:
            bound = self._bindings[key] = (model, self._bound(model, schema))
        return bound[1]

    def _shard(self, index: int, endpoint: Endpoint) -> tuple[tuple[int, int], BaseChatModel]:
        """The endpoint's least busy HTTP client (see ``SHARD_CONNECTIONS``)."""
        shards = endpoint.shards or (endpoint.model,)
        best = min(range(len(shards)), key=lambda s: self._busy.get((index, s), 0))
        return (index, best), shards[best]

    async def _attempt(self, endpoint: Endpoint, schema: type[BaseModel],
                       messages: list[BaseMessage], index: int = 0) -> AIMessage:
        if isinstance(endpoint.model, OfflineChatModel):
            # In-process engine: skip LangChain's per-call callback machinery (about 1 ms a
            # call), answer exactly what the model class would. No semaphore is needed either.
            if self._limiter is not None:
                await self._limiter.acquire()
            return await endpoint.model.answer_async(messages, **self._offline_kwargs(schema))
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            # a semaphore belongs to one event loop; each run may bring its own loop
            self._semaphore = asyncio.Semaphore(self.settings.concurrency)
            self._semaphore_loop = loop
        async with self._semaphore:
            if self._limiter is not None:  # the token is taken just before the request goes out
                await self._limiter.acquire()
            slot, model = self._shard(index, endpoint)
            self._busy[slot] = self._busy.get(slot, 0) + 1
            try:
                async with asyncio.timeout(self.settings.timeout_s):  # no extra task per call
                    return await self._bound_cached(model, schema).ainvoke(messages)
            finally:
                self._busy[slot] -= 1

    def _cache_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"method": self.settings.structured_method,
                                  "temperature": self.settings.temperature}
        if self.is_offline:
            params["seed"] = self.settings.seed  # the offline engine's answers depend on it
        return params

    def _cache_slot(self, schema: type[BaseModel], conversation: list[BaseMessage]
                    ) -> tuple[str, int, dict[str, Any]]:
        """(key, sample index, request) for one more asking of ``conversation`` in this run."""
        assert self._cache is not None
        request = request_payload(self._cache.model, conversation, schema, self._cache_params())
        base = request_hash(request)
        sample = self._cache.next_sample(base)
        return cache_key(base, sample), sample, request

    async def structured(
        self,
        schema: type[T],
        messages: list[BaseMessage],
        *,
        purpose: str,
        persona_id: str | None = None,
        step: int | None = None,
    ) -> StructuredResult[T]:
        """Ask for an instance of ``schema``; retry transport errors, repair one invalid answer.

        Returns ``value=None`` when every attempt failed; the caller goes on. Raises
        ``LLMUnavailable`` when no endpoint can be reached at all, and ``CacheMiss`` when the
        cache replays and holds no answer for the request.
        """
        records: list[CallRecord] = []
        # a fresh record per attempt (partial, not dataclasses.replace: that costs microseconds)
        new_record = partial(CallRecord, purpose=purpose, status="", latency_ms=0.0,
                             persona_id=persona_id, step=step)
        conversation = list(messages)
        repaired = False
        attempt = 0
        transport_failures = 0
        raw: str | None = None
        slot: tuple[str, int, dict[str, Any]] | None = None  # cache key of ``conversation``
        previous: int | None = None  # endpoint of the last failed attempt (retry goes on)
        cache = self._cache
        while True:
            attempt += 1
            if cache is not None and slot is None:
                slot = self._cache_slot(schema, conversation)
            hit = cache.get(slot[0]) if cache is not None and slot is not None else None
            if cache is not None and slot is not None and hit is None and cache.mode == "replay":
                failed = cache.get(failure_key(slot[0]))
                if failed is not None:  # the recorded call failed for good: so does the replay
                    records.append(new_record(model=cache.model, attempt=attempt, endpoint=None,
                                              cached=True, status="error", error=failed[3]))
                    self._records.extend(records)
                    return StructuredResult(None, records, raw)
            if hit is not None:
                record = new_record(model=cache.model if cache else "", attempt=attempt,
                                    endpoint=None, cached=True)
                raw, record.tokens_in, record.tokens_out, _ = hit
                assert raw is not None
            else:
                if cache is not None and cache.mode == "replay":
                    assert slot is not None
                    self._records.extend(records)
                    raise CacheMiss(
                        f"--cache replay: no recorded answer for the {purpose!r} call "
                        f"(persona {persona_id}, step {step}, attempt {attempt}, sample {slot[1]}, "
                        f"model {cache.model!r}, key {slot[0][:16]}); record it with --cache record")
                index, endpoint = self._pick(previous)
                started = time.perf_counter()
                record = new_record(model=endpoint.label, attempt=attempt, endpoint=index)
                try:
                    message = await self._attempt(endpoint, schema, conversation, index)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a record
                    record.latency_ms = (time.perf_counter() - started) * 1000
                    description, retryable = _error_kind(exc)
                    record.status, record.error = "error", description
                    records.append(record)
                    transport_failures += 1
                    unreachable = _is_unreachable(exc)
                    if unreachable and len(self.endpoints) > 1:
                        self.mark_down(index)
                    previous = index
                    if retryable and transport_failures <= self.settings.max_retries:
                        if not (unreachable and self._healthy_other(index)):  # else: fail over now
                            delay = self.settings.backoff_s * 2 ** (transport_failures - 1)
                            await asyncio.sleep(delay * (0.5 + random.random()))
                        continue
                    self._records.extend(records)
                    if unreachable and not self._healthy_other(index):
                        raise LLMUnavailable(
                            f"model endpoint {endpoint.label} is unreachable ({description}); "
                            "check --llm / PERSONAHUB_LLM"
                        ) from exc
                    if cache is not None and slot is not None:
                        cache.put(CacheEntry(failure_key(slot[0]), cache.model, slot[2], None, 0, 0,
                                             slot[1], error=description))
                    return StructuredResult(None, records, raw)
                self._down_until[index] = 0.0
                record.latency_ms = (time.perf_counter() - started) * 1000
                record.tokens_in, record.tokens_out = _usage(message)
                raw = _payload(message, self.settings.structured_method)
                if cache is not None and slot is not None:
                    cache.put(CacheEntry(slot[0], cache.model, slot[2], raw, record.tokens_in,
                                         record.tokens_out, slot[1]))
            try:
                value = schema.model_validate_json(raw)
            except ValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {"msg": str(exc)}
                where = ".".join(str(p) for p in first.get("loc", ())) or "answer"
                record.status, record.error = "invalid", f"{where}: {first.get('msg')}"[:300]
                records.append(record)
                if repaired:
                    self._records.extend(records)
                    return StructuredResult(None, records, raw)
                repaired = True
                conversation = [
                    *messages,
                    AIMessage(raw[:4000]),
                    HumanMessage(
                        f"That answer is not valid for the schema ({record.error}). "
                        "Reply again with only valid JSON for the schema."
                    ),
                ]
                slot = None
                continue
            record.status = "ok"
            records.append(record)
            self._records.extend(records)
            return StructuredResult(value, records, raw)


def resolve_spec(cli_value: str | None) -> str:
    """The spec from --llm, else ``PERSONAHUB_LLM``, else ``offline``."""
    return cli_value or os.environ.get("PERSONAHUB_LLM") or OFFLINE_MODEL_NAME


def check_reachable(client: LLMClient, timeout_s: float = 5.0) -> list[str]:
    """Fail fast with one line when no HTTP endpoint answers at all.

    Any HTTP answer (even 401 or 404) counts as reachable; only connection failures do not.
    With several endpoints, the unreachable ones are marked down (round-robin skips them for a
    while) and their labels returned; the error is raised only when none is reachable.
    """
    import httpx

    down: list[str] = []
    failure: BaseException | None = None
    for index, endpoint in enumerate(client.endpoints):
        if endpoint.base_url is None and isinstance(endpoint.model, OfflineChatModel):
            continue
        url = (endpoint.base_url or "https://api.openai.com/v1").rstrip("/") + "/models"
        try:
            httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            down.append(endpoint.label)
            failure = exc
            client.mark_down(index)
    if failure is not None and len(down) == len(client.endpoints):
        raise LLMUnavailable(
            f"model endpoint {down[0]} is unreachable ({type(failure).__name__}); "
            "check --llm / PERSONAHUB_LLM"
        ) from failure
    return down

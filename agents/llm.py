"""The one seam to language models.

``LLMClient(LLMSettings(spec=...))`` turns a spec string into a model client:

- ``offline`` — the deterministic offline engine (not a language model);
- ``openai:<model>`` — OpenAI (``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` honoured);
- ``http://host:port/v1`` — any OpenAI-compatible server (vLLM, Ollama, llama.cpp); the served
  model name comes from ``?model=NAME`` or ``PERSONAHUB_MODEL``;
- several URLs separated by commas — used round-robin; a retry goes to the next endpoint, and
  an endpoint that refuses connections is skipped for ``DEAD_ENDPOINT_COOLDOWN_S`` seconds.

Credentials stay with their endpoint: ``OPENAI_API_KEY`` goes only to OpenAI (or to the
``OPENAI_BASE_URL`` set with it); another server gets a key only when its URL names the variable
holding it (``?api_key_env=NAME``), and never over plain http to a non-loopback host unless the URL
says ``allow_http_key=1``. Other query parameters are forwarded to the server; every query value
but ``model`` is redacted wherever a spec is stored or printed.

Around the model, in this one place: an explicit timeout; ``max_tokens`` on every call
(``agents.generation``); structured output negotiated per endpoint (``agents.structured``);
retries only for what can succeed on retry, honouring ``Retry-After``, and a fast stop when an
endpoint rejects every request (``agents.failures``); a concurrency limit and an optional
requests-per-second limit (one token bucket shared by all endpoints); local repair of invalid
answers before the one paid repair attempt (``agents.repair``); the record/replay cache
(``agents.cache``); and a ``CallRecord`` for every attempt (tokens, latency, status, mode, finish
reason, cached) that the run log writes to ``llm_calls``.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from personahub.agents.cache import (
    CacheEntry,
    CacheMiss,
    ResponseCache,
    cache_key,
    failure_key,
    request_hash,
    request_payload,
)
from personahub.agents.failures import FailFast, classify
from personahub.agents.generation import Generation
from personahub.agents.limits import ConcurrencyLimit
from personahub.agents.offline import OFFLINE_MODEL_NAME, OfflineChatModel
from personahub.agents.repair import check_answer
from personahub.agents.structured import (
    STRUCTURED_SETTINGS,
    ModeBook,
    StructuredMode,
    StructuredSetting,
    answer_text,
    names_mode,
    openai_tools,
    prepare_messages,
    response_format,
    tool_choice,
)
from personahub.personas.errors import PersonahubError
from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)
# query parameters of a --llm URL that personahub reads itself (never forwarded to the server)
_OWN_PARAMS = frozenset({"model", "api_key", "api_key_env", "allow_http_key"})
# query parameters whose values are shown and stored as they are; every other value is redacted
_PUBLIC_PARAMS = frozenset({"model", "api_key_env", "allow_http_key"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
OPENAI_API_BASE = "https://api.openai.com/v1"
# marks a cached answer the server cut off at max_tokens (``llm_cache.error``)
CUT_OFF = "finish_reason=length"
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
    structured: StructuredSetting = "auto"
    max_tokens: int | None = None  # None: per output kind (agents.generation)
    temperature: float | None = None
    top_p: float | None = None
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
        if self.structured not in STRUCTURED_SETTINGS:
            raise LLMConfigError(f"--structured {self.structured!r}: use one of "
                                 f"{', '.join(STRUCTURED_SETTINGS)}")
        self.generation  # noqa: B018 - validates max_tokens, temperature and top_p

    @property
    def generation(self) -> Generation:
        """Output limit and sampling settings of every call."""
        return Generation(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)


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
    structured_mode: str | None = None
    max_tokens: int | None = None
    finish_reason: str | None = None
    repaired: bool = False  # valid only after local repair (agents.repair)
    queue_ms: float = 0.0  # waiting for a concurrency slot or rate token (not in latency_ms)
    call_id: str = field(default_factory=_new_call_id)
    started_at: float = field(default_factory=time.time)


@dataclass
class StructuredResult(Generic[T]):
    """A validated answer (or None after failure) and the attempts it took."""

    value: T | None
    records: list[CallRecord]
    raw: str | None = None


def redact_spec(spec: str) -> str:
    """The spec with credentials in URLs (user:password@) and every query value but ``model``
    replaced by ``***`` (a server's extra parameters may be signatures or keys)."""
    parts = []
    for item in spec.split(","):
        item = item.strip()
        if "://" not in item:
            parts.append(item)
            continue
        url = urlsplit(item)
        netloc = url.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if url.port:
            netloc += f":{url.port}"
        if url.username or url.password:
            netloc = "***@" + netloc
        query = urlencode(
            [(k, v if k in _PUBLIC_PARAMS else "***")
             for k, v in parse_qsl(url.query, keep_blank_values=True)],
            safe="*",
        )
        parts.append(urlunsplit((url.scheme, netloc, url.path, query, "")))
    return ",".join(parts)


@dataclass(frozen=True)
class Endpoint:
    """One model endpoint: its LangChain chat model and a label fit for logs."""

    model: BaseChatModel
    label: str
    base_url: str | None = None
    shards: tuple[BaseChatModel, ...] = ()
    # OpenAI's own API takes ``max_completion_tokens``; OpenAI-compatible servers ``max_tokens``
    # (llama-cpp-python knows only that one)
    max_tokens_param: str = "max_tokens"

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


def _chat_openai(model: str, base_url: str | None, api_key: str, settings: LLMSettings,
                 query: dict[str, str] | None = None) -> BaseChatModel:
    """One ``ChatOpenAI`` with its own HTTP client, posting through ``PassThroughCompletions``.

    ``api_key`` is always given: with None, both the openai SDK and ``ChatOpenAI`` would read
    ``OPENAI_API_KEY`` from the environment and send it to whatever server this is.
    """
    from langchain_openai import ChatOpenAI
    from openai import AsyncOpenAI
    from personahub.agents.openai_wire import pass_through_clients

    root = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=settings.timeout_s,
                       max_retries=0, http_client=_http_client(settings), default_query=query or None)
    return ChatOpenAI(model=model, base_url=base_url, api_key=api_key, timeout=settings.timeout_s,
                      max_retries=0, temperature=settings.temperature, top_p=settings.top_p,
                      **pass_through_clients(root))


def _is_loopback(host: str | None) -> bool:
    return bool(host) and (host in _LOOPBACK_HOSTS or str(host).startswith("127."))


def _same_base(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def _endpoint_key(url: str, parsed: Any, query: dict[str, str]) -> str | None:
    """The API key an OpenAI-compatible URL may be sent (see the module doc), or None."""
    base = urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", ""))
    key_env = query.get("api_key_env")
    if key_env:
        key = os.environ.get(key_env)
        if not key:
            raise LLMConfigError(f"--llm {redact_spec(url)}: api_key_env={key_env} names a variable "
                                 "that is not set")
    elif query.get("api_key"):
        key = query["api_key"]
    elif os.environ.get("OPENAI_API_KEY") and (
            _same_base(base, OPENAI_API_BASE)
            or _same_base(base, os.environ.get("OPENAI_BASE_URL") or OPENAI_API_BASE)):
        key = os.environ["OPENAI_API_KEY"]  # the endpoint the key was set for
    else:
        return None
    if (parsed.scheme == "http" and not _is_loopback(parsed.hostname)
            and query.get("allow_http_key", "").lower() not in ("1", "true", "yes")):
        raise LLMConfigError(
            f"--llm {redact_spec(url)}: refusing to send an API key over plain http to "
            f"{parsed.hostname}; use https, or add allow_http_key=1 to the URL on a trusted network")
    return key


def _openai_compatible(url: str, settings: LLMSettings) -> Endpoint:
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise LLMConfigError(f"--llm: {redact_spec(url)!r} is not an http(s) URL")
    pairs = parse_qsl(parsed.query, keep_blank_values=True)
    query = dict(pairs)
    model_name = query.get("model") or os.environ.get("PERSONAHUB_MODEL") or "default"
    api_key = _endpoint_key(url, parsed, query) or "not-needed"
    forward = {k: v for k, v in pairs if k not in _OWN_PARAMS}  # e.g. api-version
    base = urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))
    shards = tuple(_chat_openai(model_name, base, api_key, settings, forward)
                   for _ in range(_shard_count(settings)))
    official = _same_base(base, OPENAI_API_BASE)
    return Endpoint(shards[0], f"{model_name}@{redact_spec(base)}", base, shards,
                    "max_completion_tokens" if official else "max_tokens")


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
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise LLMConfigError(f"--llm {spec}: OPENAI_API_KEY is not set")
        base = os.environ.get("OPENAI_BASE_URL") or None
        shards = tuple(_chat_openai(name, base, key, settings)
                       for _ in range(_shard_count(settings)))
        param = "max_tokens" if base and not _same_base(base, OPENAI_API_BASE) else "max_completion_tokens"
        return [Endpoint(shards[0], spec, base, shards, param)]
    if "://" in spec:
        return [_openai_compatible(url.strip(), settings) for url in spec.split(",") if url.strip()]
    raise LLMConfigError(
        f"--llm {spec!r} is not understood: use 'offline', 'openai:<model>' or http(s)://host/v1"
    )


def _usage(message: AIMessage) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)


class LLMClient:
    """Calls the configured model(s) for validated structured answers and records every attempt."""

    def __init__(self, settings: LLMSettings, endpoints: Sequence[Endpoint] | None = None) -> None:
        self.settings = settings
        self._owns_endpoints = endpoints is None
        self.endpoints = list(endpoints) if endpoints is not None else make_endpoints(settings)
        self._endpoints_loop: asyncio.AbstractEventLoop | None = None
        self._next = 0
        self._down_until = [0.0] * len(self.endpoints)
        self._semaphore: ConcurrencyLimit | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self._bindings: dict[tuple[int, type[BaseModel]], tuple[BaseChatModel, Any]] = {}
        self._limiter = RateLimiter(settings.rps) if settings.rps else None
        self._records: list[CallRecord] = []
        self._cache: ResponseCache | None = None
        self._busy: dict[tuple[int, int], int] = {}  # calls in flight per (endpoint, shard)
        self.modes = ModeBook(settings.structured, len(self.endpoints))
        self._probe_locks: dict[int, asyncio.Lock] = {}
        self._probe_loop: asyncio.AbstractEventLoop | None = None
        self._fail_fast = FailFast(len(self.endpoints))
        self.generation = settings.generation
        self.stats = CallStats()

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
        from personahub.agents.cache import cache_rows

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

    def structured_modes(self) -> dict[str, str]:
        """The structured-output mode each endpoint uses now (for the run's config)."""
        if self.is_offline:
            return {e.label: "tools" if self.settings.structured == "tools" else "json_schema"
                    for e in self.endpoints}
        return {e.label: m for e, m in zip(self.endpoints, self.modes.modes(), strict=False)}

    def _mode(self, index: int, endpoint: Endpoint) -> StructuredMode:
        if isinstance(endpoint.model, OfflineChatModel):
            # the in-process engine takes the schema itself (or a tool): nothing to negotiate
            return "tools" if self.settings.structured == "tools" else "json_schema"
        return self.modes.mode(index)

    def _offline_kwargs(self, schema: type[BaseModel], mode: StructuredMode) -> dict[str, Any]:
        """What the offline model is asked with: the schema class itself as ``response_format``
        (it keeps one engine request per class), or tools converted once per schema."""
        if mode == "tools":
            return {"tools": openai_tools(schema), "tool_choice": schema.__name__}
        return {"response_format": schema}

    def _bound(self, model: BaseChatModel, schema: type[BaseModel], mode: StructuredMode,
               max_tokens: int, max_tokens_param: str) -> Any:
        # The response format and the output limit travel in ``extra_body``: as typed
        # parameters the openai SDK walks the whole JSON schema on every request (about 8 ms of
        # CPU a call here), and langchain-openai renames ``max_tokens`` to
        # ``max_completion_tokens``, which llama-cpp-python ignores.
        body: dict[str, Any] = {max_tokens_param: max_tokens}
        fmt = response_format(schema, mode)
        if fmt is not None:
            body["response_format"] = fmt
        if mode == "tools":
            return model.bind(tools=openai_tools(schema), tool_choice=tool_choice(schema),
                              extra_body=body)
        return model.bind(extra_body=body)

    def _bound_cached(self, model: BaseChatModel, schema: type[BaseModel], mode: StructuredMode,
                      max_tokens: int, max_tokens_param: str) -> Any:
        """``_bound`` once per (HTTP client, schema, mode, limit): building it costs every call."""
        key = (id(model), schema, mode, max_tokens)
        bound = self._bindings.get(key)
        if bound is None or bound[0] is not model:
            bound = self._bindings[key] = (model, self._bound(model, schema, mode, max_tokens,
                                                              max_tokens_param))
        return bound[1]

    def _shard(self, index: int, endpoint: Endpoint) -> tuple[tuple[int, int], BaseChatModel]:
        """The endpoint's least busy HTTP client (see ``SHARD_CONNECTIONS``)."""
        shards = endpoint.shards or (endpoint.model,)
        best = min(range(len(shards)), key=lambda s: self._busy.get((index, s), 0))
        return (index, best), shards[best]

    async def _attempt(self, endpoint: Endpoint, schema: type[BaseModel],
                       messages: list[BaseMessage], index: int, mode: StructuredMode,
                       max_tokens: int, record: CallRecord) -> AIMessage:
        """One request; ``record.queue_ms`` gets the time spent waiting for a slot or token."""
        if isinstance(endpoint.model, OfflineChatModel):
            # In-process engine: skip LangChain's per-call callback machinery (about 1 ms a
            # call), answer exactly what the model class would. No semaphore is needed either.
            if self._limiter is not None:
                waited = time.perf_counter()
                await self._limiter.acquire()
                record.queue_ms = (time.perf_counter() - waited) * 1000
            return await endpoint.model.answer_async(messages, **self._offline_kwargs(schema, mode))
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            # a semaphore belongs to one event loop; each run may bring its own loop
            self._semaphore = ConcurrencyLimit(self.settings.concurrency)
            self._semaphore_loop = loop
        sent = prepare_messages(mode, schema, messages)
        waited = time.perf_counter()
        async with self._semaphore:
            if self._limiter is not None:  # the token is taken just before the request goes out
                await self._limiter.acquire()
            record.queue_ms = (time.perf_counter() - waited) * 1000
            slot, model = self._shard(index, endpoint)
            self._busy[slot] = self._busy.get(slot, 0) + 1
            try:
                async with asyncio.timeout(self.settings.timeout_s):  # no extra task per call
                    bound = self._bound_cached(model, schema, mode, max_tokens,
                                               endpoint.max_tokens_param)
                    return await bound.ainvoke(sent)
            finally:
                self._busy[slot] -= 1

    def _cache_params(self, max_tokens: int) -> dict[str, Any]:
        """What besides the conversation decides an answer (the cache key's ``params``)."""
        params: dict[str, Any] = {"structured": self.settings.structured, "max_tokens": max_tokens,
                                  "temperature": self.settings.temperature,
                                  "top_p": self.settings.top_p}
        if self.is_offline:
            params["seed"] = self.settings.seed  # the offline engine's answers depend on it
        return params

    def _cache_slot(self, schema: type[BaseModel], conversation: list[BaseMessage],
                    max_tokens: int) -> tuple[str, int, dict[str, Any]]:
        """(key, sample index, request) for one more asking of ``conversation`` in this run."""
        assert self._cache is not None
        request = request_payload(self._cache.model, conversation, schema,
                                  self._cache_params(max_tokens))
        base = request_hash(request)
        sample = self._cache.next_sample(base)
        return cache_key(base, sample), sample, request

    def _keep(self, records: list[CallRecord]) -> None:
        """Hand ``records`` to the collector and count them for progress displays."""
        self._records.extend(records)
        self.stats.add(records)

    async def structured(
        self,
        schema: type[T],
        messages: list[BaseMessage],
        *,
        purpose: str,
        persona_id: str | None = None,
        step: int | None = None,
    ) -> StructuredResult[T]:
        """Ask for an instance of ``schema``; returns ``value=None`` when every attempt failed.

        Transport failures that can pass are retried (``agents.failures``); a structured mode
        the server refuses is replaced per ``--structured auto`` and the request sent again; an
        invalid answer is repaired locally, then once by the model. Raises ``LLMUnavailable``
        when no endpoint can be reached, ``ModelRejected`` when an endpoint rejects every
        request for one reason, and ``CacheMiss`` when a replay holds no answer.
        """
        records: list[CallRecord] = []
        max_tokens = self.generation.max_tokens_for(purpose)
        # a fresh record per attempt (partial, not dataclasses.replace: that costs microseconds)
        new_record = partial(CallRecord, purpose=purpose, status="", latency_ms=0.0,
                             persona_id=persona_id, step=step, max_tokens=max_tokens)
        conversation = list(messages)
        repaired = resent = False
        attempt = 0
        transport_failures = 0
        raw: str | None = None
        slot: tuple[str, int, dict[str, Any]] | None = None  # cache key of ``conversation``
        previous: int | None = None  # endpoint of the last failed attempt (retry goes on)
        cache = self._cache
        while True:
            attempt += 1
            if cache is not None and slot is None:
                slot = self._cache_slot(schema, conversation, max_tokens)
            hit = cache.get(slot[0]) if cache is not None and slot is not None else None
            if cache is not None and slot is not None and hit is None and cache.mode == "replay":
                failed = cache.get(failure_key(slot[0]))
                if failed is not None:  # the recorded call failed for good: so does the replay
                    records.append(new_record(model=cache.model, attempt=attempt, endpoint=None,
                                              cached=True, status="error", error=failed[3]))
                    self._keep(records)
                    return StructuredResult(None, records, raw)
            index: int | None = None
            mode: StructuredMode | None = None
            if hit is not None:
                record = new_record(model=cache.model if cache else "", attempt=attempt,
                                    endpoint=None, cached=True)
                raw, record.tokens_in, record.tokens_out, note = hit
                truncated = note == CUT_OFF
                record.finish_reason = "length" if truncated else None
                assert raw is not None
            else:
                if cache is not None and cache.mode == "replay":
                    assert slot is not None
                    self._keep(records)
                    raise CacheMiss(
                        f"--cache replay: no recorded answer for the {purpose!r} call "
                        f"(persona {persona_id}, step {step}, attempt {attempt}, sample {slot[1]}, "
                        f"model {cache.model!r}, key {slot[0][:16]}); record it with --cache record, "
                        "or replay with the --llm, --structured and --max-tokens it was recorded with")
                index, endpoint = self._pick(previous)
                probe = await self._probe(index, endpoint)
                try:
                    mode = self._mode(index, endpoint)
                    started = time.perf_counter()
                    record = new_record(model=endpoint.label, attempt=attempt, endpoint=index,
                                        structured_mode=mode)
                    error: Exception | None = None
                    refused = False
                    try:
                        message = await self._attempt(endpoint, schema, conversation, index, mode,
                                                      max_tokens, record)
                    except Exception as exc:  # noqa: BLE001 - every failure becomes a record
                        error = exc
                        record.latency_ms = (time.perf_counter() - started) * 1000 - record.queue_ms
                        failure = classify(exc)
                        record.status, record.error = "error", failure.description
                        # --structured auto: a refused mode moves the endpoint to the next one
                        refused = (not failure.retryable
                                   and names_mode(mode, failure.status, failure.body)
                                   and self.modes.step_down(index, mode) is not None)
                finally:
                    if probe is not None:
                        probe.release()
                if error is not None:
                    records.append(record)
                    previous = index
                    if refused:  # ask again in the endpoint's new mode, at once
                        record.error = f"{mode} refused: {failure.description}"[:400]
                        continue
                    if not failure.retryable:
                        self._keep(records)
                        self._fail_fast.failed(index, failure, endpoint.label, mode,
                                               self.settings.structured)
                        self._remember_failure(slot, failure.description)
                        return StructuredResult(None, records, raw)
                    transport_failures += 1
                    if failure.description == "timeout" and self._semaphore is not None \
                            and self._semaphore.active > 1 and not self.is_offline:
                        # the server queues what it cannot serve: send no more than it answers
                        lowered = self._semaphore.lower()
                        record.error = f"timeout (concurrency lowered to {lowered})"
                    if failure.unreachable and len(self.endpoints) > 1:
                        self.mark_down(index)
                    if transport_failures <= self.settings.max_retries:
                        if not (failure.unreachable and self._healthy_other(index)):
                            delay = self.settings.backoff_s * 2 ** (transport_failures - 1)
                            delay *= 0.5 + random.random()
                            if failure.retry_after_s is not None:  # the server says when
                                delay = max(delay, failure.retry_after_s)
                            await asyncio.sleep(delay)
                        continue  # else: fail over to the other endpoint now
                    self._keep(records)
                    if failure.unreachable and not self._healthy_other(index):
                        raise LLMUnavailable(
                            f"model endpoint {endpoint.label} is unreachable ({failure.description}); "
                            "check --llm / PERSONAHUB_LLM"
                        ) from error
                    self._remember_failure(slot, failure.description)
                    return StructuredResult(None, records, raw)
                self._down_until[index] = 0.0
                record.latency_ms = (time.perf_counter() - started) * 1000 - record.queue_ms
                record.tokens_in, record.tokens_out = _usage(message)
                raw = answer_text(message, mode)
                record.finish_reason = (message.response_metadata or {}).get("finish_reason")
                truncated = record.finish_reason == "length"
                if cache is not None and slot is not None:
                    cache.put(CacheEntry(slot[0], cache.model, slot[2], raw, record.tokens_in,
                                         record.tokens_out, slot[1],
                                         error=CUT_OFF if truncated else None))
            checked = check_answer(schema, raw, truncated=truncated)
            switched: StructuredMode | None = None
            if index is not None and mode is not None:
                self._fail_fast.succeeded(index)  # the server answered: it accepts the request
                switched = self.modes.answered(index, mode, checked.has_json)
            if checked.value is not None:
                record.status, record.repaired = "ok", checked.repaired
                records.append(record)
                self._keep(records)
                return StructuredResult(checked.value, records, raw)
            record.status, record.error = "invalid", checked.error
            records.append(record)
            if switched is not None:  # the server ignores this mode: ask again in the next one
                record.error = f"{mode} ignored by the server: {checked.error}"[:400]
                slot = None
                continue
            if not resent and not truncated and not self.is_offline:
                # a glitch costs one identical request and changes nothing; the repair prompt
                # (another conversation, so another answer) is for a failure that repeats
                resent = True
                slot = None
                continue
            if repaired:
                self._keep(records)
                return StructuredResult(None, records, raw)
            repaired = True
            problem = ("It was cut off: give a shorter answer." if truncated
                       else f"That answer is not valid for the schema ({record.error}).")
            conversation = [
                *messages,
                AIMessage(raw[:4000]),
                HumanMessage(f"{problem} Reply again with only valid JSON for the schema."),
            ]
            slot = None

    async def _probe(self, index: int, endpoint: Endpoint) -> asyncio.Lock | None:
        """While ``auto`` has not settled an endpoint's mode, one request at a time goes to it:
        the first refusal then moves every waiting call to the next mode, instead of each of
        ``--concurrency`` calls being refused once. Returns the held lock (or None)."""
        if (not self.modes.adaptive or self.modes.settled(index)
                or isinstance(endpoint.model, OfflineChatModel)):
            return None
        loop = asyncio.get_running_loop()
        if self._probe_loop is not loop:  # a lock belongs to one event loop
            self._probe_locks, self._probe_loop = {}, loop
        lock = self._probe_locks.setdefault(index, asyncio.Lock())
        await lock.acquire()
        if self.modes.settled(index):  # settled while this call waited
            lock.release()
            return None
        return lock

    def _remember_failure(self, slot: tuple[str, int, dict[str, Any]] | None, error: str) -> None:
        """Record a call that failed for good, so that a replay fails it the same way."""
        cache = self._cache
        if cache is not None and slot is not None:
            cache.put(CacheEntry(failure_key(slot[0]), cache.model, slot[2], None, 0, 0, slot[1],
                                 error=error))


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
            self.tokens_in += record.tokens_in
            self.tokens_out += record.tokens_out
        if records:
            if records[-1].status == "ok":
                self.ok += 1
            else:
                self.failed += 1

    def rate(self) -> float:
        """Attempts per second since the client was made."""
        return self.attempts / max(1e-9, time.monotonic() - self.started)


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

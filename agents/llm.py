"""The one seam to language models.

``make_llm_client(spec)`` turns a spec string into an ``LLMClient``:

- ``offline`` — the deterministic offline engine (not a language model);
- ``openai:<model>`` — OpenAI (``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` honoured);
- ``http://host:port/v1`` — any OpenAI-compatible server (vLLM, Ollama, llama.cpp); the served
  model name comes from ``?model=NAME`` or ``PERSONAHUB_MODEL``;
- several URLs separated by commas — used round-robin.

Around the model, in this one place: an explicit timeout, retries with backoff on 429/5xx/timeouts,
a concurrency limit, one repair attempt for invalid structured answers, and a ``CallRecord`` for
every attempt (tokens, latency, status) that the run log writes to ``llm_calls``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from agents.offline import OFFLINE_MODEL_NAME, OfflineChatModel
from personas.errors import PersonahubError

T = TypeVar("T", bound=BaseModel)
StructuredMethod = Literal["json_schema", "tools"]
_SECRET_PARAMS = {"key", "api_key", "apikey", "token", "access_token", "secret", "password"}


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

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise LLMConfigError(f"timeout must be > 0 seconds, got {self.timeout_s}")
        if self.concurrency < 1:
            raise LLMConfigError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise LLMConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.structured_method not in ("json_schema", "tools"):
            raise LLMConfigError(f"unknown structured method {self.structured_method!r}")


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
    endpoint: int = 0
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
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


def _http_client(settings: LLMSettings) -> Any:
    """A private async HTTP client per endpoint (langchain-openai otherwise shares one per
    process, whose pooled connections die with the event loop that opened them)."""
    import httpx

    limits = httpx.Limits(max_connections=settings.concurrency,
                          max_keepalive_connections=settings.concurrency)
    return httpx.AsyncClient(limits=limits, timeout=settings.timeout_s)


def _openai_compatible(url: str, settings: LLMSettings) -> Endpoint:
    from langchain_openai import ChatOpenAI

    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise LLMConfigError(f"--llm: {redact_spec(url)!r} is not an http(s) URL")
    query = dict(parse_qsl(parsed.query))
    model_name = query.pop("model", None) or os.environ.get("PERSONAHUB_MODEL") or "default"
    api_key = query.pop("api_key", None) or os.environ.get("OPENAI_API_KEY") or "not-needed"
    base = urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))
    chat = ChatOpenAI(
        model=model_name,
        base_url=base,
        api_key=api_key,
        timeout=settings.timeout_s,
        max_retries=0,
        temperature=settings.temperature,
        http_async_client=_http_client(settings),
    )
    return Endpoint(chat, f"{model_name}@{redact_spec(base)}", base)


def make_endpoints(settings: LLMSettings) -> list[Endpoint]:
    """Build the chat model(s) a spec names; raises LLMConfigError with the setting at fault."""
    spec = settings.spec.strip()
    if not spec:
        raise LLMConfigError("--llm is empty (use 'offline', 'openai:<model>' or a URL)")
    if spec == OFFLINE_MODEL_NAME:
        model = OfflineChatModel(seed=settings.seed, latency_s=settings.offline_latency_s)
        return [Endpoint(model, OFFLINE_MODEL_NAME)]
    if spec.startswith("openai:"):
        from langchain_openai import ChatOpenAI

        name = spec.split(":", 1)[1].strip()
        if not name:
            raise LLMConfigError("--llm openai:<model> needs a model name, e.g. openai:gpt-4o-mini")
        if not os.environ.get("OPENAI_API_KEY"):
            raise LLMConfigError(f"--llm {spec}: OPENAI_API_KEY is not set")
        base = os.environ.get("OPENAI_BASE_URL") or None
        chat = ChatOpenAI(
            model=name,
            timeout=settings.timeout_s,
            max_retries=0,
            temperature=settings.temperature,
            base_url=base,
            http_async_client=_http_client(settings),
        )
        return [Endpoint(chat, spec, base)]
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
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self._records: list[CallRecord] = []

    @property
    def label(self) -> str:
        """What the console banner and the run log call this engine."""
        return ",".join(e.label for e in self.endpoints)

    @property
    def is_offline(self) -> bool:
        """True when the offline engine answers (no language model is used)."""
        return all(isinstance(e.model, OfflineChatModel) for e in self.endpoints)

    def drain_records(self) -> list[CallRecord]:
        """Hand over (and forget) the call records collected since the last drain."""
        records, self._records = self._records, []
        return records

    def _pick(self) -> tuple[int, Endpoint]:
        loop = asyncio.get_running_loop()
        if self._endpoints_loop is not loop:
            # HTTP clients keep connection pools bound to the loop that opened them; a client
            # reused under a new event loop gets fresh ones instead of dead connections.
            if self._owns_endpoints and self._endpoints_loop is not None:
                self.endpoints = make_endpoints(self.settings)
            self._endpoints_loop = loop
        index = self._next % len(self.endpoints)
        self._next += 1
        return index, self.endpoints[index]

    def _bind_kwargs(self, schema: type[BaseModel]) -> dict[str, Any]:
        if self.settings.structured_method == "tools":
            return {"tools": [convert_to_openai_tool(schema)], "tool_choice": schema.__name__}
        return {"response_format": _response_format(schema)}

    def _bound(self, endpoint: Endpoint, schema: type[BaseModel]) -> Any:
        if self.settings.structured_method == "tools":
            return endpoint.model.bind_tools([schema], tool_choice=schema.__name__)
        return endpoint.model.bind(response_format=_response_format(schema))

    async def _attempt(self, endpoint: Endpoint, schema: type[BaseModel],
                       messages: list[BaseMessage]) -> AIMessage:
        if isinstance(endpoint.model, OfflineChatModel):
            # In-process engine: skip LangChain's per-call callback machinery (about 1 ms a
            # call), answer exactly what the model class would. No semaphore is needed either.
            return await endpoint.model.answer_async(messages, **self._bind_kwargs(schema))
        runnable = self._bound(endpoint, schema)
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            # a semaphore belongs to one event loop; each run may bring its own loop
            self._semaphore = asyncio.Semaphore(self.settings.concurrency)
            self._semaphore_loop = loop
        async with self._semaphore:
            return await asyncio.wait_for(runnable.ainvoke(messages), self.settings.timeout_s)

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
        ``LLMUnavailable`` when the endpoint cannot be reached at all.
        """
        records: list[CallRecord] = []
        base = CallRecord(purpose=purpose, model="", attempt=0, status="", latency_ms=0.0,
                          persona_id=persona_id, step=step)
        conversation = list(messages)
        repaired = False
        attempt = 0
        transport_failures = 0
        raw: str | None = None
        while True:
            attempt += 1
            index, endpoint = self._pick()
            started = time.perf_counter()
            record = replace(base, model=endpoint.label, attempt=attempt, endpoint=index,
                             call_id=uuid.uuid4().hex[:16], started_at=time.time())
            try:
                message = await self._attempt(endpoint, schema, conversation)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a record
                record.latency_ms = (time.perf_counter() - started) * 1000
                description, retryable = _error_kind(exc)
                record.status, record.error = "error", description
                records.append(record)
                transport_failures += 1
                if retryable and transport_failures <= self.settings.max_retries:
                    delay = self.settings.backoff_s * 2 ** (transport_failures - 1)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    continue
                self._records.extend(records)
                if _is_unreachable(exc):
                    raise LLMUnavailable(
                        f"model endpoint {endpoint.label} is unreachable ({description}); "
                        "check --llm / PERSONAHUB_LLM"
                    ) from exc
                return StructuredResult(None, records, raw)
            record.latency_ms = (time.perf_counter() - started) * 1000
            record.tokens_in, record.tokens_out = _usage(message)
            raw = _payload(message, self.settings.structured_method)
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
                continue
            record.status = "ok"
            records.append(record)
            self._records.extend(records)
            return StructuredResult(value, records, raw)


def make_llm_client(settings: LLMSettings) -> LLMClient:
    """Build a client for ``settings.spec`` (raises LLMConfigError on a bad spec)."""
    return LLMClient(settings)


def resolve_spec(cli_value: str | None) -> str:
    """The spec from --llm, else ``PERSONAHUB_LLM``, else ``offline``."""
    return cli_value or os.environ.get("PERSONAHUB_LLM") or OFFLINE_MODEL_NAME


def check_reachable(client: LLMClient, timeout_s: float = 5.0) -> None:
    """Fail fast with one line when an HTTP endpoint does not answer at all.

    Any HTTP answer (even 401 or 404) counts as reachable; only connection failures do not.
    """
    import httpx

    for endpoint in client.endpoints:
        if endpoint.base_url is None and isinstance(endpoint.model, OfflineChatModel):
            continue
        url = (endpoint.base_url or "https://api.openai.com/v1").rstrip("/") + "/models"
        try:
            httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise LLMUnavailable(
                f"model endpoint {endpoint.label} is unreachable ({type(exc).__name__}); "
                "check --llm / PERSONAHUB_LLM"
            ) from exc

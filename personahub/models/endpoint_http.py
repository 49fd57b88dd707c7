"""An OpenAI-compatible HTTP server (or OpenAI itself) as an endpoint, through LangChain's ChatOpenAI.

While auto mode has not settled an endpoint's mode, one request at a time goes to it, so the first
refusal moves every waiting call on instead of each call being refused once.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncGenerator, Callable
from functools import cache
from typing import Any

from pydantic import BaseModel

from personahub.core.call_spill import SinkSlot
from personahub.core.contracts import CallRequest, Capabilities, StructuredResult
from personahub.models.attempts import answered, failed, straggled
from personahub.models.prompt_prefix import SharedPrefixMeter
from personahub.models.seam_deadlines import StragglerDeadlines
from personahub.models.structured import (
    NO_KEYWORDS,
    ModeBook,
    StructuredMode,
    openai_tools,
    prepare_messages,
    response_format,
    sent_mode,
    tool_choice,
)

HTTP_CAPABILITIES = Capabilities()

# langchain-openai's warning on a refused response_format advises code that is not this one; the
# seam handles the refusal itself, so the warning is silenced
for _advice in ("Invalid schema for OpenAI's structured output feature",
                "This model does not support OpenAI's structured output feature"):
    warnings.filterwarnings("ignore", message=_advice, category=UserWarning)
PREFIX_WINDOW = 1024  # prompts the shared-prefix estimate compares a new prompt with
# One HTTP client per endpoint and event loop, its pool sized to the concurrency: over aiohttp one
# pool of 256 costs well under a millisecond of CPU per call (httpcore's took 7-9 s of setup at 256).


# A fresh sample is seeded with this + sample, so a server that seeds its sampler draws another
# answer (and, under greedy decoding, gets a temperature that lets it differ).
FRESH_SEED_BASE = 7919
FRESH_TEMPERATURE = 0.7


def request_kwargs(schema: type[BaseModel], mode: StructuredMode, max_tokens: int,
                   max_tokens_param: str, sample: int = 0, greedy: bool = False,
                   stripped: frozenset[str] = NO_KEYWORDS) -> dict[str, Any]:
    """The keyword arguments that ask for a schema in a mode with an output limit.

    The response format and limit travel in the extra body: as typed parameters the openai SDK walks the
    whole schema on every request (more CPU than the rest of the call), and langchain-openai renames
    max_tokens to max_completion_tokens, which llama-cpp-python ignores.
    """
    body: dict[str, Any] = {max_tokens_param: max_tokens}
    if sample:
        body["seed"] = FRESH_SEED_BASE + sample
        if greedy:
            body["temperature"] = FRESH_TEMPERATURE
    fmt = response_format(schema, mode, stripped)
    if fmt is not None:
        body["response_format"] = fmt
    if mode == "tools":
        return {"tools": openai_tools(schema, stripped), "tool_choice": tool_choice(schema),
                "extra_body": body}
    return {"extra_body": body}


def _callbacks_configured() -> bool:
    """Whether LangChain would hand a chat model call to callbacks (tracing or env handlers)."""
    from langchain_core.callbacks.manager import AsyncCallbackManager

    manager = AsyncCallbackManager.configure()
    return bool(manager.handlers or manager.inheritable_handlers)


@cache
def _child_config() -> Any:
    from langchain_core.runnables.config import var_child_runnable_config

    return var_child_runnable_config


def _parent_callbacks() -> bool:
    """Whether the caller runs inside a LangChain run that passes callbacks down (a traced node)."""
    config = _child_config().get()
    return bool(config and config.get("callbacks"))


async def generate(model: Any, messages: list[Any], kwargs: dict[str, Any],
                   callbacks: bool) -> Any:
    """The chat model's answer to the messages.

    Without callbacks to serve it calls the model's generate method directly: ainvoke would open an
    empty callback run costing about a fifth of the client's CPU per call (bench/bench_concurrency.py).
    The message is the same.
    """
    if callbacks or _parent_callbacks():
        return await model.ainvoke(messages, **kwargs)
    return first_message(await model._agenerate(messages, **kwargs))


def first_message(result: Any) -> Any:
    """The first generation's message, with its info merged into the metadata as ainvoke does."""
    generation = result.generations[0]
    message = generation.message
    message.response_metadata = {**(result.llm_output or {}), **(generation.generation_info or {}),
                                 **message.response_metadata}
    return message


def wire_body(model: Any, messages: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the model posts: LangChain's payload with the extra body merged in, as the SDK does."""
    payload = model._get_request_payload(messages, **kwargs)
    extra = payload.pop("extra_body", None) or {}
    return {**payload, **extra}


async def _close_at_shutdown(model: object) -> AsyncGenerator[None, None]:
    """Wait for the event loop's shutdown, then close the model's client."""
    try:
        yield
    finally:
        root = getattr(model, "root_async_client", None)
        if root is not None:
            await root.close()


class HttpEndpoint:
    """One server: its chat model, its structured mode, and a timeout per request."""

    capabilities = HTTP_CAPABILITIES

    def __init__(self, *, label: str, model_name: str, base_url: str | None,
                 make_model: Callable[[], Any], timeout_s: float, modes: ModeBook,
                 index: int = 0, max_tokens_param: str = "max_tokens") -> None:
        self.label, self.model_name, self.base_url = label, model_name, base_url
        self.index, self.modes, self.timeout_s = index, modes, timeout_s
        self.max_tokens_param = max_tokens_param
        self._make_model = make_model
        self.model: Any = make_model()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kwargs: dict[tuple[type[BaseModel], str, int, int, frozenset[str]],
                           dict[str, Any]] = {}
        self._probe_locks: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._callbacks = False
        self.prompt_prefix = SharedPrefixMeter(PREFIX_WINDOW)
        self.deadlines = StragglerDeadlines(timeout_s)
        self.spill = SinkSlot()

    def current_mode(self) -> str:
        """The structured mode this endpoint is asked in now, with the keywords it is sent without."""
        return sent_mode(self.modes.mode(self.index), self.modes.stripped(self.index))

    async def _on_loop(self) -> None:
        """The chat model for the running event loop: pools are bound to the loop that opened them, so a new
        loop gets a fresh client, closed when its loop shuts down.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                self.model = self._make_model()
                self._kwargs.clear()
            self._loop = loop
            self.deadlines.forget_in_flight()
            self._callbacks = _callbacks_configured()
            self._closer = _close_at_shutdown(self.model)
            await anext(self._closer)

    def _request_kwargs(self, request: CallRequest, mode: StructuredMode,
                        stripped: frozenset[str]) -> dict[str, Any]:
        """The call's arguments for this schema, mode, limit, sample and stripped keywords (cached)."""
        key = (request.schema, mode, request.max_tokens, request.sample, stripped)
        kwargs = self._kwargs.get(key)
        if kwargs is None:
            greedy = getattr(self.model, "temperature", None) == 0
            kwargs = self._kwargs[key] = request_kwargs(request.schema, mode, request.max_tokens,
                                                        self.max_tokens_param, request.sample,
                                                        greedy, stripped)
        return kwargs

    async def _probe(self) -> asyncio.Lock | None:
        """The held probe lock while auto mode has not settled this endpoint's mode, else None."""
        if not self.modes.adaptive or self.modes.settled(self.index):
            return None
        loop = asyncio.get_running_loop()
        if self._probe_locks is None or self._probe_locks[0] is not loop:
            self._probe_locks = (loop, asyncio.Lock())  # a lock belongs to one event loop
        lock = self._probe_locks[1]
        await lock.acquire()
        if self.modes.settled(self.index):  # settled while this call waited
            lock.release()
            return None
        return lock

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        """One request (under the probe while the mode is being learned)."""
        if self._loop is not asyncio.get_running_loop():
            await self._on_loop()
        probe = await self._probe()
        try:
            return await self._send(request, probe=probe is not None)
        finally:
            if probe is not None:
                probe.release()

    # what a batch needs: the same body, the same reading
    def request_body(self, request: CallRequest) -> tuple[dict[str, Any], str]:
        """The body an online call would post now, and its mode as recorded."""
        mode, stripped = self.modes.mode(self.index), self.modes.stripped(self.index)
        messages = prepare_messages(mode, request.schema, request.messages, stripped)
        body = wire_body(self.model, messages, self._request_kwargs(request, mode, stripped))
        return body, sent_mode(mode, stripped)

    def answer_message(self, body: dict[str, Any]) -> Any:
        """A completion body read as ChatOpenAI reads an online answer."""
        return first_message(self.model._create_chat_result(body))

    async def openai_client(self) -> Any:
        """This endpoint's openai client for the running event loop (for files and batches)."""
        if self._loop is not asyncio.get_running_loop():
            await self._on_loop()
        return self.model.root_async_client

    async def _send(self, request: CallRequest, probe: bool = False) -> StructuredResult[Any]:
        mode, stripped = self.modes.mode(self.index), self.modes.stripped(self.index)
        record = request.record(model=self.label, endpoint=self.index,
                                structured_mode=sent_mode(mode, stripped))
        messages = prepare_messages(mode, request.schema, request.messages, stripped)
        self.prompt_prefix.add(messages)
        deadlines = self.deadlines
        limit = deadlines.limit(request.purpose, request.max_tokens, request.stragglers, probe)
        sink = self.spill.sink
        if sink is not None:  # on record before the server has it
            sink.sent(record)
        sent = asyncio.get_running_loop().time()
        started = time.perf_counter()
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                if not deadlines.warm:
                    deadlines.track(scope, sent, request.purpose, request.max_tokens,
                                    request.stragglers)
                message = await generate(self.model, messages,
                                         self._request_kwargs(request, mode, stripped),
                                         self._callbacks)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            deadlines.untrack(scope)
            result = failed(record, exc, started)
            if isinstance(exc, TimeoutError) and deadlines.cut_short(scope, sent, probe):
                return straggled(result, warm=deadlines.warm)
            return result
        deadlines.untrack(scope)
        result = answered(record, message, mode, started)
        deadlines.observe(request.purpose, record.latency_ms / 1000, record.tokens_out)
        return result

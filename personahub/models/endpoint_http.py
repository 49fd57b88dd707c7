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
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from personahub.core.call_spill import SinkSlot
from personahub.core.contracts import CallRecord, CallRequest, Capabilities, StructuredResult
from personahub.models.attempts import answered, failed, straggled
from personahub.models.prompt_prefix import SharedPrefixMeter, prompt_text
from personahub.models.seam_deadlines import StragglerDeadlines
from personahub.models.slot_routing import SlotRouter, llama_cpp_slots
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

if TYPE_CHECKING:
    from contextvars import ContextVar

    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatResult
    from langchain_core.runnables import RunnableConfig
    from langchain_openai import ChatOpenAI
    from openai import AsyncOpenAI

HTTP_CAPABILITIES = Capabilities()

# langchain-openai's warning on a refused response format advises other code; the seam handles it
for _advice in ("Invalid schema for OpenAI's structured output feature",
                "This model does not support OpenAI's structured output feature"):
    warnings.filterwarnings("ignore", message=_advice, category=UserWarning)
PREFIX_WINDOW = 1024
# One HTTP client per endpoint and event loop, its pool sized to the concurrency: over aiohttp one
# pool of 256 is cheap per call, where httpcore's setup at 256 was slow (bench/RESULTS.md).


# a fresh sample's seed, so a seeding server draws another answer (and a greedy one gets a temperature)
FRESH_SEED_BASE = 7919
FRESH_TEMPERATURE = 0.7


def request_kwargs(schema: type[BaseModel], mode: StructuredMode, max_tokens: int,
                   max_tokens_param: str, sample: int = 0, greedy: bool = False,
                   stripped: frozenset[str] = NO_KEYWORDS) -> dict[str, object]:
    """Return the keyword arguments that ask for a schema in a mode with an output limit.

    They travel in the extra body: as typed parameters the openai SDK walks the whole schema on every
    request, and langchain-openai renames max_tokens, which llama-cpp-python then ignores.
    """
    body: dict[str, object] = {max_tokens_param: max_tokens}
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


def with_slot(kwargs: dict[str, object], slot: int) -> dict[str, object]:
    """Return request keyword arguments that also name a llama.cpp server slot (``id_slot``)."""
    body = cast("dict[str, object]", kwargs.get("extra_body") or {})
    return {**kwargs, "extra_body": {**body, "id_slot": slot}}


def _callbacks_configured() -> bool:
    """Whether LangChain would hand a chat model call to callbacks."""
    from langchain_core.callbacks.manager import AsyncCallbackManager

    manager = AsyncCallbackManager.configure()
    return bool(manager.handlers or manager.inheritable_handlers)


@cache
def _child_config() -> ContextVar[RunnableConfig | None]:
    from langchain_core.runnables.config import var_child_runnable_config

    return var_child_runnable_config


def _parent_callbacks() -> bool:
    """Whether the caller runs inside a LangChain run that passes callbacks down."""
    config = _child_config().get()
    return bool(config and config.get("callbacks"))


async def generate(model: ChatOpenAI, messages: list[BaseMessage], kwargs: dict[str, Any],
                   callbacks: bool) -> AIMessage:
    """Return the chat model's answer, bypassing ainvoke's empty callback run when no callback needs it: that
    costs about a fifth of the client's CPU per call (bench/bench_concurrency.py).
    """
    if callbacks or _parent_callbacks():
        return await model.ainvoke(messages, **kwargs)
    return first_message(await model._agenerate(messages, **kwargs))


def first_message(result: ChatResult) -> AIMessage:
    """Return the first generation's message, its info merged in as ainvoke does."""
    generation = result.generations[0]
    message = cast("AIMessage", generation.message)  # a chat model's generation is an AIMessage
    message.response_metadata = {**(result.llm_output or {}), **(generation.generation_info or {}),
                                 **message.response_metadata}
    return message


def wire_body(model: ChatOpenAI, messages: list[BaseMessage],
              kwargs: dict[str, Any]) -> dict[str, object]:
    """Return the JSON body the model posts, extra body merged in as the SDK does."""
    payload = model._get_request_payload(messages, **kwargs)
    extra = payload.pop("extra_body", None) or {}
    return {**payload, **extra}


async def _close_at_shutdown(model: object) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        root = getattr(model, "root_async_client", None)
        if root is not None:
            await root.close()


class HttpEndpoint:
    """One server: its chat model, structured mode and per-request timeout."""

    capabilities = HTTP_CAPABILITIES

    def __init__(self, *, label: str, model_name: str, base_url: str | None,
                 make_model: Callable[[], ChatOpenAI], timeout_s: float, modes: ModeBook,
                 index: int = 0, max_tokens_param: str = "max_tokens",
                 probe_slots: bool = False) -> None:
        self.label, self.model_name, self.base_url = label, model_name, base_url
        self.index, self.modes, self.timeout_s = index, modes, timeout_s
        self.max_tokens_param = max_tokens_param
        self._make_model = make_model
        self.model = make_model()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kwargs: dict[tuple[type[BaseModel], str, int, int, frozenset[str]],
                           dict[str, object]] = {}
        self._probe_locks: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._callbacks = False
        self.prompt_prefix = SharedPrefixMeter(PREFIX_WINDOW)
        self.deadlines = StragglerDeadlines(timeout_s)
        self.spill = SinkSlot()
        # llama.cpp's server only: its slots, found once by GET /props (slot_routing.py)
        self.probe_slots = probe_slots and base_url is not None
        self.slot_router: SlotRouter | None = None
        self._slots_probe: tuple[asyncio.AbstractEventLoop, asyncio.Task[int | None]] | None = None

    def current_mode(self) -> str:
        """Return the structured mode in use now, with the keywords left out."""
        return sent_mode(self.modes.mode(self.index), self.modes.stripped(self.index))

    async def _on_loop(self) -> None:
        """Return the chat model for the running event loop: pools are bound to the loop that opened them."""
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
                        stripped: frozenset[str]) -> dict[str, object]:
        """Return the call's arguments (cached)."""
        key = (request.schema, mode, request.max_tokens, request.sample, stripped)
        kwargs = self._kwargs.get(key)
        if kwargs is None:
            greedy = getattr(self.model, "temperature", None) == 0
            kwargs = self._kwargs[key] = request_kwargs(request.schema, mode, request.max_tokens,
                                                        self.max_tokens_param, request.sample,
                                                        greedy, stripped)
        return kwargs

    async def _probe(self) -> asyncio.Lock | None:
        """Return the held probe lock while auto mode has not settled, else None."""
        if not self.modes.adaptive or self.modes.settled(self.index):
            return None
        loop = asyncio.get_running_loop()
        if self._probe_locks is None or self._probe_locks[0] is not loop:
            self._probe_locks = (loop, asyncio.Lock())
        lock = self._probe_locks[1]
        await lock.acquire()
        if self.modes.settled(self.index):
            lock.release()
            return None
        return lock

    async def _find_slots(self) -> None:
        """Ask the server once whether it is llama.cpp's and how many slots it has; every call
        that arrives meanwhile waits for the one answer."""
        loop = asyncio.get_running_loop()
        if self._slots_probe is None or self._slots_probe[0] is not loop:
            assert self.base_url is not None
            self._slots_probe = (loop, loop.create_task(
                llama_cpp_slots(self.model.root_async_client, self.base_url)))
        slots = await asyncio.shield(self._slots_probe[1])
        if self.probe_slots:
            self.probe_slots = False
            self.slot_router = SlotRouter(slots) if slots else None

    async def call(self, request: CallRequest) -> StructuredResult[BaseModel]:
        """One request (under the probe while the mode is being learned)."""
        if self._loop is not asyncio.get_running_loop():
            await self._on_loop()
        if self.probe_slots:
            await self._find_slots()
        probe = await self._probe()
        try:
            return await self._send(request, probe=probe is not None)
        finally:
            if probe is not None:
                probe.release()

    # what a batch needs: the same body, the same reading
    def request_body(self, request: CallRequest) -> tuple[dict[str, object], str]:
        """Return the body an online call would post now, and its mode."""
        mode, stripped = self.modes.mode(self.index), self.modes.stripped(self.index)
        messages = prepare_messages(mode, request.schema, request.messages, stripped)
        body = wire_body(self.model, messages, self._request_kwargs(request, mode, stripped))
        return body, sent_mode(mode, stripped)

    def answer_message(self, body: dict[str, object]) -> AIMessage:
        """Return a completion body read as ChatOpenAI reads an online answer."""
        return first_message(self.model._create_chat_result(body))

    async def openai_client(self) -> AsyncOpenAI:
        """Return this endpoint's openai client for the running loop (for files and batches)."""
        if self._loop is not asyncio.get_running_loop():
            await self._on_loop()
        return self.model.root_async_client

    async def _send(self, request: CallRequest, probe: bool = False) -> StructuredResult[BaseModel]:
        mode, stripped = self.modes.mode(self.index), self.modes.stripped(self.index)
        record = request.record(model=self.label, endpoint=self.index,
                                structured_mode=sent_mode(mode, stripped))
        messages = prepare_messages(mode, request.schema, request.messages, stripped)
        self.prompt_prefix.add(messages)
        kwargs = self._request_kwargs(request, mode, stripped)
        router, slot = self.slot_router, None
        if router is not None:
            slot = router.choose(prompt_text(messages))
            kwargs = with_slot(kwargs, slot)
        try:
            return await self._post(request, record, messages, kwargs, mode, probe)
        finally:
            if router is not None and slot is not None:
                router.release(slot)

    async def _post(self, request: CallRequest, record: CallRecord, messages: list[BaseMessage],
                    kwargs: dict[str, Any], mode: StructuredMode,
                    probe: bool) -> StructuredResult[BaseModel]:
        """Post one attempt and return its result (a failure becomes a record)."""
        deadlines = self.deadlines
        limit = deadlines.limit(request.purpose, request.max_tokens, request.stragglers, probe)
        sink = self.spill.sink
        if sink is not None:
            sink.sent(record)
        sent = asyncio.get_running_loop().time()
        started = time.perf_counter()
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                if not deadlines.warm:
                    deadlines.track(scope, sent, request.purpose, request.max_tokens,
                                    request.stragglers)
                message = await generate(self.model, messages, kwargs, self._callbacks)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            deadlines.untrack(scope)
            result: StructuredResult[BaseModel] = failed(record, exc, started)
            if isinstance(exc, TimeoutError) and deadlines.cut_short(scope, sent, probe):
                return straggled(result, warm=deadlines.warm)
            return result
        deadlines.untrack(scope)
        result = answered(record, message, mode, started)
        deadlines.observe(request.purpose, record.latency_ms / 1000, record.tokens_out)
        return result

"""An OpenAI-compatible HTTP server (or OpenAI itself) as an endpoint, through ``ChatOpenAI``.

Server kinds differ in the output-limit parameter (OpenAI's own API takes
``max_completion_tokens``, compatible servers ``max_tokens``) and in the structured modes they
accept, which ``models.structured.ModeBook`` learns per endpoint. While ``auto`` has not settled
an endpoint's mode, one request at a time goes to it (a probe): the first refusal then moves every
waiting call to the next mode, instead of each of ``--concurrency`` calls being refused once.

Each endpoint also estimates what the server's prefix cache could reuse of the prompts it sends
(``prompt_prefix``, a ``SharedPrefixMeter`` over its last ``PREFIX_WINDOW`` prompts): the run
summary prints it next to the reuse the server reports (``llm_calls.cached_prompt_tokens``).
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

# langchain-openai warns, on a server's refusal of a response_format, to use its
# ``with_structured_output(method="function_calling")``: advice for code that is not this one.
# The seam handles the refusal itself (it strips the refused keyword or moves to the next mode,
# and records which), so the warning would only put a misleading line on the user's console.
for _advice in ("Invalid schema for OpenAI's structured output feature",
                "This model does not support OpenAI's structured output feature"):
    warnings.filterwarnings("ignore", message=_advice, category=UserWarning)
PREFIX_WINDOW = 1024  # prompts the shared-prefix estimate compares a new prompt with
# One HTTP client per endpoint (and event loop), its pool sized to --concurrency: over the openai
# SDK's aiohttp transport a single pool of 256 connections costs well under a millisecond of CPU
# per call. (httpcore's pool re-scans every connection for every waiting request, which is why
# an endpoint once had one client per 4 connections: 64 clients and 7-9 s of setup at 256.)


# A fresh sample (``CallRequest.sample``) carries ``seed`` = this + sample, so that a server that
# seeds its sampler (llama.cpp, vLLM, OpenAI) draws another answer, and, when the job asked for
# greedy decoding (temperature 0), a temperature that lets it differ at all.
FRESH_SEED_BASE = 7919
FRESH_TEMPERATURE = 0.7


def request_kwargs(schema: type[BaseModel], mode: StructuredMode, max_tokens: int,
                   max_tokens_param: str, sample: int = 0, greedy: bool = False,
                   stripped: frozenset[str] = NO_KEYWORDS) -> dict[str, Any]:
    """The call's keyword arguments (``generate``) that ask for ``schema`` in ``mode`` with an output
    limit (passed to the model directly: a ``.bind()`` wrapper would merge configs on every call
    for nothing).

    The response format and the limit travel in ``extra_body``: as typed parameters the openai
    SDK walks the whole JSON schema on every request (more CPU than the rest of the call), and
    langchain-openai renames ``max_tokens`` to ``max_completion_tokens``, which
    llama-cpp-python ignores. ``stripped``: schema keywords the endpoint refused.
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
    """Whether LangChain would hand a chat model call to callbacks: tracing (LangSmith) or
    handlers registered through the environment. Asked once per endpoint and event loop."""
    from langchain_core.callbacks.manager import AsyncCallbackManager

    manager = AsyncCallbackManager.configure()
    return bool(manager.handlers or manager.inheritable_handlers)


@cache
def _child_config() -> Any:
    """LangChain's context variable holding a running run's config for its children (imported
    once, on the first call, not with this module)."""
    from langchain_core.runnables.config import var_child_runnable_config

    return var_child_runnable_config


def _parent_callbacks() -> bool:
    """Whether the caller runs inside a LangChain run that passes callbacks down (a traced
    LangGraph node): its model calls must then show up in that run."""
    config = _child_config().get()
    return bool(config and config.get("callbacks"))


async def generate(model: Any, messages: list[Any], kwargs: dict[str, Any],
                   callbacks: bool) -> Any:
    """The chat model's answer to ``messages`` as an ``AIMessage``.

    With callbacks to serve, through ``ainvoke``. Without, through the model's own
    ``_agenerate`` (the method every LangChain chat model implements and ``ainvoke`` ends in):
    ``ainvoke`` would open a callback run with no handler in it (a run id, a run manager, a task
    gathering one generation, a shielded task for ``on_llm_end``), about a fifth of the client's
    CPU per call and a dozen extra turns of the event loop, each one a wait behind every other
    answer when hundreds are in flight (``bench/bench_concurrency.py``). The message is the one
    ``ainvoke`` returns: the generation's info and the model's output merged into its
    ``response_metadata`` as ``BaseChatModel`` does.
    """
    if callbacks or _parent_callbacks():
        return await model.ainvoke(messages, **kwargs)
    return first_message(await model._agenerate(messages, **kwargs))


def first_message(result: Any) -> Any:
    """The first generation's message of a ``ChatResult``, with the generation's info and the
    model's output merged into its ``response_metadata`` as ``BaseChatModel.ainvoke`` does."""
    generation = result.generations[0]
    message = generation.message
    message.response_metadata = {**(result.llm_output or {}), **(generation.generation_info or {}),
                                 **message.response_metadata}
    return message


def wire_body(model: Any, messages: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON body ``model`` (a ``ChatOpenAI``) posts to ``/chat/completions`` for
    ``messages`` and the call's ``kwargs``: LangChain's payload with its ``extra_body`` merged
    in, as the openai SDK merges it (``tests/agents/test_llm_batch.py`` checks it against what
    the server receives online)."""
    payload = model._get_request_payload(messages, **kwargs)
    extra = payload.pop("extra_body", None) or {}
    return {**payload, **extra}


async def _close_at_shutdown(model: object) -> AsyncGenerator[None, None]:
    """Suspended for the life of the event loop; the loop's ``shutdown_asyncgens`` (run by
    ``asyncio.run`` and ``run_loop.close_quietly``) resumes it to close ``model``'s client."""
    try:
        yield
    finally:
        root = getattr(model, "root_async_client", None)
        if root is not None:
            await root.close()


class HttpEndpoint:
    """One server: its chat model (one HTTP client), its structured mode, a timeout per request
    (``--timeout``, or sooner for a straggler: ``models.seam_deadlines``)."""

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
        self.deadlines = StragglerDeadlines(timeout_s)  # an attempt's deadline (seam_deadlines)
        # where an attempt is recorded as it goes out: the client's slot (``LLMClient._build``)
        self.spill = SinkSlot()

    def current_mode(self) -> str:
        """The structured mode this endpoint is asked in now, and the schema keywords it is sent
        without (``json_schema without maxLength``), as ``runs.config.structured_modes`` says."""
        return sent_mode(self.modes.mode(self.index), self.modes.stripped(self.index))

    async def _on_loop(self) -> None:
        """HTTP clients keep connection pools bound to the loop that opened them: under a new
        event loop the endpoint gets a fresh client instead of dead connections, and the client
        is closed when its loop shuts down (aiohttp warns about sessions left open)."""
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
        """The call's arguments for this schema, mode, limit, sample and stripped keywords
        (built once: they cost)."""
        key = (request.schema, mode, request.max_tokens, request.sample, stripped)
        kwargs = self._kwargs.get(key)
        if kwargs is None:
            greedy = getattr(self.model, "temperature", None) == 0
            kwargs = self._kwargs[key] = request_kwargs(request.schema, mode, request.max_tokens,
                                                        self.max_tokens_param, request.sample,
                                                        greedy, stripped)
        return kwargs

    async def _probe(self) -> asyncio.Lock | None:
        """The held probe lock while ``auto`` has not settled this endpoint's mode, else None."""
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

    # -- what a batch needs (models.provider_batch): the same body, the same reading ----------
    def request_body(self, request: CallRequest) -> tuple[dict[str, Any], str]:
        """The chat.completions body an online call of ``request`` would post now (in the
        endpoint's current structured mode, without the keywords it refused), and that mode as
        ``llm_calls.structured_mode`` records it."""
        mode, stripped = self.modes.mode(self.index), self.modes.stripped(self.index)
        messages = prepare_messages(mode, request.schema, request.messages, stripped)
        body = wire_body(self.model, messages, self._request_kwargs(request, mode, stripped))
        return body, sent_mode(mode, stripped)

    def answer_message(self, body: dict[str, Any]) -> Any:
        """A chat.completion body read as an online answer is (``ChatOpenAI``'s own reading:
        content, tool calls, usage, finish reason), as an ``AIMessage``."""
        return first_message(self.model._create_chat_result(body))

    async def openai_client(self) -> Any:
        """This endpoint's ``AsyncOpenAI`` client (base URL, key, query, HTTP pool) for the
        event loop that is running: its ``files`` and ``batches`` resources."""
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
        if sink is not None:  # on record before the server has it (core.call_spill: ``sent``)
            sink.sent(record)
        sent = asyncio.get_running_loop().time()
        started = time.perf_counter()
        scope = asyncio.timeout(limit)  # no extra task per call
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

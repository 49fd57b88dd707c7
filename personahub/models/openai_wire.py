"""An openai chat completions resource that posts LangChain's request body as it is: the SDK's payload
walk and typed answer cost a sizeable share of a client's CPU per call (bench/bench_concurrency.py).
tests/agents/test_openai_wire.py checks both paths send the same body and headers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping
from functools import cache
from typing import Any, TypedDict, TypeVar

from openai import AsyncOpenAI, AsyncStream, BaseModel
from openai._base_client import URL, make_request_options
from openai._models import FinalRequestOptions
from openai._types import NOT_GIVEN, Body, Headers, NotGiven, Omit, Query, Timeout
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletionChunk

# parameters the SDK's transform leaves as they are
PLAIN_KEYS = frozenset({
    "model", "messages", "stream", "temperature", "top_p", "n", "seed", "stop", "max_tokens",
    "max_completion_tokens", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
    "user", "tools", "tool_choice", "parallel_tool_calls",
})
_TAKES_SECURITY = "security" in inspect.signature(make_request_options).parameters
_PATH = "/chat/completions"
_POST_OPTIONS = FinalRequestOptions.construct(method="post", url=_PATH, json_data=None, content=None,
                                              files=None)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MAX_CACHED = 64  # a client sends one or two kinds of request; the bound keeps a leak impossible


class CompletionJSON(BaseModel):
    """The pass-through's result type: the decoded JSON itself."""

    @classmethod
    def build(cls, *, response: object, data: object) -> object:  # noqa: ARG003 - the protocol's
        return data


def _given(value: object) -> bool:
    return not isinstance(value, NotGiven | Omit)


def is_plain(params: Mapping[str, object]) -> bool:
    """Return True when the SDK's transform would return the parameters unchanged."""
    if params.get("stream") or not set(params) <= PLAIN_KEYS:
        return False
    messages = params.get("messages")
    if not isinstance(messages, list | tuple):
        return False
    return all(isinstance(m, dict) and isinstance(m.get("content"), str | None) for m in messages)


class PassThroughCompletions(AsyncCompletions):
    """Chat completions without the per-request payload walk."""

    async def create(self, *, extra_headers: Headers | None = None, extra_query: Query | None = None,
                     extra_body: Body | None = None,
                     timeout: float | Timeout | None | NotGiven = NOT_GIVEN,
                     **params: Any) -> Any:
        """Post plain parameters as the body, else the SDK's own create."""
        params = {k: v for k, v in params.items() if _given(v)}
        if not is_plain(params):
            return await super().create(extra_headers=extra_headers, extra_query=extra_query,
                                        extra_body=extra_body, timeout=timeout, **params)
        params["messages"] = list(params["messages"])
        return await self._client.request(
            CompletionJSON, post_options(params, extra_headers=extra_headers,
                                         extra_query=extra_query, extra_body=extra_body,
                                         timeout=timeout),
            stream=False, stream_cls=AsyncStream[ChatCompletionChunk])


def post_options(body: Mapping[str, object], **extras: Any) -> FinalRequestOptions:
    """Return the SDK's post options, from a cached fixed part."""
    if _TAKES_SECURITY:
        extras["security"] = {"bearer_auth": True}
    return _POST_OPTIONS.model_copy(update={**make_request_options(**extras), "json_data": body})


def _cached(cache: dict[K, V], key: K, merge: Callable[[K], V]) -> V:
    hit = cache.get(key)
    if hit is None:
        hit = merge(key)
        if len(cache) < _MAX_CACHED:
            cache[key] = hit
    return hit


class PassThroughOpenAI(AsyncOpenAI):
    """An openai client that merges its base URL with a path once per pair."""

    @property
    def user_agent(self) -> str:
        """The SDK's own user agent."""
        return f"{AsyncOpenAI.__name__}/Python {self._version}"

    def _prepare_url(self, url: str) -> URL:
        base = self._base_url
        cache: dict[str, URL] | None = self.__dict__.get("_prepared_urls")
        if cache is None or self.__dict__.get("_prepared_base") is not base:
            cache = self.__dict__["_prepared_urls"] = {}
            self.__dict__["_prepared_base"] = base
        return _cached(cache, url, super()._prepare_url)


class MergedOnce:
    """Mixin caching an httpx client's request building per distinct input (the SDK repeats the same URL
    and headers); requests copy their headers, so a cached result never changes.
    """

    def build_request(self, method: str, url: object, *, params: object = None,
                      **kwargs: object) -> object:
        """Build a request as httpx's own does, but an empty query on a URL without one is passed as none."""
        if params is not None and not params and isinstance(url, str) and "?" not in url \
                and not self.params:  # type: ignore[attr-defined]
            params = None
        return super().build_request(method, url, params=params, **kwargs)  # type: ignore[misc]

    def _merge_url(self, url: object) -> object:
        merge = super()._merge_url  # type: ignore[misc]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return merge(url)
        cache: dict[str, object] = self.__dict__.setdefault("_merged_urls", {})
        return _cached(cache, url, merge)

    def _merge_headers(self, headers: object = None) -> object:
        merge = super()._merge_headers  # type: ignore[misc]
        if not isinstance(headers, list):
            return merge(headers)
        try:  # the client's own headers are part of the answer
            key = (tuple(self.headers.raw), tuple(headers))  # type: ignore[attr-defined]
            hash(key)
        except TypeError:
            return merge(headers)
        cache: dict[tuple[tuple[object, ...], tuple[object, ...]], object] = \
            self.__dict__.setdefault("_merged_headers", {})
        return _cached(cache, key, lambda _: merge(headers))


@cache
def merging_urls_once(client_class: type) -> type:
    return type(client_class.__name__, (MergedOnce, client_class), {})


class PassThroughClients(TypedDict):
    """ChatOpenAI's client arguments."""

    root_async_client: AsyncOpenAI
    async_client: PassThroughCompletions


def pass_through_clients(client: AsyncOpenAI) -> PassThroughClients:
    """ChatOpenAI arguments that make it use a client with the pass-through."""
    return {"root_async_client": client, "async_client": PassThroughCompletions(client)}

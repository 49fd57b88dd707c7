"""From an --llm spec to endpoints, with credentials kept to the endpoint they belong to.

OPENAI_API_KEY goes only to OpenAI; another server gets a key only from a variable its URL names
(*_API_KEY or PERSONAHUB_KEY_*, so HOME cannot leak), never over plain http to a remote host unless
allowed.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from functools import cache, partial
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from personahub.core.contracts import Endpoint
from personahub.models.endpoint_http import HttpEndpoint
from personahub.models.endpoint_offline import OfflineEndpoint
from personahub.models.field_writers import FieldWriters
from personahub.models.offline import OFFLINE_MODEL_NAME, OfflineChatModel
from personahub.models.settings import LLMConfigError, LLMSettings
from personahub.models.structured import ModeBook

if TYPE_CHECKING:
    import ssl
    from types import ModuleType

    from langchain_openai import ChatOpenAI

# query parameters personahub reads itself
_OWN_PARAMS = frozenset({"model", "api_key", "api_key_env", "allow_http_key", "slot_routing"})
# query parameters stored unredacted
_PUBLIC_PARAMS = frozenset({"model", "api_key_env", "allow_http_key", "slot_routing"})
_YES, _NO = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
OPENAI_API_BASE = "https://api.openai.com/v1"


def _redact_one(item: str) -> str:
    url = urlsplit(item)
    try:
        netloc = url.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if url.port:
            netloc += f":{url.port}"
    except ValueError:  # a bad port: shown as written, credentials not
        netloc = url.netloc.rsplit("@", 1)[-1]
    if url.username or url.password:
        netloc = "***@" + netloc
    query = urlencode([(k, v if k in _PUBLIC_PARAMS else "***")
                       for k, v in parse_qsl(url.query, keep_blank_values=True)], safe="*")
    return urlunsplit((url.scheme, netloc, url.path, query, ""))


def redact_spec(spec: str) -> str:
    """Return the spec with credentials and query values (but the model) redacted."""
    return ",".join(_redact_one(item.strip()) if "://" in item else item.strip()
                    for item in spec.split(","))


def _sdk_httpx() -> ModuleType:
    """Return the httpx the installed openai SDK is built on."""
    from openai import _base_client

    return getattr(_base_client, "httpx2", None) or getattr(_base_client, "httpx")  # noqa: B009


@cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for the process (loading the CA bundle is slow)."""
    return _sdk_httpx().create_ssl_context()


def _http_client(settings: LLMSettings, base_url: str | None) -> Any:
    """Return the endpoint's async HTTP client (aiohttp costs a fraction of httpx's CPU per call). Private:
    pooled connections die with their event loop.
    """
    from openai import DefaultAioHttpClient, DefaultAsyncHttpxClient

    from personahub.models.openai_wire import merging_urls_once

    size = settings.max_in_flight
    options = {"limits": _sdk_httpx().Limits(max_connections=size, max_keepalive_connections=size),
               "timeout": settings.timeout_s,
               "verify": False if _is_plain_http(base_url) else _ssl_context(),
               "follow_redirects": False}  # a key never follows a redirect
    try:
        return merging_urls_once(DefaultAioHttpClient)(**options)
    except RuntimeError:
        return merging_urls_once(DefaultAsyncHttpxClient)(**options)


def chat_openai(model: str, base_url: str | None, api_key: str, settings: LLMSettings,
                query: dict[str, str] | None = None) -> ChatOpenAI:
    """One ChatOpenAI with the endpoint's HTTP client; a key is always given, or the SDK would send
    OPENAI_API_KEY to whatever server this is.
    """
    from langchain_openai import ChatOpenAI

    from personahub.models.openai_wire import PassThroughOpenAI, pass_through_clients

    root = PassThroughOpenAI(api_key=api_key, base_url=base_url, timeout=settings.timeout_s,
                       max_retries=0, http_client=_http_client(settings, base_url),
                       default_query=query or None)
    return ChatOpenAI(model=model, base_url=base_url, api_key=SecretStr(api_key), timeout=settings.timeout_s,
                      max_retries=0, temperature=settings.temperature, top_p=settings.top_p,
                      **pass_through_clients(root))


def _is_plain_http(base_url: str | None) -> bool:
    return bool(base_url) and urlsplit(str(base_url)).scheme.lower() == "http"


def _is_loopback(host: str | None) -> bool:
    return bool(host) and (host in _LOOPBACK_HOSTS or str(host).startswith("127."))


def _same_base(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


KEY_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*_API_KEY|PERSONAHUB_KEY_[A-Za-z0-9_]+", re.IGNORECASE)


def _named_key(url: str, query: dict[str, str]) -> str | None:
    key_env = query.get("api_key_env")
    if key_env is not None and not KEY_VARIABLE.fullmatch(key_env):
        raise LLMConfigError(f"--llm {redact_spec(url)}: api_key_env={key_env} is not a key "
                             "variable; name one whose name ends in _API_KEY or starts with "
                             "PERSONAHUB_KEY_ (e.g. export MY_SERVER_API_KEY=...)")
    if key_env:
        key = os.environ.get(key_env)
        if not key:
            raise LLMConfigError(f"--llm {redact_spec(url)}: api_key_env={key_env} names a variable "
                                 "that is not set")
        return key
    return query.get("api_key") or None


def refuse_url_credentials(url: str, setting: str = "--llm") -> None:
    """Refuse user:password@ in an endpoint URL before anything runs (it failed every call, with the
    password in the spec).
    """
    if urlsplit(url).username is not None:
        raise LLMConfigError(
            f"{setting} {redact_spec(url)}: credentials in the URL (user:password@) are not "
            "supported; put the key in a variable named ..._API_KEY and name it in the URL with "
            "?api_key_env=NAME (docs/models.md, Credentials)")


def _endpoint_key(url: str, parsed: SplitResult, query: dict[str, str]) -> str | None:
    """Return the API key an OpenAI-compatible URL may be sent, or None."""
    base = urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", ""))
    key = _named_key(url, query)
    if key is None and os.environ.get("OPENAI_API_KEY") and (
            _same_base(base, OPENAI_API_BASE)
            or _same_base(base, os.environ.get("OPENAI_BASE_URL") or OPENAI_API_BASE)):
        key = os.environ["OPENAI_API_KEY"]
    if key is None:
        return None
    if (parsed.scheme == "http" and not _is_loopback(parsed.hostname)
            and query.get("allow_http_key", "").lower() not in ("1", "true", "yes")):
        raise LLMConfigError(
            f"--llm {redact_spec(url)}: refusing to send an API key over plain http to "
            f"{parsed.hostname}; use https, or add allow_http_key=1 to the URL on a trusted network")
    return key


def _http(settings: LLMSettings, modes: ModeBook, index: int, *, label: str, name: str,
          base: str | None, key: str, param: str, query: dict[str, str] | None = None,
          route_slots: bool = True) -> HttpEndpoint:
    # OpenAI's API has no llama.cpp slots to ask about; any other server is asked once (GET /props)
    probe = route_slots and base is not None and not _same_base(base, OPENAI_API_BASE)
    return HttpEndpoint(label=label, model_name=name, base_url=base,
                        make_model=partial(chat_openai, name, base, key, settings, query),
                        timeout_s=settings.timeout_s,
                        modes=modes, index=index, max_tokens_param=param, probe_slots=probe)


def _openai_compatible(url: str, settings: LLMSettings, modes: ModeBook, index: int) -> HttpEndpoint:
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError for a port out of 0..65535 or not a number
    except ValueError as exc:
        raise LLMConfigError(f"--llm {redact_spec(url)!r}: not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise LLMConfigError(f"--llm: {redact_spec(url)!r} is not an http(s) URL")
    refuse_url_credentials(url)
    pairs = parse_qsl(parsed.query, keep_blank_values=True)
    query = dict(pairs)
    name = query.get("model") or os.environ.get("PERSONAHUB_MODEL") or "default"
    key = _endpoint_key(url, parsed, query) or "not-needed"
    forward = {k: v for k, v in pairs if k not in _OWN_PARAMS}
    base = urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))
    param = "max_completion_tokens" if _same_base(base, OPENAI_API_BASE) else "max_tokens"
    return _http(settings, modes, index, label=f"{name}@{redact_spec(base)}", name=name, base=base,
                 key=key, param=param, query=forward, route_slots=_slot_routing(url, query))


def _slot_routing(url: str, query: dict[str, str]) -> bool:
    """Read ``slot_routing`` (on unless 0/false/no/off): whether to name llama.cpp's slots."""
    value = query.get("slot_routing", "1").strip().lower()
    if value not in _YES | _NO:
        raise LLMConfigError(f"--llm {redact_spec(url)!r}: slot_routing must be 1 or 0, not {value!r}")
    return value in _YES


def _openai(spec: str, settings: LLMSettings, modes: ModeBook) -> HttpEndpoint:
    name = spec.split(":", 1)[1].strip()
    if not name:
        raise LLMConfigError("--llm openai:<model> needs a model name, e.g. openai:gpt-4o-mini")
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise LLMConfigError(f"--llm {spec}: OPENAI_API_KEY is not set")
    base = os.environ.get("OPENAI_BASE_URL") or None
    if base:
        refuse_url_credentials(base, "OPENAI_BASE_URL")
    param = "max_tokens" if base and not _same_base(base, OPENAI_API_BASE) else "max_completion_tokens"
    return _http(settings, modes, 0, label=spec, name=name, base=base, key=key, param=param)


def with_spec_seed(settings: LLMSettings) -> LLMSettings:
    """Return the settings with an offline seed spec read (its seed wins); other specs unchanged.

    Args:
        settings: The settings, their spec as given.

    Returns:
        The settings the client is built from.
    """
    base, _, query = settings.spec.strip().partition("?")
    if base != OFFLINE_MODEL_NAME or not query:
        return settings
    params = dict(parse_qsl(query, keep_blank_values=True))
    if set(params) != {"seed"}:
        raise LLMConfigError(f"--llm {settings.spec!r}: the offline engine takes only ?seed=N")
    try:
        seed = int(params["seed"])
    except ValueError:
        raise LLMConfigError(f"--llm {settings.spec!r}: seed must be an integer") from None
    return replace(settings, spec=OFFLINE_MODEL_NAME, seed=seed)


def served_models(spec: str) -> str:
    """Return the served models' names a spec asks, as the client's cache_model spells them,
    without building the client (a check made before anything is written).
    """
    spec = spec.strip()
    if spec.partition("?")[0] == OFFLINE_MODEL_NAME:
        return OFFLINE_MODEL_NAME
    if spec.startswith("openai:"):
        return spec.split(":", 1)[1].strip()
    names = {dict(parse_qsl(urlsplit(url.strip()).query)).get("model")
             or os.environ.get("PERSONAHUB_MODEL") or "default"
             for url in spec.split(",") if url.strip()}
    return ",".join(sorted(names))


def spec_size(spec: str) -> int:
    """How many endpoints a spec names."""
    return max(1, len([u for u in spec.split(",") if u.strip()])) if "://" in spec else 1


def make_endpoints(settings: LLMSettings, modes: ModeBook,
                   field_writers: FieldWriters | None = None) -> list[Endpoint]:
    """Build the endpoints a spec names; the offline engine reads field_writers for kinds' fields."""
    spec = settings.spec.strip()
    if not spec:
        raise LLMConfigError("--llm is empty (use 'offline', 'openai:<model>' or a URL)")
    if spec == OFFLINE_MODEL_NAME:
        model = OfflineChatModel(seed=settings.seed, latency_s=settings.offline_latency_s,
                                 writers=field_writers)
        return [OfflineEndpoint(model, use_tools=settings.structured == "tools")]
    if spec.startswith("openai:"):
        return [_openai(spec, settings, modes)]
    if "://" in spec:
        urls = [url.strip() for url in spec.split(",") if url.strip()]
        return [_openai_compatible(url, settings, modes, i) for i, url in enumerate(urls)]
    raise LLMConfigError(
        f"--llm {spec!r} is not understood: use 'offline', 'openai:<model>' or http(s)://host/v1")

"""Routing calls to llama.cpp's server slots (``id_slot``) by shared prompt prefix, and only there."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from personahub.agents.prompts.agent import agent_messages
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.endpoint_specs import make_endpoints
from personahub.models.settings import LLMConfigError
from personahub.models.slot_routing import (
    SPILL_AFTER,
    SlotRouter,
    props_url,
    slots_from_props,
)
from personahub.models.structured import ModeBook
from personahub.tasks.instruction import Instruction
from personahub.tasks.max_tokens import kind_max_tokens
from tests.http_stub import serving

HEAD = "<|system|>\nYou are the person described under Persona.\n<|user|>\n## Task\nWrite one request.\n"


def prompt(persona: str, head: str = HEAD) -> str:
    return f"{head}## Persona\n{persona}\n"


def test_a_family_waits_for_its_warm_slot_rather_than_start_cold_on_another() -> None:
    router = SlotRouter(2)
    first = router.choose(prompt("A ferry pilot"))
    # the same family's second call, the first still running: llama.cpp would start it cold on
    # the idle slot; routed, it queues on the slot computing the shared prefix
    assert router.choose(prompt("A baker who rows")) == first
    assert router.load()[first] == 2


def test_another_family_takes_the_idle_slot() -> None:
    router = SlotRouter(2)
    first = router.choose(prompt("A ferry pilot"))
    other = router.choose(prompt("A ferry pilot", head="<|system|>\nAnswer a survey.\n<|user|>\n"))
    assert other != first


def test_a_busy_warm_slot_gives_way_after_spill_after_calls() -> None:
    router = SlotRouter(2)
    slots = [router.choose(prompt(f"Person {i} of a long family")) for i in range(SPILL_AFTER + 1)]
    assert slots[:SPILL_AFTER] == [slots[0]] * SPILL_AFTER
    assert slots[SPILL_AFTER] != slots[0]  # a large family still uses every slot
    router.release(slots[0])
    assert router.load()[slots[0]] == SPILL_AFTER - 1


def test_an_idle_warm_slot_is_met_again_after_other_families() -> None:
    router = SlotRouter(2)
    a = router.choose(prompt("A ferry pilot"))
    router.release(a)
    b = router.choose(prompt("A ferry pilot", head="<|system|>\nAnswer a survey.\n<|user|>\n"))
    router.release(b)
    assert router.choose(prompt("A market trader")) == a
    assert b != a  # the new family went to the slot holding nothing rather than evict a's prefix


def test_slot_count_is_checked() -> None:
    with pytest.raises(ValueError, match="slots must be"):
        SlotRouter(0)


@pytest.mark.parametrize(("base", "url"), [
    ("http://127.0.0.1:8812/v1", "http://127.0.0.1:8812/props"),
    ("http://host:1/llama/v1/", "http://host:1/llama/props"),
    ("https://host/api", "https://host/api/props"),
])
def test_props_url(base: str, url: str) -> None:
    assert props_url(base) == url


@pytest.mark.parametrize(("body", "slots"), [
    ({"total_slots": 2}, 2), ({"total_slots": 0}, None), ({"total_slots": True}, None),
    ({"total_slots": "2"}, None), ({}, None), ([], None), ({"total_slots": 10_000}, 256),
])
def test_slots_from_props(body: object, slots: int | None) -> None:
    assert slots_from_props(body) == slots


class _Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []
    props: dict[str, Any] | None = None

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append({"method": "GET", "path": self.path})
        props = type(self).props
        if self.path.split("?")[0] == "/props" and props is not None:
            self._answer(200, props)
        else:
            self._answer(404, {"error": {"message": "File Not Found"}})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"method": "POST", "path": self.path, "body": body})
        self._answer(200, {
            "id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": json.dumps({"instruction": "How do tides work?"})}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})


def _serve(props: dict[str, Any] | None) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with serving(type("H", (_Server,), {"seen": seen, "props": props})) as url:
        yield url, seen


@pytest.fixture
def llama_cpp() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for llama.cpp's server: GET /props says two slots."""
    yield from _serve({"total_slots": 2, "model_alias": "m"})


@pytest.fixture
def other_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible server with no /props (vLLM, Ollama, a proxy)."""
    yield from _serve(None)


def _ask(url: str, personas: list[str], query: str = "model=m") -> None:
    client = LLMClient(LLMSettings(spec=f"{url}?{query}", structured="json_schema"))

    async def calls() -> None:
        for persona in personas:  # one after another: the router's choice is deterministic
            result = await client.structured(
                Instruction, agent_messages(persona=persona, kind="instruction"),
                purpose="instruction", max_tokens=kind_max_tokens("instruction"))
            assert result.value is not None

    asyncio.run(calls())


def test_llama_cpp_gets_a_slot_per_family(llama_cpp) -> None:
    url, seen = llama_cpp
    _ask(url, ["A ferry pilot", "A baker who rows", "A market trader"])
    gets = [s for s in seen if s["method"] == "GET"]
    posts = [s["body"] for s in seen if s["method"] == "POST"]
    assert [g["path"] for g in gets] == ["/props"]  # asked once
    assert [p["id_slot"] for p in posts] == [0, 0, 0]  # one family, one warm slot


def test_slot_routing_0_leaves_the_slot_to_llama_cpp(llama_cpp) -> None:
    url, seen = llama_cpp
    _ask(url, ["A ferry pilot", "A baker who rows"], query="model=m&slot_routing=0")
    posts = [s for s in seen if s["method"] == "POST"]
    assert len(posts) == 2 and all("id_slot" not in p["body"] for p in posts)
    assert [s for s in seen if s["method"] == "GET"] == []  # not even asked for its slots
    assert all("slot_routing" not in p["path"] for p in posts)  # personahub's own, not forwarded


def test_a_bad_slot_routing_value_is_refused() -> None:
    settings = LLMSettings(spec="http://127.0.0.1:9/v1?model=m&slot_routing=maybe",
                           structured="json_schema")
    with pytest.raises(LLMConfigError, match="slot_routing must be 1 or 0"):
        make_endpoints(settings, ModeBook("json_schema", 1))


def test_other_servers_never_get_id_slot(other_server) -> None:
    url, seen = other_server
    _ask(url, ["A ferry pilot", "A baker who rows"])
    posts = [s["body"] for s in seen if s["method"] == "POST"]
    assert len(posts) == 2
    assert all("id_slot" not in p for p in posts)
    assert len([s for s in seen if s["method"] == "GET"]) == 1  # asked once, not per call


def test_openai_is_not_asked_for_slots() -> None:
    settings = LLMSettings(spec="https://api.openai.com/v1?model=gpt-4o-mini",
                           structured="json_schema")
    endpoints = make_endpoints(settings, ModeBook("json_schema", 1))
    assert [getattr(e, "probe_slots", None) for e in endpoints] == [False]


def test_a_new_family_goes_where_its_system_text_and_world_are() -> None:
    router = SlotRouter(2)
    world = "<|system|>\nYou are the person described under Persona.\n<|user|>\n## World\nA river town.\n"
    kind = router.choose(prompt("A ferry pilot", head=f"{world}## Task\nWrite one request.\n"))
    survey = router.choose(prompt("A ferry pilot", head="<|system|>\nAnswer a survey.\n<|user|>\n"))
    router.release(kind)
    router.release(survey)
    # another kind shares the system text and world, not the task: the slot holding them takes it
    assert router.choose(prompt("A baker", head=f"{world}## Task\nDescribe one tool.\n")) == kind

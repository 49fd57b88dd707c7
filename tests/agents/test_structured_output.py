"""Structured-output modes, local repair, failure classification and generation limits."""

from __future__ import annotations

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from personahub.core.errors import PersonahubError
from personahub.core.failures import ModelRejected
from personahub.models.failures import FailFast, classify
from personahub.models.generation import FALLBACK_MAX_TOKENS, Generation
from personahub.models.repair import check_answer
from personahub.models.structured import (
    SCHEMA_PROMPT_LEAD,
    ModeBook,
    names_mode,
    prepare_messages,
    response_format,
)
from personahub.personas.text_to_persona import TEXT_TO_PERSONA_MAX_TOKENS
from personahub.tasks.max_tokens import kind_max_tokens, synthesis_max_tokens


class Item(BaseModel):
    name: str = Field(min_length=2)
    count: int


@pytest.mark.parametrize(("raw", "repaired"), [
    ('{"name": "kettle", "count": 3}', False),
    ('```json\n{"name": "kettle", "count": 3}\n```', True),
    ('Sure! Here it is: {"name": "kettle", "count": 3} Hope that helps.', True),
    ('{"name": "kettle", "count": 3,}', True),
    ('{"name": "kettle", "count": "3"}', False),  # pydantic's lax mode coerces it as it is
    ("{'name': 'kettle', 'count': 3}", True),
])
def test_local_repair_accepts_what_is_clearly_meant(raw: str, repaired: bool) -> None:
    checked = check_answer(Item, raw)
    assert checked.value == Item(name="kettle", count=3)
    assert checked.repaired is repaired


@pytest.mark.parametrize(("raw", "fragment", "has_json"), [
    ('{"name": "kettle", "count": 3', "EOF", True),  # never closed: stopped short
    ("I cannot help with that.", "no JSON object", False),
    ('{"name": "k", "count": 3}', "name", True),  # repaired text still fails the schema
    ('{"count": 3}', "name", True),
])
def test_local_repair_refuses_what_is_not_there(raw: str, fragment: str, has_json: bool) -> None:
    checked = check_answer(Item, raw)
    assert checked.value is None and fragment in (checked.error or "")
    assert checked.has_json is has_json


class Line(BaseModel):
    line: str


class Talk(BaseModel):
    turns: list[Line] = Field(min_length=2)


FOUR_TURNS = ('{"turns": [{"line": "hello there"}, {"line": "hi, how are you"}, '
              '{"line": "fine {thanks}"}, {"line": "good to hear"}]}')


def test_an_answer_cut_after_its_inner_objects_closed_is_not_made_whole() -> None:
    """Half of a four-turn answer ends after a closed turn; closing the outer object
    there would accept two turns as the answer (the soak run's nondeterminism)."""
    for cut in range(1, len(FOUR_TURNS) - 1):
        checked = check_answer(Talk, FOUR_TURNS[:cut])
        assert checked.value is None, FOUR_TURNS[:cut]
    assert check_answer(Talk, FOUR_TURNS).value is not None


@pytest.mark.parametrize("raw", [
    '{"turns": [{"line": "a }"}, {"line": "b"}}',  # a bracket short inside a closed object
    "Here: {'turns': [{'line': 'a {'}, {'line': 'b'}]} and a } after",  # braces in strings, prose
    '```json\n{"turns": [{"line": "a"}, {"line": "b \\" }"}]}\n```',  # an escaped quote
])
def test_a_closed_object_with_a_slip_inside_is_still_repaired(raw: str) -> None:
    checked = check_answer(Talk, raw)
    assert checked.value is not None and len(checked.value.turns) == 2 and checked.repaired


def test_a_cut_off_answer_is_never_repaired() -> None:
    checked = check_answer(Item, '{"name": "kettle", "count": 3}', truncated=True)
    assert checked.value is None and "finish_reason=length" in (checked.error or "")


def test_response_formats_per_mode() -> None:
    assert response_format(Item, "json_schema")["type"] == "json_schema"
    assert response_format(Item, "json_schema")["json_schema"]["name"] == "Item"
    fmt = response_format(Item, "json_object")
    assert fmt["type"] == "json_object" and fmt["schema"]["properties"]["count"]["type"] == "integer"
    assert response_format(Item, "tools") is None and response_format(Item, "prompt") is None


def test_prompt_mode_writes_the_schema_into_the_last_user_turn() -> None:
    messages = [SystemMessage("sys"), HumanMessage("make an item")]
    sent = prepare_messages("prompt", Item, messages)
    assert len(sent) == 2 and sent[0] is messages[0]
    assert sent[1].content.startswith("make an item") and SCHEMA_PROMPT_LEAD in sent[1].content
    assert '"count"' in sent[1].content
    assert prepare_messages("json_schema", Item, messages) == messages


@pytest.mark.parametrize(("mode", "status", "text", "refused"), [
    ("json_schema", 500, "Input should be 'text' or 'json_object' at ('body', 'response_format')", True),
    ("json_schema", 400, "response_format json_schema is not supported", True),
    ("json_object", 422, "unknown field response_format", True),
    ("tools", 400, "this model does not support tools", True),
    ("json_schema", 400, "model 'x' not found", False),
    ("json_schema", 429, "response_format rate", False),
    ("prompt", 400, "response_format", False),
])
def test_which_errors_refuse_a_mode(mode, status, text, refused) -> None:
    assert names_mode(mode, status, text) is refused


def test_auto_steps_down_once_per_endpoint_and_keeps_what_works() -> None:
    book = ModeBook("auto", 2)
    assert book.mode(0) == "json_schema"
    assert book.step_down(0, "json_schema") == "json_object"
    assert book.step_down(0, "json_schema") == "json_object"  # a second refusal in flight
    assert book.mode(0) == "json_object" and book.mode(1) == "json_schema"
    assert book.answered(0, "json_object", has_json=True) is None
    assert book.answered(0, "json_object", has_json=False) is None  # settled: kept for the run
    assert book.mode(0) == "json_object"


def test_auto_moves_on_when_answers_ignore_the_format() -> None:
    book = ModeBook("auto", 1)
    assert book.answered(0, "json_schema", has_json=False) is None
    assert book.answered(0, "json_schema", has_json=False) == "json_object"


def test_a_fixed_mode_never_changes() -> None:
    book = ModeBook("tools", 1)
    assert book.step_down(0, "tools") is None and book.mode(0) == "tools"


def _status_error(status: int, message: str, headers: dict[str, str] | None = None) -> Exception:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request,
                              json={"error": {"message": message}})
    return openai.APIStatusError(message, response=response, body={"error": {"message": message}})


@pytest.mark.parametrize(("status", "retryable"), [
    (429, True), (502, True), (503, True), (504, True),
    (400, False), (401, False), (404, False), (422, False), (500, False),
])
def test_only_what_can_pass_is_retried(status: int, retryable: bool) -> None:
    assert classify(_status_error(status, "x")).retryable is retryable


def test_retry_after_is_read() -> None:
    assert classify(_status_error(429, "slow down", {"Retry-After": "7"})).retry_after_s == 7.0
    assert classify(_status_error(503, "busy", {"retry-after-ms": "1500"})).retry_after_s == 1.5
    assert classify(_status_error(429, "slow down")).retry_after_s is None


def test_timeouts_and_dropped_connections_are_retried() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1")
    assert classify(TimeoutError()).retryable
    assert classify(openai.APITimeoutError(request)).retryable
    dropped = classify(openai.APIConnectionError(request=request))
    assert dropped.retryable and dropped.unreachable


def test_fail_fast_stops_on_the_same_rejection_with_a_hint() -> None:
    watch = FailFast(1, limit=3)
    refusal = classify(_status_error(500, "Input should be 'text' or 'json_object' (response_format)"))
    watch.failed(0, refusal, "m@u", "json_schema", "json_schema")
    watch.failed(0, refusal, "m@u", "json_schema", "json_schema")
    with pytest.raises(ModelRejected, match="rejected the first 3 requests.*try --structured json_object"):
        watch.failed(0, refusal, "m@u", "json_schema", "json_schema")


def test_a_refused_connection_reported_as_a_connect_timeout_is_unreachable() -> None:
    # the openai SDK's aiohttp adapter maps a refused connection to httpx's ConnectTimeout
    request = httpx.Request("POST", "http://127.0.0.1/v1")
    timeout = openai.APITimeoutError(request)
    timeout.__cause__ = httpx.ConnectTimeout("cannot connect")
    timeout.__cause__.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    refused = classify(timeout)
    assert refused.retryable and refused.unreachable and "connection error" in refused.description
    slow = openai.APITimeoutError(request)
    slow.__cause__ = httpx.ReadTimeout("slow")
    slow.__cause__.__cause__ = TimeoutError()
    assert classify(slow).description == "timeout"


def test_once_fail_fast_stops_a_job_no_call_is_sent() -> None:
    watch = FailFast(1, limit=1)
    watch.check()  # nothing stopped yet
    with pytest.raises(ModelRejected):
        watch.failed(0, classify(_status_error(400, "bad")), "m", "json_schema", "auto")
    with pytest.raises(ModelRejected, match="rejected the first 1 requests"):
        watch.check()


def test_fail_fast_needs_one_reason_and_no_success() -> None:
    watch = FailFast(1, limit=2)
    watch.failed(0, classify(_status_error(400, "a")), "m", "json_schema", "auto")
    watch.failed(0, classify(_status_error(401, "b")), "m", "json_schema", "auto")  # other reason
    watch.failed(0, classify(_status_error(503, "c")), "m", "json_schema", "auto")  # transient
    watch.succeeded(0)
    for _ in range(5):
        watch.failed(0, classify(_status_error(400, "a")), "m", "json_schema", "auto")


def test_fail_fast_hints() -> None:
    for status, needle in [(401, "api_key_env"), (404, "base URL")]:
        watch = FailFast(1, limit=1)
        with pytest.raises(ModelRejected, match=needle):
            watch.failed(0, classify(_status_error(status, "nope")), "m", "json_schema", "auto")


def test_generation_limits() -> None:
    assert kind_max_tokens("instruction") == 256
    assert synthesis_max_tokens("knowledge_text") == 700
    assert TEXT_TO_PERSONA_MAX_TOKENS == 400
    assert kind_max_tokens("something-new") == synthesis_max_tokens("something-new") == 512
    # the model layer: --max-tokens over the call's own limit, over the fallback
    assert Generation(max_tokens=50).max_tokens_for(256) == 50
    assert Generation().max_tokens_for(256) == 256
    assert Generation().max_tokens_for(None) == FALLBACK_MAX_TOKENS == 512
    for bad in ({"max_tokens": 0}, {"temperature": 3.0}, {"top_p": 0.0}):
        with pytest.raises(PersonahubError):
            Generation(**bad)

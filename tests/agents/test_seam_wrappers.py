"""Each layer of the model seam on its own, over a scripted fake endpoint (no server, no engine)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from personahub.core.contracts import (
    CallRequest,
    Capabilities,
    Failure,
    ModelEndpoint,
    StructuredResult,
    carried_records,
)
from personahub.core.failures import ModelRejected
from personahub.models import seam_retry
from personahub.models.cache import CacheMiss, ResponseCache
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.failures import FailFast
from personahub.models.seam_accounting import Accounted
from personahub.models.seam_cache import CUT_OFF, Cached
from personahub.models.seam_failover import Failover
from personahub.models.seam_limits import Limited
from personahub.models.seam_retry import BACKOFF_CAP_S, Retrying
from personahub.models.seam_validate import Validated
from personahub.models.settings import EndpointFailing, LLMUnavailable
from personahub.models.structured import ModeBook
from personahub.tasks.max_tokens import kind_max_tokens

TRANSIENT = Failure("HTTP 503: busy", True, 503)
UNREACHABLE = Failure("connection error: refused", True, unreachable=True)
REJECTED = Failure("HTTP 401: bad key", False, 401, "bad key")
REFUSED = Failure("HTTP 400: response_format json_schema unsupported", False, 400,
                  "response_format json_schema unsupported")


class Answer(BaseModel):
    text: str


@dataclass
class FakeEndpoint:
    """Answers from a script: a raw string, a (raw, finish_reason) pair, or a Failure."""

    script: list[Any]
    index: int = 0
    label: str = "fake"
    model_name: str = "fake-model"
    base_url: str | None = None
    mode: str = "json_schema"
    capabilities: Capabilities = field(default_factory=Capabilities)
    asked: list[CallRequest] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    def __post_init__(self) -> None:
        self._script = deque(self.script)

    def current_mode(self) -> str:
        return self.mode

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        self.asked.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1
        step = self._script.popleft() if self._script else '{"text": "default"}'
        record = request.record(model=self.label, endpoint=self.index, structured_mode=self.mode)
        if isinstance(step, Failure):
            record.status, record.error = "error", step.description
            return StructuredResult(None, [record], None, failure=step)
        raw, finish = step if isinstance(step, tuple) else (step, "stop")
        record.finish_reason, record.tokens_in, record.tokens_out = finish, 5, 3
        return StructuredResult(None, [record], raw)


def request(text: str = "Say something.") -> CallRequest:
    return CallRequest(Answer, [HumanMessage(text)], "test", 64, "p1", 2)


def run(layer: ModelEndpoint, req: CallRequest | None = None) -> StructuredResult[Any]:
    return asyncio.run(layer.call(req or request()))


def retrying(inner: ModelEndpoint, *, retries: int = 2, modes: ModeBook | None = None,
             endpoints: int = 1) -> Retrying:
    return Retrying(inner, max_retries=retries, backoff_s=0.0, modes=modes or ModeBook("auto", endpoints),
                    fail_fast=FailFast(endpoints))


def test_fake_endpoint_has_the_endpoint_interface() -> None:
    assert isinstance(FakeEndpoint([]), ModelEndpoint)


def test_the_offline_engine_declares_what_it_does_and_needs_no_negotiation() -> None:
    client = LLMClient(LLMSettings(structured="auto"))
    caps = client.endpoints[0].capabilities
    assert caps.native_schemas and caps.in_process and caps.deterministic and client.is_offline
    result = asyncio.run(client.structured(Answer, [HumanMessage("hi")], purpose="t"))
    assert result.value is not None and len(result.records) == 1
    assert client._semaphore is None and not client.modes.settled(0)  # nothing was negotiated
    assert client.structured_modes() == {"offline": "json_schema"}


# --- failover -----------------------------------------------------------------------------------
def test_failover_rotates_and_a_retry_goes_to_the_next_endpoint() -> None:
    a, b = FakeEndpoint([], index=0, label="a"), FakeEndpoint([], index=1, label="b")
    failover = Failover([a, b])
    assert [run(failover).last.model for _ in range(4)] == ["a", "b", "a", "b"]
    assert run(failover, CallRequest(Answer, [], "t", 8, after=0)).last.model == "b"
    assert failover.label == "a,b"


def test_failover_marks_an_unreachable_endpoint_down_and_says_whether_another_is_up() -> None:
    a, b = FakeEndpoint([UNREACHABLE], index=0), FakeEndpoint([], index=1)
    failover = Failover([a, b])
    result = run(failover)
    assert result.failure is not None and result.failure.other_endpoint_up
    assert [failover.pick() for _ in range(3)] == [1, 1, 1]  # a is skipped while down
    lone = Failover([FakeEndpoint([UNREACHABLE])])
    failure = run(lone).failure
    assert failure is not None and not failure.other_endpoint_up


def test_failover_sends_nothing_once_fail_fast_stopped_the_job() -> None:
    endpoint, watch = FakeEndpoint([]), FailFast(1, limit=1)
    failover = Failover([endpoint], fail_fast=watch)
    with pytest.raises(ModelRejected):
        watch.failed(0, REJECTED, "fake", "json_schema", "auto")
    with pytest.raises(ModelRejected):
        run(failover)
    assert endpoint.asked == []


# --- retry --------------------------------------------------------------------------------------
def test_retry_retries_transient_failures_and_numbers_the_attempts() -> None:
    fake = FakeEndpoint([TRANSIENT, TRANSIENT, '{"text": "ok"}'])
    result = run(retrying(fake))
    assert result.failure is None and result.raw == '{"text": "ok"}'
    assert [r.attempt for r in result.records] == [1, 2, 3]
    assert [r.status for r in result.records] == ["error", "error", ""]


def test_retry_stops_the_job_when_the_retries_are_spent_not_on_a_rejection() -> None:
    fake = FakeEndpoint([TRANSIENT] * 5)
    with pytest.raises(EndpointFailing, match="all 2 retries failed") as raised:
        run(retrying(fake, retries=2))
    assert "HTTP 503: busy" in str(raised.value) and "\n" not in str(raised.value)
    assert [r.attempt for r in carried_records(raised.value)] == [1, 2, 3] and len(fake.asked) == 3
    assert isinstance(raised.value, LLMUnavailable)  # a resumable stop, as an unreachable endpoint
    rejected = run(retrying(FakeEndpoint([REJECTED, '{"text": "never"}'])))
    assert rejected.failure == REJECTED and len(rejected.records) == 1


def test_retry_starts_no_attempt_that_could_end_past_the_calls_budget() -> None:
    # a 10 s budget, attempts of up to 20 s: after the first failure another would not fit
    fake = FakeEndpoint([Failure("timeout", True), '{"text": "late"}'])
    layer = Retrying(fake, max_retries=8, backoff_s=0.0, modes=ModeBook("auto", 1),
                     fail_fast=FailFast(1), budget_s=10.0, attempt_s=20.0)
    with pytest.raises(EndpointFailing, match="10 s retry budget") as raised:
        run(layer)
    assert len(fake.asked) == 1 and len(carried_records(raised.value)) == 1
    roomy = Retrying(FakeEndpoint([Failure("timeout", True), '{"text": "in time"}']), max_retries=8,
                     backoff_s=0.0, modes=ModeBook("auto", 1), fail_fast=FailFast(1),
                     budget_s=50.0, attempt_s=20.0)
    assert run(roomy).raw == '{"text": "in time"}'


class QueuedTimeouts:
    """Every attempt waits ``wait_s`` for a slot, then times out after ``attempt_s``, on a fake
    clock (a server that never answers, the calls in line behind a concurrency of 1)."""

    def __init__(self, clock: list[float], wait_s: float, attempt_s: float) -> None:
        self.clock, self.wait_s, self.attempt_s = clock, wait_s, attempt_s
        self.asked = 0

    async def call(self, req: CallRequest) -> StructuredResult[Any]:
        self.asked += 1
        self.clock[0] += self.wait_s + self.attempt_s
        record = req.record(model="fake", endpoint=0, structured_mode="json_schema")
        record.status, record.error = "error", "timeout"
        record.queue_ms, record.latency_ms = self.wait_s * 1000, self.attempt_s * 1000
        return StructuredResult(None, [record], None, failure=Failure("timeout", True))


def test_retry_stops_when_no_call_is_answered_for_the_budget_though_each_call_queued(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot's wait is not in a call's budget, but the layer's time without an answer is:
    with attempts of 3 s behind waits of 6 s and a 10 s budget, the second timeout stops the
    job (12 s without an answer), where the call alone (6 s spent) would try a third time."""
    clock = [100.0]
    monkeypatch.setattr(seam_retry.time, "monotonic", lambda: clock[0])
    fake = QueuedTimeouts(clock, wait_s=6.0, attempt_s=3.0)
    layer = Retrying(fake, max_retries=8, backoff_s=0.0, modes=ModeBook("json_schema", 1),
                     fail_fast=FailFast(1), budget_s=10.0, attempt_s=2.0)
    with pytest.raises(EndpointFailing, match="no call was answered in 12 s") as raised:
        run(layer)
    assert fake.asked == 2 and "10 s retry budget" in str(raised.value)


def test_retry_backs_off_exponentially_with_a_cap_and_asks_a_straggler_again_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        if seconds:  # the fake endpoint's own sleep(0) passes through here too
            slept.append(seconds)

    monkeypatch.setattr(seam_retry.asyncio, "sleep", sleep)
    monkeypatch.setattr(seam_retry.random, "random", lambda: 0.5)  # no jitter
    layer = Retrying(FakeEndpoint([TRANSIENT] * 6 + ['{"text": "ok"}']), max_retries=8,
                     backoff_s=0.5, modes=ModeBook("auto", 1), fail_fast=FailFast(1))
    assert run(layer).failure is None
    assert slept == [0.5, 1.0, 2.0, BACKOFF_CAP_S, BACKOFF_CAP_S, BACKOFF_CAP_S]  # 4.0 capped
    slept.clear()
    straggler = Failure("timeout after 0.30 s, far slower than the endpoint's recent answers", True,
                        straggler=True)
    lowered: list[int] = []
    layer = Retrying(FakeEndpoint([straggler, straggler, '{"text": "ok"}']), max_retries=8,
                     backoff_s=0.5, modes=ModeBook("auto", 1), fail_fast=FailFast(1),
                     on_timeout=lambda: lowered.append(1) or 1)
    assert run(layer).failure is None and slept == [] and lowered == []  # not overload either


def test_retry_steps_the_mode_down_on_a_refusal_and_asks_again_at_once() -> None:
    modes = ModeBook("auto", 1)
    result = run(retrying(FakeEndpoint([REFUSED, '{"text": "ok"}']), modes=modes))
    assert result.failure is None and modes.mode(0) == "json_object"
    assert result.records[0].error.startswith("json_schema refused")


def test_retry_fails_fast_on_the_same_rejection_and_carries_the_records() -> None:
    layer = retrying(FakeEndpoint([REJECTED] * 3))
    for _ in range(2):
        assert run(layer).failure == REJECTED
    with pytest.raises(ModelRejected) as raised:
        run(layer)
    assert len(raised.value.seam_records) == 1  # type: ignore[attr-defined]


def test_retry_raises_unavailable_when_no_endpoint_answers() -> None:
    with pytest.raises(LLMUnavailable, match="unreachable"):
        run(retrying(Failover([FakeEndpoint([UNREACHABLE] * 3)]), retries=1))


def test_retry_lowers_the_concurrency_on_a_timeout() -> None:
    lowered: list[int] = []
    layer = Retrying(FakeEndpoint([Failure("timeout", True), '{"text": "ok"}']), max_retries=1,
                     backoff_s=0.0, modes=ModeBook("auto", 1), fail_fast=FailFast(1),
                     on_timeout=lambda: lowered.append(4) or 4)
    result = run(layer)
    assert lowered == [4] and result.records[0].error == "timeout (concurrency lowered to 4)"


# --- limits -------------------------------------------------------------------------------------
def test_limits_keep_calls_in_flight_under_the_concurrency() -> None:
    fake = FakeEndpoint([])
    layer = Limited(fake, concurrency=2)

    async def many() -> list[StructuredResult[Any]]:
        return await asyncio.gather(*[layer.call(request()) for _ in range(6)])

    results = asyncio.run(many())
    assert fake.most_in_flight == 2 and len(fake.asked) == 6
    assert all(r.last.queue_ms >= 0 for r in results)
    assert layer.slots is not None and layer.lower_on_timeout() is None  # nothing in flight now


# --- cache --------------------------------------------------------------------------------------
def test_cache_records_samples_then_replays_them_without_the_endpoint() -> None:
    fake = FakeEndpoint(['{"text": "one"}', ('{"text": "tw', "length")])
    recording = Cached(fake, params=lambda n: {"max_tokens": n})
    recording.cache = ResponseCache("record", "fake-model")
    first, second = run(recording), run(recording)
    assert [e.sample for e in first.cache_entries + second.cache_entries] == [0, 1]
    assert second.cache_entries[0].error == CUT_OFF
    answers = {e.key: (e.response, e.tokens_in, e.tokens_out, e.error)
               for e in first.cache_entries + second.cache_entries}
    replaying = Cached(FakeEndpoint([]), params=lambda n: {"max_tokens": n})
    replaying.cache = ResponseCache("replay", "fake-model", answers)
    again = [run(replaying), run(replaying)]
    assert [r.raw for r in again] == [first.raw, second.raw]
    assert all(r.last.cached and r.last.endpoint is None for r in again)
    assert again[1].truncated
    with pytest.raises(CacheMiss, match="sample 2"):
        run(replaying)


def test_cache_replays_a_failure_as_a_failure() -> None:
    recording = Cached(FakeEndpoint([REJECTED]), params=lambda n: {})
    recording.cache = ResponseCache("record", "m")
    entry = run(recording).cache_entries[0]
    assert entry.key.endswith(":failed") and entry.error == REJECTED.description
    replaying = Cached(FakeEndpoint([]), params=lambda n: {})
    replaying.cache = ResponseCache("replay", "m", {entry.key: (None, 0, 0, entry.error)})
    result = run(replaying)
    assert result.failure is not None and result.last.status == "error" and result.last.cached


# --- validate and repair ------------------------------------------------------------------------
def test_validate_repairs_locally_without_another_call() -> None:
    fake = FakeEndpoint(['Sure! ```json\n{"text": "fixed",}\n```'])
    result = run(Validated(fake, modes=ModeBook("auto", 1)))
    assert result.value == Answer(text="fixed") and result.last.repaired and len(fake.asked) == 1


def test_an_invalid_answer_gets_one_repair_prompt() -> None:
    fake = FakeEndpoint(['{"wrong": 1}', '{"text": "repaired"}'])
    result = run(Validated(fake, modes=ModeBook("auto", 1)))
    assert [r.status for r in result.records] == ["invalid", "ok"]
    assert "not valid for the schema" in fake.asked[1].messages[-1].content
    assert fake.asked[1].messages != fake.asked[0].messages  # not the same request
    assert [r.attempt for r in result.records] == [1, 2]


def test_a_weak_answer_is_retried_once_then_recorded_with_its_reason() -> None:
    fake = FakeEndpoint(['{"wrong": 1}', '{"wrong": 2}', '{"text": "never asked"}'])
    result = run(Validated(fake, modes=ModeBook("auto", 1)))
    assert result.value is None and len(fake.asked) == 2
    assert [r.status for r in result.records] == ["invalid", "invalid"]
    assert all(r.error for r in result.records)
    cut = FakeEndpoint([('{"text": "lo', "length"), ('{"text": "lon', "length")])
    result = run(Validated(cut, modes=ModeBook("auto", 1)))
    assert result.value is None and len(cut.asked) == 2
    # a cut-off answer is sampled again from the same prompt, not shown back to the model
    assert cut.asked[1].messages == cut.asked[0].messages and cut.asked[1].sample == 1
    assert all("max_tokens" in (r.error or "") for r in result.records)


def test_an_answer_the_check_rejects_gets_one_fresh_sample() -> None:
    def check(value: Answer) -> str | None:
        return "too_short: the text is short" if value.text == "no" else None

    fake = FakeEndpoint(['{"text": "no"}', '{"text": "a proper answer"}'])
    result = run(Validated(fake, modes=None), CallRequest(Answer, [HumanMessage("hi")], "t", 64,
                                                           check=check))
    assert result.value == Answer(text="a proper answer")
    assert [r.status for r in result.records] == ["invalid", "ok"]
    assert result.records[0].error == "rejected: too_short: the text is short"
    assert fake.asked[1].sample == 1 and fake.asked[1].messages == fake.asked[0].messages
    twice = FakeEndpoint(['{"text": "no"}', '{"text": "no"}', '{"text": "not asked"}'])
    result = run(Validated(twice, modes=None), CallRequest(Answer, [HumanMessage("hi")], "t", 64,
                                                            check=check))
    # rejected twice: the value comes back (the job records the rejected item), both attempts say why
    assert result.value == Answer(text="no") and len(twice.asked) == 2
    assert [r.status for r in result.records] == ["invalid", "invalid"]


def test_validate_moves_on_from_a_mode_the_server_ignores() -> None:
    modes = ModeBook("auto", 1)
    fake = FakeEndpoint(["plain prose", "more prose", '{"text": "json at last"}'])
    result = run(Validated(fake, modes=modes))
    assert result.value == Answer(text="json at last") and modes.mode(0) == "json_object"
    assert "ignored by the server" in result.records[1].error


# --- accounting ---------------------------------------------------------------------------------
def test_accounting_counts_every_attempt_even_of_a_call_that_raised() -> None:
    layer = Accounted(Validated(retrying(FakeEndpoint([TRANSIENT, '{"text": "ok"}'])),
                                modes=ModeBook("auto", 1)))
    run(layer)
    assert layer.stats.attempts == 2 and layer.stats.ok == 1
    failing = Accounted(retrying(Failover([FakeEndpoint([UNREACHABLE] * 2)]), retries=1))
    with pytest.raises(LLMUnavailable) as raised:
        run(failing)
    assert [r.status for r in carried_records(raised.value)] == ["error", "error"]
    assert failing.stats.attempts == 2 and failing.stats.failed == 1
    assert not hasattr(failing, "drain_records")  # counted, never kept: results carry records


# --- the whole stack ----------------------------------------------------------------------------
def test_the_client_stacks_the_layers_over_given_endpoints() -> None:
    fake = FakeEndpoint([TRANSIENT, '{"wrong": 1}', '{"text": "ok"}'])
    client = LLMClient(LLMSettings(backoff_s=0.0), endpoints=[fake])
    client.use_cache(ResponseCache("record", client.cache_model))
    result = asyncio.run(client.structured(Answer, [HumanMessage("hi")], purpose="instruction",
                                           max_tokens=kind_max_tokens("instruction")))
    assert result.value == Answer(text="ok")
    assert [r.status for r in result.records] == ["error", "invalid", "ok"]
    assert len(result.cache_entries) == 2 and client.stats.attempts == len(result.records) == 3
    assert not any(hasattr(client, f"drain_{x}") for x in ("records", "cache_entries", "cache_rows"))
    assert not client.is_offline and client.structured_modes() == {"fake": "json_schema"}
    assert fake.asked[0].max_tokens == 256  # the purpose's default output limit

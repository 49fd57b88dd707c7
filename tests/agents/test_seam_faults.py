"""The seam under endpoint faults: straggler deadlines, a lowered concurrency limit that
grows back, the liveness a watchdog reads, and call records spilled as each attempt is final."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from personahub.agents.prompts.agent import agent_messages
from personahub.core import call_spill
from personahub.core.call_spill import CallSpill, spill_path
from personahub.core.commit import JobRef, call_rows
from personahub.core.contracts import CallRecord, CallRequest, Failure, StructuredResult
from personahub.core.store import connect, insert_rows
from personahub.models.adaptive_limit import overload_reason
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.concurrency_limit import ConcurrencyLimit
from personahub.models.failures import FailFast
from personahub.models.liveness import Liveness
from personahub.models.seam_deadlines import FACTOR, MIN_S, PROBE_S, WARM, StragglerDeadlines
from personahub.models.seam_limits import FIXED_TOKENS, Limited
from personahub.models.seam_retry import Retrying
from personahub.models.settings import Stalled, call_budget_s, stall_bound_s
from personahub.models.structured import ModeBook
from personahub.tasks.tool_spec import ToolSpec
from tests.agents.test_seam_wrappers import TRANSIENT, Answer, FakeEndpoint

ROOT = Path(__file__).resolve().parents[2]


# --- straggler deadlines ------------------------------------------------------------------------
def test_deadlines_wait_the_timeout_until_warm_then_follow_the_pace_and_the_answer_lengths() -> None:
    deadlines = StragglerDeadlines(timeout_s=60.0)
    for _ in range(WARM - 1):
        deadlines.observe("chat", 0.068, 36)  # 1 ms a token
    assert not deadlines.warm and deadlines.limit("chat", 200) == 60.0
    deadlines.observe("chat", 0.068, 36)
    assert deadlines.warm
    assert deadlines.limit("chat", 200) == pytest.approx(FACTOR * 0.001 * (36 + FIXED_TOKENS))
    # a purpose not seen yet may use all of its max_tokens; each earlier straggler doubles it
    assert deadlines.limit("plan", 468) == pytest.approx(FACTOR * 0.001 * 500)
    assert deadlines.limit("plan", 468, stragglers=2) == pytest.approx(4 * FACTOR * 0.001 * 500)
    assert deadlines.limit("plan", 468, stragglers=20) == 60.0  # never past --timeout
    cold = StragglerDeadlines(timeout_s=60.0)  # a structured-mode probe: everything waits for it
    assert cold.limit("chat", 200, probe=True) == PROBE_S and cold.limit("chat", 200) == 60.0
    fast = StragglerDeadlines(timeout_s=60.0)
    for _ in range(WARM):
        fast.observe("chat", 0.0001, 10)
    assert fast.limit("chat", 200) == MIN_S


def test_probes_cut_in_a_row_double_the_next_probes_deadline_until_an_answer_comes() -> None:
    async def cut(deadlines: StragglerDeadlines) -> float:
        limit = deadlines.limit("chat", 200, probe=True)
        loop = asyncio.get_running_loop()
        sent = loop.time() - limit - 0.01  # as if it was sent ``limit`` ago: expired at once
        try:
            async with asyncio.timeout_at(sent + limit) as scope:
                await asyncio.sleep(1)
        except TimeoutError:
            assert deadlines.cut_short(scope, sent, probe=True)
        return limit

    async def main() -> list[float]:
        deadlines = StragglerDeadlines(timeout_s=30.0)
        limits = [await cut(deadlines) for _ in range(3)]  # whichever call sends the probe
        limits.append(deadlines.limit("chat", 200, probe=True))
        deadlines.observe("chat", 0.5, 20)
        return [*limits, deadlines.limit("chat", 200, probe=True)]

    # 5, 10, 20, then --timeout (an expiry there is a plain timeout); an answer starts again
    assert asyncio.run(main()) == [PROBE_S, 2 * PROBE_S, 4 * PROBE_S, 30.0, PROBE_S]


def test_attempts_sent_before_the_estimate_are_moved_to_their_deadline_when_it_comes() -> None:
    async def main() -> tuple[float, float]:
        deadlines = StragglerDeadlines(timeout_s=60.0)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        async with asyncio.timeout_at(sent + 60.0) as scope:  # not a later loop.time(), under load
            deadlines.track(scope, sent, "chat", 200, 0)
            before = scope.when()
            for _ in range(WARM):
                deadlines.observe("chat", 0.068, 36)
            after = scope.when()
        assert before is not None and after is not None
        return before - sent, after - sent

    before, after = asyncio.run(main())
    assert before == pytest.approx(60.0) and after == pytest.approx(FACTOR * 0.001 * 68)


@pytest.mark.slow
def test_a_hung_request_is_cut_as_a_straggler_and_asked_again_long_before_the_timeout(server):
    srv = server(hang_rate=0.2, hang_s=120.0, fault_seed=3)
    # a fixed mode (no probe) and a timeout no hang would outlive unnoticed: a hung request
    # waited out would end "timeout", 30 s later
    client = LLMClient(LLMSettings(spec=f"{srv.base_url}?model=m", structured="json_schema",
                                   timeout_s=30.0, concurrency=4))

    async def many() -> list[StructuredResult[Any]]:
        return await asyncio.gather(*[
            client.structured(ToolSpec, agent_messages(persona=f"A welder number {i}",
                                                       kind="tool_spec"), purpose="tool_spec")
            for i in range(40)])

    results = asyncio.run(many())
    assert srv.stats.hangs > 0 and all(r.value is not None for r in results)
    errors = [r.error for res in results for r in res.records if r.status == "error"]
    assert errors and all(e.startswith("timeout after ") and "slower than the endpoint" in e
                          for e in errors)
    assert client._semaphore is not None and client._semaphore.limit == 4  # not taken for overload


def test_a_straggler_is_not_overload() -> None:
    assert overload_reason(Failure("timeout", True)) == "timeout"
    assert overload_reason(Failure("timeout after 0.5 s", True, straggler=True)) is None


# --- a lowered limit grows back ---------------------------------------------------------------
def test_a_lowered_limit_grows_back_one_per_window_of_answers_up_to_where_it_started() -> None:
    limit = ConcurrencyLimit(8)
    limit.active = 8
    assert limit.lower() == 4
    limit.active = 0
    seen = []
    for _ in range(60):
        limit.grow_back()
        seen.append(limit.limit)
    assert seen[:4] == [4, 4, 4, 5] and seen[-1] == 8 and max(seen) == 8
    assert seen.index(8) == 4 + 5 + 6 + 7 - 1  # one step per window of `limit` answers


class TimeoutsThenAnswers:
    """Every call in flight while ``timeouts`` remain times out (a server that was stuck for a
    moment); later calls are answered."""

    label = "fake"

    def __init__(self, timeouts: int) -> None:
        self.timeouts = timeouts

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        await asyncio.sleep(0)
        record = request.record(model="fake", endpoint=0, structured_mode="json_schema")
        if self.timeouts > 0:
            self.timeouts -= 1
            record.status, record.error = "error", "timeout"
            return StructuredResult(None, [record], None, failure=Failure("timeout", True))
        record.tokens_out = 3
        return StructuredResult(None, [record], '{"text": "ok"}')


def test_concurrency_lowered_by_timeouts_grows_back_when_calls_succeed_again() -> None:
    limited = Limited(TimeoutsThenAnswers(timeouts=6), concurrency=16)
    layer = Retrying(limited, max_retries=8, backoff_s=0.0, modes=ModeBook("json_schema", 1),
                     fail_fast=FailFast(1), on_timeout=limited.lower_on_timeout)
    lowest = 16

    async def main() -> None:
        nonlocal lowest

        async def one() -> None:
            nonlocal lowest
            await layer.call(CallRequest(Answer, [HumanMessage("hi")], "t", 16))
            assert limited.slots is not None
            lowest = min(lowest, limited.slots.limit)

        await asyncio.gather(*[one() for _ in range(400)])

    asyncio.run(main())
    assert limited.slots is not None
    assert lowest < 4 and limited.slots.limit == 16  # it fell, and it came all the way back
    assert limited.report() == {"setting": 16, "final": 16, "peak": 16}


# --- liveness -------------------------------------------------------------------------------------
def test_liveness_counts_calls_in_flight_and_idle_time_is_not_a_stall() -> None:
    live = Liveness(bound_s=0.0)
    assert live.quiet_s() == 0.0 and live.stalled() is None  # nothing in flight
    live.started()
    assert live.in_flight == 1 and live.stalled() is not None
    assert "no model call completed" in str(live.stalled()) and "\n" not in str(live.stalled())
    live.finished()
    assert live.in_flight == 0 and live.completed == 1 and live.stalled() is None


class Hanging:
    """An endpoint whose answers never come (a server that holds every connection open)."""

    label = "hanging"
    index = 0
    model_name = "hanging"
    base_url = None
    capabilities = FakeEndpoint([]).capabilities

    def current_mode(self) -> str:
        return "json_schema"

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_the_watchdog_stops_work_when_no_call_completes_within_the_bound() -> None:
    client = LLMClient(LLMSettings(), endpoints=[Hanging()])
    assert client.liveness.bound_s == stall_bound_s(60.0) > call_budget_s(60.0)
    client.liveness.bound_s = 0.2

    async def step() -> list[Any]:
        return await asyncio.gather(*[client.structured(Answer, [HumanMessage(f"q{i}")],
                                                        purpose="t") for i in range(3)])

    with pytest.raises(Stalled, match="no model call completed .* with 3 in flight"):
        asyncio.run(asyncio.wait_for(client.liveness.guarded(step()), 30))  # a TimeoutError if not
    assert client.liveness.in_flight == 0  # the cancelled calls left the seam


def test_the_watchdog_lets_work_through_while_calls_keep_completing() -> None:
    client = LLMClient(LLMSettings(backoff_s=0.0), endpoints=[FakeEndpoint([])])
    client.liveness.bound_s = 5.0

    async def step() -> int:
        for i in range(20):
            await client.structured(Answer, [HumanMessage(f"q{i}")], purpose="t")
        return client.liveness.completed

    assert asyncio.run(client.liveness.guarded(step())) == 20


# --- records spilled as they are final ------------------------------------------------------------
def _record(status: str = "ok", **fields: Any) -> CallRecord:
    return CallRecord(purpose="t", model="m", attempt=1, status=status, latency_ms=1.5, **fields)


def test_a_spill_writes_each_record_once_and_reads_back_what_a_kill_left(tmp_path: Path) -> None:
    path = spill_path(tmp_path / "hub.duckdb", "synth-1")
    assert path == tmp_path / "hub.duckdb.synth-1.calls.jsonl"
    first, second, third = _record("error", error="HTTP 503"), _record("invalid"), _record()
    with CallSpill(path, tags={"job_kind": "synthesis", "job_id": "synth-1"}) as spill:
        spill.early([first])
        spill.early([first, second])  # the first was written already
        spill.done([first, second, third])
        spill.done([_record(step=3)])
    with path.open("a") as handle:
        handle.write('{"tags": {}, "record": {"purpose": "t", "mod')  # a write cut by a kill
    spilled = call_spill.read(path)
    assert [s.record for s in spilled[:3]] == [first, second, third] and len(spilled) == 4
    assert spilled[0].tags == {"job_kind": "synthesis", "job_id": "synth-1"}
    with CallSpill(path) as spill:
        spill.clear()
    assert call_spill.read(path) == [] and call_spill.read(tmp_path / "missing") == []
    call_spill.remove(path)
    assert not path.exists()


def test_the_client_spills_every_attempt_with_its_final_status(tmp_path: Path) -> None:
    fake = FakeEndpoint([TRANSIENT, '{"wrong": 1}', '{"text": "ok"}', TRANSIENT, TRANSIENT])
    client = LLMClient(LLMSettings(backoff_s=0.0, max_retries=1), endpoints=[fake])
    path = tmp_path / "spill.jsonl"
    spill = CallSpill(path, tags={"job_id": "j"})
    client.spill_to(spill)
    result = asyncio.run(client.structured(Answer, [HumanMessage("hi")], purpose="t"))
    with pytest.raises(Exception, match="kept failing") as raised:  # the next call spends its budget
        asyncio.run(client.structured(Answer, [HumanMessage("again")], purpose="t"))
    client.spill_to(None)
    asyncio.run(client.structured(Answer, [HumanMessage("unspilled")], purpose="t"))
    spill.close()
    spilled = [s.record for s in call_spill.read(path)]
    carried = getattr(raised.value, "seam_records", [])
    assert spilled == [*result.records, *carried]  # once each, as final, in order
    assert [r.status for r in spilled] == ["error", "invalid", "ok", "error", "error"]
    assert spilled[1].error == "text: Field required"  # judged before the repair prompt went out


def test_spilled_records_are_llm_calls_rows_for_the_kernel(tmp_path: Path) -> None:
    client = LLMClient(LLMSettings(backoff_s=0.0), endpoints=[FakeEndpoint([TRANSIENT])])
    path = tmp_path / "spill.jsonl"
    with CallSpill(path, tags={"job_kind": "run", "job_id": "run-1"}) as spill:
        client.spill_to(spill)
        asyncio.run(client.structured(Answer, [HumanMessage("hi")], purpose="t", step=2))
    spilled = call_spill.read(path)
    con = connect(tmp_path / "hub.duckdb")
    try:
        job = JobRef(str(spilled[0].tags["job_kind"]), str(spilled[0].tags["job_id"]), "run-1")  # type: ignore[arg-type]
        insert_rows(con, "llm_calls", call_rows(client, [s.record for s in spilled], job))
        rows = con.execute("SELECT job_id, step, status, error, model_name FROM llm_calls "
                           "ORDER BY started_at, attempt").fetchall()
    finally:
        con.close()
    assert rows == [("run-1", 2, "error", "HTTP 503: busy", "fake-model"),
                    ("run-1", 2, "ok", None, "fake-model")]


KILLED = textwrap.dedent("""
    import asyncio, sys
    from langchain_core.messages import HumanMessage
    from personahub.core.call_spill import CallSpill
    from personahub.models.client import LLMClient, LLMSettings
    from personahub.core.contracts import Failure, StructuredResult
    from tests.agents.test_seam_wrappers import Answer, FakeEndpoint

    class Stuck(FakeEndpoint):
        async def call(self, request):
            if len(self.asked) == 2:
                print("hanging", flush=True)
                await asyncio.Event().wait()
            return await super().call(request)

    busy = Failure("HTTP 503: busy", True, 503)
    client = LLMClient(LLMSettings(backoff_s=0.0), endpoints=[Stuck([busy, busy])])
    client.spill_to(CallSpill(sys.argv[1], tags={"job_id": "killed"}))
    asyncio.run(client.structured(Answer, [HumanMessage("hi")], purpose="t"))
""")


@pytest.mark.slow
def test_attempts_made_before_a_kill_are_in_the_spill(tmp_path: Path) -> None:
    path = tmp_path / "spill.jsonl"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PERSONAHUB_")},
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "hanging"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    spilled = call_spill.read(path)
    assert [(s.record.attempt, s.record.status, s.record.error) for s in spilled] == [
        (1, "error", "HTTP 503: busy"), (2, "error", "HTTP 503: busy")]
    assert all(s.tags == {"job_id": "killed"} for s in spilled)
    assert all(json.loads(line)["record"]["call_id"] for line in path.read_text().splitlines())

import asyncio
import socket
import time as time_module

import pytest

from personahub.agents.prompts.agent import agent_messages
from personahub.core.contracts import carried_records
from personahub.models.client import LLMClient, LLMConfigError, LLMSettings, LLMUnavailable, redact_spec
from personahub.models.settings import EndpointFailing
from personahub.tasks.conversation import NeighbourConversation
from personahub.tasks.npc_dialogue import NpcDialogue
from personahub.tasks.tool_spec import ToolSpec


def ask(client: LLMClient, schema=ToolSpec, persona: str = "A welder in Tartu"):
    messages = agent_messages(persona=persona, kind="tool_spec", world="A port town")
    return asyncio.run(client.structured(schema, messages, purpose="test", persona_id="p1", step=1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_spec_errors_are_one_line_and_name_the_setting(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        LLMClient(LLMSettings(spec="openai:gpt-4o-mini"))
    with pytest.raises(LLMConfigError, match="not understood"):
        LLMClient(LLMSettings(spec="gpt-4o"))
    with pytest.raises(LLMConfigError, match="concurrency"):
        LLMSettings(concurrency=0)


def test_redaction_removes_credentials():
    spec = "http://bob:s3cret@127.0.0.1:9/v1?model=m&api_key=s3cret"
    redacted = redact_spec(spec)
    assert "s3cret" not in redacted and "model=m" in redacted and "***" in redacted


def test_round_robin_over_several_endpoints(server):
    a, b = server(), server()
    client = LLMClient(LLMSettings(spec=f"{a.base_url}?model=m1,{b.base_url}?model=m2"))
    results = [ask(client) for _ in range(4)]
    assert all(r.value is not None for r in results)
    assert a.stats.answered == 2 and b.stats.answered == 2
    assert {r.endpoint for res in results for r in res.records} == {0, 1}


@pytest.mark.parametrize("method", ["json_schema", "tools"])
def test_structured_output_over_http_matches_the_offline_engine(server, method):
    srv = server(seed=9)
    remote = LLMClient(LLMSettings(spec=f"{srv.base_url}?model=offline", seed=9,
                                   structured=method))
    local = LLMClient(LLMSettings(seed=9, structured=method))
    got = ask(remote)
    assert got.value is not None and got.records[-1].status == "ok"
    assert got.records[-1].tokens_in > 0 and got.records[-1].tokens_out > 0
    if method == "json_schema":  # same prompt, same schema, same seed: same answer
        assert got.value == ask(local).value


def test_retries_and_repair_are_recorded(server):
    srv = server(error_rate=0.3, malformed_rate=0.3, fault_seed=3)
    client = LLMClient(LLMSettings(spec=srv.base_url, backoff_s=0.001, max_retries=4))

    async def all_of_them():
        return await asyncio.gather(*[
            client.structured(NpcDialogue, agent_messages(persona=f"A person number {i}",
                                                          kind="npc_dialogue"), purpose="t")
            for i in range(40)])

    results = asyncio.run(all_of_them())
    records = [r for res in results for r in res.records]
    assert sum(r.status == "error" for r in records) == srv.stats.errors
    assert sum(r.status == "invalid" for r in records) == srv.stats.malformed
    assert sum(r.status == "ok" for r in records) == sum(res.value is not None for res in results)
    assert srv.stats.errors > 0 and srv.stats.malformed > 0


def test_invalid_twice_gives_up_without_raising(server):
    srv = server(malformed_rate=1.0, stubborn=True)
    result = ask(LLMClient(LLMSettings(spec=srv.base_url)))
    assert result.value is None
    # the answer, then its one second chance (the repair prompt, sampled afresh): then recorded
    assert [r.status for r in result.records] == ["invalid", "invalid"]
    assert all("Invalid JSON" in (r.error or "") for r in result.records)
    assert srv.stats.requests == 2


@pytest.mark.slow
def test_a_malformed_multi_turn_answer_is_repaired_to_the_whole_one(server):
    """Serve's malformed answer is the intended one cut in half; for a conversation
    the half can end after a closed turn. The seam must not take those turns for the answer:
    the repair prompt gets the whole one, as a fault-free server gives it."""
    clean, faulty = server(), server(malformed_rate=1.0)
    lengths = []
    for i in range(30):  # with the old repair, 20 and 25 took the half as the answer
        messages = agent_messages(persona=f"A ferry pilot number {i}", kind="conversation",
                                  addressee="A baker")
        whole, repaired = (asyncio.run(LLMClient(LLMSettings(spec=f"{s.base_url}?model=m"))
                                       .structured(NeighbourConversation, messages, purpose="t"))
                           for s in (clean, faulty))
        assert [r.status for r in repaired.records] == ["invalid", "ok"]
        assert repaired.value == whole.value
        lengths.append(len(whole.value.turns))
    assert max(lengths) >= 4  # answers whose half can hold two closed turns were asked
    assert faulty.stats.malformed == faulty.stats.repairs == 30


def test_a_malformed_answer_gets_one_fresh_sample_and_a_repeat_is_recorded(server):
    """Each weak answer costs one more call at most; one that fails twice is recorded, not raised."""
    faulty = server(malformed_rate=0.5, stubborn=True, fault_seed=1)
    client = LLMClient(LLMSettings(spec=faulty.base_url, structured="json_schema"))
    results = [ask(client) for _ in range(6)]
    shapes = [[a.status for a in r.records] for r in results]
    assert ["invalid", "ok"] in shapes and ["invalid", "invalid"] in shapes
    assert all(len(s) <= 2 for s in shapes)
    assert all((r.value is not None) == (s[-1] == "ok") for r, s in zip(results, shapes, strict=True))
    assert faulty.stats.requests == sum(len(s) for s in shapes)


@pytest.mark.slow
def test_a_hang_hits_the_timeout_and_spends_the_calls_budget(server):
    srv = server(hang_rate=1.0, hang_s=5.0)
    client = LLMClient(LLMSettings(spec=srv.base_url, timeout_s=0.3, max_retries=1,
                                   backoff_s=0.001))
    with pytest.raises(EndpointFailing, match="kept failing: one call made 2 attempts .* the last: timeout"
                       ) as raised:  # a resumable stop, with the attempts it made
        ask(client)
    assert [r.error for r in carried_records(raised.value)] == ["timeout", "timeout"]
    assert client.stats.attempts == 2 and client.liveness.in_flight == 0


def test_unreachable_endpoint_raises_llm_unavailable():
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = LLMClient(LLMSettings(spec=url, max_retries=1, backoff_s=0.001))
    with pytest.raises(LLMUnavailable, match="unreachable") as raised:
        ask(client)
    records = carried_records(raised.value)  # the call's attempts travel with the exception
    assert len(records) == 2 and all(r.status == "error" for r in records)
    assert client.stats.attempts == 2 and client.stats.failed == 1


@pytest.mark.slow
def test_concurrency_limit_is_respected(server, monkeypatch):
    from personahub.models.endpoint_http import HttpEndpoint
    from personahub.tasks.instruction import Instruction

    live = peak = 0
    real = HttpEndpoint.call

    async def counting(self, request):
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        try:
            return await real(self, request)
        finally:
            live -= 1

    monkeypatch.setattr(HttpEndpoint, "call", counting)
    srv = server(latency_s=0.2)  # each call held long enough for the others to queue behind it
    client = LLMClient(LLMSettings(spec=srv.base_url, concurrency=4))

    async def many():
        msgs = agent_messages(persona="A baker", kind="instruction")
        return await asyncio.gather(*[client.structured(Instruction, msgs, purpose="t")
                                      for _ in range(8)])

    assert all(r.value is not None for r in asyncio.run(many()))
    assert peak == 4 and srv.stats.answered == 8


def _frozen_rate_limiter(monkeypatch) -> list[float]:
    """The seconds each reservation must wait, on a clock that never moves: the bucket's own
    arithmetic, whatever the machine's load (``RateLimiter.acquire`` sleeps exactly these; here
    nothing sleeps)."""
    from types import SimpleNamespace

    from personahub.models import seam_limits

    waits: list[float] = []

    class Recording(seam_limits.RateLimiter):
        def reserve(self) -> float:
            wait = super().reserve()
            waits.append(wait)
            return wait

        async def acquire(self) -> None:  # the bucket's arithmetic is the subject: no real sleep
            self.reserve()

    monkeypatch.setattr(seam_limits, "RateLimiter", Recording)
    monkeypatch.setattr(seam_limits, "time", SimpleNamespace(monotonic=lambda: 0.0,
                                                             perf_counter=time_module.perf_counter))
    return waits


def test_rps_limit_is_honoured_across_endpoints(server, monkeypatch):
    from personahub.tasks.instruction import Instruction

    waits = _frozen_rate_limiter(monkeypatch)
    a, b = server(), server()
    client = LLMClient(LLMSettings(spec=f"{a.base_url},{b.base_url}", rps=20, concurrency=32))
    msgs = agent_messages(persona="A baker", kind="instruction")

    async def many(n):
        return await asyncio.gather(*[client.structured(Instruction, msgs, purpose="t")
                                      for _ in range(n)])

    results = asyncio.run(many(22))
    assert all(r.value is not None for r in results)
    assert a.stats.answered + b.stats.answered == 22 and a.stats.answered == b.stats.answered
    # one shared bucket for both endpoints: the 22nd request waits 21 intervals of 1/20 s
    assert sorted(waits) == pytest.approx([i / 20 for i in range(22)])


def test_rps_limit_applies_to_the_offline_engine_and_validates(monkeypatch):
    from personahub.models.client import RateLimiter

    with pytest.raises(LLMConfigError, match="--rps"):
        LLMSettings(rps=0)
    limiter = RateLimiter(50.0, burst=5)
    waits = [limiter.reserve() for _ in range(10)]
    assert waits[:5] == [0.0] * 5 and waits[5] == pytest.approx(0.02, abs=0.005)
    assert waits[-1] == pytest.approx(0.1, abs=0.01)
    reserved = _frozen_rate_limiter(monkeypatch)
    client = LLMClient(LLMSettings(rps=40))

    async def many():
        return await asyncio.gather(*[client.structured(
            ToolSpec, agent_messages(persona=f"A welder {i}", kind="tool_spec"), purpose="t")
            for i in range(21)])

    assert all(r.value is not None for r in asyncio.run(many()))
    assert sorted(reserved) == pytest.approx([i / 40 for i in range(21)])


def test_round_robin_with_a_dead_endpoint_fails_over_without_stalling(server, monkeypatch):
    srv = server()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    # a long backoff would show: failing over to a live endpoint must not wait for it
    client = LLMClient(LLMSettings(spec=f"{dead},{srv.base_url}", backoff_s=5.0, max_retries=2))

    async def many():
        return await asyncio.gather(*[client.structured(
            ToolSpec, agent_messages(persona=f"A welder {i}", kind="tool_spec"), purpose="t")
            for i in range(20)])

    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def noted_sleep(delay, *args, **kwargs):
        waits.append(delay)
        return await real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", noted_sleep)
    results = asyncio.run(many())
    assert not [w for w in waits if w >= 1.0]  # no backoff (>= 2.5 s here) before failing over
    assert all(r.value is not None for r in results)
    records = [r for res in results for r in res.records]
    failed = [r for r in records if r.status == "error"]
    assert failed and {r.endpoint for r in failed} == {0}
    assert all(r.attempt == 2 and r.endpoint == 1 for res in results for r in res.records[1:])
    assert srv.stats.answered == 20
    # once marked down, the dead endpoint is skipped: later calls go straight to the live one
    later = asyncio.run(many())
    assert all(len(r.records) == 1 and r.records[0].endpoint == 1 for r in later)


def test_retry_after_a_server_error_moves_to_the_next_endpoint(server):
    a, b = server(error_rate=1.0), server()
    client = LLMClient(LLMSettings(spec=f"{a.base_url},{b.base_url}", backoff_s=0.001))
    result = ask(client)
    assert result.value is not None
    assert [(r.endpoint, r.status) for r in result.records] == [(0, "error"), (1, "ok")]


def test_check_reachable_tolerates_some_dead_endpoints(server):
    from personahub.models.client import check_reachable

    srv = server()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    client = LLMClient(LLMSettings(spec=f"{srv.base_url},{dead}"))
    assert check_reachable(client) == [client.endpoints[1].label]
    with pytest.raises(LLMUnavailable):
        check_reachable(LLMClient(LLMSettings(spec=f"{dead},{dead}")))


@pytest.mark.slow
def test_a_run_completes_with_one_dead_endpoint(server, scenario_file, tmp_path):
    import duckdb

    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    srv = server()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    db = tmp_path / "dead.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_file(n_personas=12, steps=2)), db=db,
                                       llm=f"{dead},{srv.base_url}", concurrency=8))
    assert summary.failed_actions == 0 and summary.steps == 2
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM runs JOIN jobs ON job_id = run_id").fetchone()[0] == "finished"
    ok_endpoints = con.execute("SELECT DISTINCT endpoint FROM llm_calls WHERE status = 'ok'").fetchall()
    con.close()
    assert ok_endpoints == [(1,)]


@pytest.mark.slow  # tests/agents/test_concurrency_limit.py covers the limit itself in the fast subset
def test_timeouts_with_many_in_flight_lower_the_concurrency(server):
    srv = server(hang_rate=1.0, hang_s=5.0)
    # a fixed mode: ``auto`` would probe the unsettled endpoint one call at a time
    client = LLMClient(LLMSettings(spec=srv.base_url, timeout_s=0.3, max_retries=1,
                                   backoff_s=0.001, concurrency=8, structured="json_schema"))

    async def many():
        return await asyncio.gather(*[
            client.structured(NpcDialogue, agent_messages(persona=f"A person number {i}",
                                                          kind="npc_dialogue"), purpose="t")
            for i in range(8)], return_exceptions=True)

    outcomes = asyncio.run(many())
    assert all(isinstance(o, EndpointFailing) for o in outcomes)  # every call spends its budget
    errors = [r.error for o in outcomes for r in carried_records(o)]
    assert any(e and e.startswith("timeout (concurrency lowered to") for e in errors)
    assert client._semaphore is not None and client._semaphore.limit < 8


def test_an_endpoint_has_one_http_client_sized_to_the_concurrency_closed_with_its_loop(server):
    from openai import DefaultAioHttpClient

    srv = server()
    client = LLMClient(LLMSettings(spec=f"{srv.base_url}?model=offline", concurrency=256))
    endpoint = client.endpoints[0]
    first = endpoint.model.root_async_client
    assert isinstance(first._client, DefaultAioHttpClient)  # the SDK's aiohttp transport
    assert first._client._transport.limits.max_connections == 256
    assert not first._client.follow_redirects  # a key never follows a redirect
    assert ask(client).value is not None
    assert first.is_closed()  # closed when asyncio.run shut its loop down
    assert ask(client).value is not None  # a new loop gets a new client
    assert endpoint.model.root_async_client is not first
    assert srv.stats.answered == 2


def test_without_aiohttp_an_endpoint_uses_the_sdks_httpx_client(server, monkeypatch):
    import openai

    class Missing:
        def __init__(self, **_options):
            raise RuntimeError("To use the aiohttp client you must install the aiohttp extra")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", Missing)
    srv = server()
    client = LLMClient(LLMSettings(spec=f"{srv.base_url}?model=offline", concurrency=8))
    assert isinstance(client.endpoints[0].model.root_async_client._client,
                      openai.DefaultAsyncHttpxClient)
    assert ask(client).value is not None

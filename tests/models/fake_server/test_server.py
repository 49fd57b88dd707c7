import json

import httpx
import pytest

from personahub.tasks.tool_spec import ToolSpec

_HTTP = httpx.Client(timeout=10)  # one client: building one per request costs ~40 ms


def chat(url: str, **body) -> httpx.Response:
    body.setdefault("model", "offline")
    body.setdefault("messages", [{"role": "user", "content": "## Persona\nA potter\n## Task\nGo"}])
    return _HTTP.post(f"{url}/chat/completions", json=body)


def test_models_route_and_unknown_route(server):
    srv = server()
    assert httpx.get(f"{srv.base_url}/models").json()["data"][0]["id"] == "offline"
    assert httpx.post(f"{srv.base_url}/nope", json={}).status_code == 404


def test_json_schema_response_format(server):
    srv = server()
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "ToolSpec", "schema": ToolSpec.model_json_schema()}}
    reply = chat(srv.base_url, response_format=response_format).json()
    content = reply["choices"][0]["message"]["content"]
    assert ToolSpec.model_validate_json(content)
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"][
        "completion_tokens"]


def test_tool_calls(server):
    srv = server()
    tool = {"type": "function", "function": {"name": "ToolSpec",
                                             "parameters": ToolSpec.model_json_schema()}}
    reply = chat(srv.base_url, tools=[tool], tool_choice="required").json()
    call = reply["choices"][0]["message"]["tool_calls"][0]
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    assert ToolSpec.model_validate(json.loads(call["function"]["arguments"]))


def test_fault_injection_rates(server):
    srv = server(error_rate=0.5, fault_seed=1)
    statuses = [chat(srv.base_url).status_code for _ in range(60)]
    assert set(statuses) <= {200, 429, 503}
    assert statuses.count(200) == srv.stats.answered
    assert 15 <= srv.stats.errors <= 45
    assert srv.stats.errors == sum(s != 200 for s in statuses)


def test_bad_json_body_is_a_400(server):
    srv = server()
    response = httpx.post(f"{srv.base_url}/chat/completions", content=b"{nope",
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400


@pytest.mark.slow
def test_latency_runs_from_arrival_and_requests_wait_it_out_together(server, monkeypatch):
    """Each answer waits until its own arrival + latency, and eight requests wait at the same time.

    Checked on the server's side (no wall-clock bound that load could break): every handler sleeps
    until exactly ``received + latency_s``, and all eight meet inside that wait (a barrier that a
    server answering one request at a time could never fill).
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from personahub.models.fake_server.server import _Handler

    latency = 0.4
    arrival = threading.local()
    deadlines: list[tuple[float, float]] = []
    all_waiting = threading.Barrier(8, timeout=20)
    answer, sleep_until = _Handler._answer, _Handler._sleep_until

    def answer_noting_arrival(self, request, received):
        arrival.received = received
        return answer(self, request, received)

    def sleep_together(self, deadline):
        deadlines.append((arrival.received, deadline))
        all_waiting.wait()  # BrokenBarrierError (a 500, then a failed assert) if they queue up
        return sleep_until(self, deadline)

    monkeypatch.setattr(_Handler, "_answer", answer_noting_arrival)
    monkeypatch.setattr(_Handler, "_sleep_until", sleep_together)
    srv = server(latency_s=latency)
    clients = [httpx.Client(timeout=30) for _ in range(8)]  # built before anything is sent
    body = {"model": "offline", "messages": [{"role": "user", "content": "## Persona\nA potter"}]}
    try:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda http: http.post(f"{srv.base_url}/chat/completions",
                                                           json=body), clients))
    finally:
        for http in clients:
            http.close()
    assert [r.status_code for r in replies] == [200] * 8
    assert len(deadlines) == 8 and not all_waiting.broken
    assert all(deadline == received + latency for received, deadline in deadlines)
    assert all(r.elapsed.total_seconds() >= latency for r in replies)  # nobody answered early

import json

import httpx
from personahub.agents.tasks.tool_spec import ToolSpec

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


def test_latency_runs_from_arrival_and_requests_wait_it_out_together(server):
    import time
    from concurrent.futures import ThreadPoolExecutor

    srv = server(latency_s=0.4)

    def timed(_: int) -> float:
        with httpx.Client(timeout=10) as http:
            started = time.perf_counter()
            reply = http.post(f"{srv.base_url}/chat/completions", json={
                "model": "offline", "messages": [{"role": "user", "content": "## Persona\nA potter"}]})
            assert reply.status_code == 200
            return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        took = list(pool.map(timed, range(8)))
    assert min(took) >= 0.4  # nobody is answered before the latency is over
    assert time.perf_counter() - started < 0.4 * 2.5  # eight at once wait once, not eight times

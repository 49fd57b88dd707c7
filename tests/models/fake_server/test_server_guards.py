"""`personahub serve` answers only what a web page cannot forge, and only what it can bound.

Host and Origin (DNS rebinding, cross-origin POSTs), Content-Type (a `text/plain` POST needs no
CORS preflight), OPTIONS, and the bounds of `personahub/models/fake_server/request_bounds.py`:
each hostile request of the second audit gets a 4xx JSON error at once, never a 500 with Python's exception
text or a dropped connection. The server's memory under them is measured in
`test_server_fuzz.py`.
"""

from __future__ import annotations

import json
import re
import socket

import httpx
import pytest

from personahub.models.fake_server.server import _MAX_BODY

_HTTP = httpx.Client(timeout=30)
USER = {"role": "user", "content": "## Persona\nA potter\n## Task\nGo"}
PYTHON_TEXT = re.compile(r"Traceback|\b\w+(Error|Exception)\b: |File \"")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def chat_body(**fields) -> dict:
    return {"model": "offline", "messages": [USER], **fields}


# -- Host and Origin ---------------------------------------------------------------------------

@pytest.mark.parametrize(("host", "allowed"), [
    ("127.0.0.1:{port}", True), ("localhost:{port}", True), ("[::1]:{port}", True),
    ("127.0.0.1", True), ("LOCALHOST:{port}", True),
    ("evil.example", False), ("evil.example:{port}", False), ("127.0.0.1:1", False),
    ("127.0.0.1.evil.example:{port}", False), ("localhost.:{port}", False), ("", False),
])
def test_only_a_host_naming_the_server_is_answered(server, host: str, allowed: bool) -> None:
    srv = server()
    port = port_of(srv.base_url)
    header = host.format(port=port)
    for method, path, body in (("GET", "/v1/models", b""),
                               ("POST", "/v1/chat/completions", json.dumps(chat_body()).encode())):
        answer = raw_exchange(port, (f"{method} {path} HTTP/1.1\r\nHost: {header}\r\n"
                                     "Content-Type: application/json\r\nConnection: close\r\n"
                                     f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        status = int(answer.split(b" ", 2)[1])
        assert (status == 200) is allowed, answer[:200]
        if not allowed:
            assert status == 403
            assert "does not name this server" in json.loads(answer.partition(b"\r\n\r\n")[2])[
                "error"]["message"]


def test_a_request_without_host_is_refused(server) -> None:
    srv = server()
    answer = raw_exchange(port_of(srv.base_url), b"GET /v1/models HTTP/1.0\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"403"


@pytest.mark.parametrize(("origin", "allowed"), [
    (None, True), ("http://127.0.0.1:{port}", True), ("http://localhost:{port}", True),
    ("http://evil.example", False), ("https://127.0.0.1:{port}", False), ("null", False),
    ("http://localhost:{other}", False), ("http://127.0.0.1:{port}/x", False),
])
def test_cross_origin_requests_are_refused(server, origin: str | None, allowed: bool) -> None:
    srv = server()
    port = port_of(srv.base_url)
    headers = {} if origin is None else {"Origin": origin.format(port=port, other=port + 1)}
    response = _HTTP.post(f"{srv.base_url}/chat/completions", json=chat_body(), headers=headers)
    assert (response.status_code == 200) is allowed, response.text
    assert "access-control-allow-origin" not in response.headers
    if not allowed:
        assert response.status_code == 403
        assert srv.stats.answered == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_body_that_is_not_declared_json_is_never_processed(server, content_type) -> None:
    srv = server()
    headers = {"Content-Type": content_type} if content_type else {}
    response = _HTTP.post(f"{srv.base_url}/embeddings", headers=headers,
                          content=json.dumps({"model": "m", "input": "x"}).encode())
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]
    assert srv.stats.requests == 0 and srv.stats.answered == 0


def test_json_with_a_charset_is_json(server) -> None:
    srv = server()
    response = _HTTP.post(f"{srv.base_url}/chat/completions", content=json.dumps(chat_body()),
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200


def test_options_answers_the_methods_and_grants_no_other_origin(server) -> None:
    srv = server()
    port = port_of(srv.base_url)
    own = _HTTP.options(f"{srv.base_url}/chat/completions")
    assert own.status_code == 204 and "POST" in own.headers["allow"]
    preflight = _HTTP.options(f"{srv.base_url}/chat/completions", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    same = _HTTP.options(f"{srv.base_url}/chat/completions",
                         headers={"Origin": f"http://127.0.0.1:{port}"})
    assert same.status_code == 204
    assert _HTTP.put(f"{srv.base_url}/chat/completions", json={}).status_code == 405


# -- bounds --------------------------------------------------------------------------------------

def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "S", "schema": schema}}


def deep(levels: int) -> dict:
    node: dict = {"type": "string"}
    for _ in range(levels):
        node = {"type": "object", "properties": {"x": node}}
    return node


BOUNDS = [
    # (case, route, body, a fragment of the 400's message)
    ("dimensions-1e9", "embeddings", {"input": "x", "dimensions": 1_000_000_000}, "dimensions"),
    ("dimensions-negative", "embeddings", {"input": "x", "dimensions": -1}, "dimensions"),
    ("dimensions-bool", "embeddings", {"input": "x", "dimensions": True}, "dimensions"),
    ("dimensions-float", "embeddings", {"input": "x", "dimensions": 64.5}, "dimensions"),
    ("input-number", "embeddings", {"input": 5}, "'input'"),
    ("input-empty", "embeddings", {"input": []}, "'input'"),
    ("input-objects", "embeddings", {"input": [{"a": 1}]}, "'input'"),
    ("input-too-many", "embeddings", {"input": ["x"] * 3000}, "'input'"),
    ("vectors-too-many", "embeddings", {"input": ["x"] * 2000, "dimensions": 4096}, "inputs x"),
    ("max-tokens-huge", "chat", chat_body(max_tokens=10**12), "max_tokens"),
    ("choices-times-tokens", "chat", chat_body(n=128, max_tokens=100_000), "n x max_tokens"),
    ("tools-string", "chat", chat_body(tools="x"), "'tools'"),
    ("tools-numbers", "chat", chat_body(tools=[5]), "'tools'"),
    ("tools-nameless", "chat", chat_body(tools=[{"type": "function", "function": {"name": 1}}]),
     "name"),
    ("tools-too-many", "chat", chat_body(tools=[
        {"type": "function", "function": {"name": f"t{i}"}} for i in range(200)]), "'tools'"),
    ("min-items-1e8", "chat", chat_body(response_format=schema_format(
        {"type": "object", "properties": {"a": {"type": "array", "minItems": 100_000_000}}})),
     "minItems"),
    ("max-items-1e9", "chat", chat_body(response_format=schema_format(
        {"type": "array", "maxItems": 10**9})), "maxItems"),
    ("min-length-1e9", "chat", chat_body(response_format=schema_format(
        {"type": "string", "minLength": 10**9})), "minLength"),
    ("max-length-1e9", "chat", chat_body(response_format=schema_format(
        {"type": "string", "maxLength": 10**9})), "maxLength"),
    ("min-items-text", "chat", chat_body(response_format=schema_format(
        {"type": "array", "minItems": "many"})), "minItems"),
    ("nested-arrays", "chat", chat_body(response_format=schema_format(
        {"type": "array", "minItems": 1000, "items": {"type": "array", "minItems": 1000}})),
     "values"),
    ("choices-times-values", "chat", chat_body(n=128, response_format=schema_format(
        {"type": "array", "minItems": 5000})), "n x the values"),
    ("ref-self", "chat", chat_body(response_format=schema_format(
        {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})), "recursive $ref"),
    ("ref-tree", "chat", chat_body(response_format=schema_format(
        {"$defs": {"node": {"type": "object", "properties": {
            "child": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"})), "recursive $ref"),
    ("ref-mutual", "chat", chat_body(response_format=schema_format(
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"properties": {"x": {"$ref": "#/$defs/a"}}}},
         "$ref": "#/$defs/a"})), "recursive $ref"),
    ("ref-through-a-list", "chat", chat_body(response_format=schema_format(
        {"$defs": [1], "$ref": "#/$defs/0"})), "$ref"),
    ("ref-number", "chat", chat_body(response_format=schema_format({"$ref": 5})), "$ref"),
    ("properties-number", "chat", chat_body(response_format=schema_format(
        {"type": "object", "properties": 5})), "properties"),
    ("items-number", "chat", chat_body(response_format=schema_format(
        {"type": "array", "items": 5})), "items"),
    ("enum-number", "chat", chat_body(response_format=schema_format({"enum": 5})), "enum"),
    ("any-of-numbers", "chat", chat_body(response_format=schema_format({"anyOf": [5]})),
     "anyOf"),
    ("minimum-text", "chat", chat_body(response_format=schema_format(
        {"type": "integer", "minimum": "a"})), "minimum"),
    ("minimum-above-maximum", "chat", chat_body(response_format=schema_format(
        {"type": "integer", "minimum": 5, "maximum": 1})), "minimum"),
    ("schema-deep", "chat", chat_body(response_format=schema_format(deep(40))), "deeper"),
    ("schema-in-the-prompt", "chat", chat_body(
        messages=[{"role": "user", "content": "Answer as JSON.\n```json\n" + json.dumps(
            {"type": "array", "minItems": 100_000_000, "items": {"type": "string"}})
            + "\n```"}], response_format={"type": "json_object"}), "minItems"),
    ("tool-parameters-recursive", "chat", chat_body(tools=[{"type": "function", "function": {
        "name": "t", "parameters": {"$defs": {"a": {"type": "object", "properties": {
            "b": {"$ref": "#/$defs/a"}}}}, "$ref": "#/$defs/a"}}}]), "recursive $ref"),
]


@pytest.mark.parametrize(("route", "body", "fragment"), [(r, b, f) for _, r, b, f in BOUNDS],
                         ids=[case for case, *_ in BOUNDS])
@pytest.mark.slow
def test_out_of_bounds_requests_get_a_400_json_error(server, route: str, body: dict,
                                                     fragment: str) -> None:
    srv = server(latency_s=5.0)  # answered at once: a refusal does not wait for the latency
    body = {"model": "offline", **body}
    response = _HTTP.post(f"{srv.base_url}/{'embeddings' if route == 'embeddings' else 'chat/completions'}",
                          json=body, timeout=4)
    assert response.status_code == 400, response.text[:300]
    message = response.json()["error"]["message"]
    assert fragment in message
    assert not PYTHON_TEXT.search(response.text)
    assert srv.stats.out_of_bounds == 1 and srv.stats.answered == 0


def test_bounds_leave_ordinary_requests_alone(server) -> None:
    srv = server()
    ok = _HTTP.post(f"{srv.base_url}/embeddings",
                    json={"model": "m", "input": ["a b", "c"], "dimensions": 256})
    assert ok.status_code == 200 and len(ok.json()["data"][0]["embedding"]) == 256
    tokens = _HTTP.post(f"{srv.base_url}/embeddings", json={"model": "m", "input": [[1, 2], [3]]})
    assert tokens.status_code == 200 and len(tokens.json()["data"]) == 2
    arrays = _HTTP.post(f"{srv.base_url}/chat/completions", json=chat_body(
        response_format=schema_format({"type": "object", "properties": {
            "a": {"type": "array", "minItems": 3, "maxItems": 5, "items": {
                "type": "integer", "maximum": 0}}}})))
    assert arrays.status_code == 200, arrays.text
    value = json.loads(arrays.json()["choices"][0]["message"]["content"])
    assert 3 <= len(value["a"]) <= 5 and all(v <= 0 for v in value["a"])
    shared = {"type": "object", "properties": {"x": {"type": "string"}}}
    dag = _HTTP.post(f"{srv.base_url}/chat/completions", json=chat_body(
        response_format=schema_format({"$defs": {"s": shared}, "type": "object", "properties": {
            "a": {"$ref": "#/$defs/s"}, "b": {"$ref": "#/$defs/s"}}})))
    assert dag.status_code == 200, dag.text


def test_a_deeply_nested_body_gets_a_400_not_a_dropped_connection(server) -> None:
    srv = server()
    body = b"[" * 50_000 + b"]" * 50_000
    response = _HTTP.post(f"{srv.base_url}/chat/completions", content=body,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "nests deeper" in response.json()["error"]["message"]
    nested = json.dumps(chat_body(metadata=json.loads("[" * 100 + "]" * 100))).encode()
    response = _HTTP.post(f"{srv.base_url}/chat/completions", content=nested,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "nests deeper" in response.text


def test_a_huge_integer_gets_a_400(server) -> None:
    srv = server()
    response = _HTTP.post(f"{srv.base_url}/chat/completions",
                          content=b'{"n": ' + b"9" * 5000 + b"}",
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and not PYTHON_TEXT.search(response.text)


def test_a_body_over_the_bound_gets_a_413_before_it_is_read(server) -> None:
    srv = server()
    port = port_of(srv.base_url)
    answer = raw_exchange(port, (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}"
                                 f"\r\nContent-Type: application/json\r\nContent-Length: "
                                 f"{_MAX_BODY + 1}\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer


def test_an_unexpected_failure_is_logged_not_sent(server, monkeypatch, caplog) -> None:
    from personahub.models.fake_server import server as server_module

    def broken(*args, **kwargs):
        raise KeyError("secret internals")

    monkeypatch.setattr(server_module, "_answer_body", broken)
    srv = server()
    with caplog.at_level("ERROR", logger=server_module.__name__):
        response = _HTTP.post(f"{srv.base_url}/chat/completions", json=chat_body())
    assert response.status_code == 500
    assert "secret internals" not in response.text and "KeyError" not in response.text
    assert "secret internals" in caplog.text

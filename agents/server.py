"""A loopback OpenAI-compatible server that answers from the offline engine.

Tests and benchmarks point the real ``langchain-openai`` client at it, so the HTTP path (JSON
schema response formats, tool calls, usage, errors) is exercised without any model. Users can
use it for dry runs: ``personahub serve`` then ``--llm http://127.0.0.1:PORT/v1``.

Fault injection (each a probability per request, drawn from a seeded RNG): HTTP 429/500 errors,
malformed JSON answers, and hangs (the request sleeps ``hang_s`` before answering). ``latency_s``
is the time from a request's arrival to its answer (the answer is computed meanwhile). Only binds
to loopback addresses.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agents.offline import OfflineEngine, response_format_schema
from personas.errors import PersonahubError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(kw_only=True)
class ServerOptions:
    """Behaviour of the loopback server (latency and injected faults)."""

    seed: int = 0
    latency_s: float = 0.0
    error_rate: float = 0.0
    malformed_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 30.0
    fault_seed: int = 1234

    def __post_init__(self) -> None:
        for name in ("error_rate", "malformed_rate", "hang_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise PersonahubError(f"--{name.replace('_', '-')} must be within [0, 1], got {value}")
        if self.latency_s < 0 or self.hang_s < 0:
            raise PersonahubError("latency and hang times must be >= 0")


@dataclass
class ServerStats:
    """Counts of what the server did, for tests and benchmarks."""

    requests: int = 0
    answered: int = 0
    errors: int = 0
    malformed: int = 0
    hangs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], options: ServerOptions) -> None:
        super().__init__(address, _Handler)
        self.options = options
        self.engine = OfflineEngine(options.seed)
        self.stats = ServerStats()
        self.fault_rng = random.Random(options.fault_seed)
        self.fault_lock = threading.Lock()
        self.stopping = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up (timeouts in tests do that on purpose)."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def draw(self) -> float:
        with self.fault_lock:
            return self.fault_rng.random()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence per-request logging (tests and benchmarks make many requests)."""

    def _send(self, status: int, body: dict[str, Any] | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "offline", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def _sleep_until(self, deadline: float) -> None:
        wait = deadline - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        received = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        srv, opts = self.server, self.server.options
        srv.stats.bump("requests")
        try:
            request = json.loads(raw)
        except json.JSONDecodeError as exc:
            self._send(400, {"error": {"message": f"invalid JSON body: {exc}"}})
            return
        if opts.hang_rate and srv.draw() < opts.hang_rate:
            srv.stats.bump("hangs")
            srv.stopping.wait(opts.hang_s)
        if opts.error_rate and srv.draw() < opts.error_rate:
            srv.stats.bump("errors")
            status = 429 if srv.draw() < 0.5 else 500
            self._sleep_until(received + opts.latency_s)
            self._send(status, {"error": {"message": f"injected fault {status}", "type": "injected"}})
            return
        malformed = bool(opts.malformed_rate and srv.draw() < opts.malformed_rate)
        body = _completion(srv.engine, request, malformed)
        # the answer is computed while the latency runs: each reply leaves ``latency_s`` after its
        # request arrived, so the server's own CPU does not pile up on top of the latency when
        # many requests arrive at once (it would otherwise serialise behind this process's lock)
        self._sleep_until(received + opts.latency_s)
        srv.stats.bump("malformed" if malformed else "answered")  # before the client can see it
        self._send(200, body)


def _completion(engine: OfflineEngine, request: dict[str, Any], malformed: bool) -> dict[str, Any]:
    """An OpenAI chat.completion body answering ``request``."""
    messages = [
        {"role": m.get("role", "user"), "content": m.get("content") or ""}
        for m in request.get("messages", [])
    ]
    reply = engine.respond(
        messages,
        json_schema=response_format_schema(request.get("response_format")),
        tools=request.get("tools"),
        tool_choice=request.get("tool_choice"),
    )
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    finish = "stop"
    if reply.tool_calls:
        calls = []
        for call in reply.tool_calls:
            arguments = json.dumps(call["args"])
            if malformed:
                arguments = arguments[: len(arguments) // 2]
            calls.append({"id": call["id"], "type": "function",
                          "function": {"name": call["name"], "arguments": arguments}})
        message["tool_calls"] = calls
        finish = "tool_calls"
    elif malformed and reply.content:
        message["content"] = reply.content[: len(reply.content) // 2]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "offline"),
        "system_fingerprint": "personahub-offline",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": reply.tokens_in,
            "completion_tokens": reply.tokens_out,
            "total_tokens": reply.tokens_in + reply.tokens_out,
        },
    }


@dataclass
class RunningServer:
    """Handle of a server running in a background thread."""

    base_url: str
    stats: ServerStats
    _server: _Server

    def stop(self) -> None:
        """Stop serving, end hanging requests, and close the socket."""
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()


def start_server(options: ServerOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> RunningServer:
    """Start the server on a loopback address in a daemon thread (port 0 picks a free port)."""
    if host not in _LOOPBACK:
        raise PersonahubError(f"--host {host!r}: the offline server only binds to loopback")
    server = _Server((host, port), options or ServerOptions())
    thread = threading.Thread(target=server.serve_forever, name="offline-openai", daemon=True)
    thread.start()
    bound_port = server.server_address[1]
    return RunningServer(f"http://{host}:{bound_port}/v1", server.stats, server)


@contextmanager
def running_server(options: ServerOptions | None = None, **kwargs: Any) -> Iterator[RunningServer]:
    """Context manager form of ``start_server`` that always stops the server."""
    handle = start_server(options or ServerOptions(**kwargs))
    try:
        yield handle
    finally:
        handle.stop()

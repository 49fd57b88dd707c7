"""A loopback OpenAI-compatible server that answers from the offline engine.

Tests, benchmarks and dry runs point real clients at it, so the whole HTTP path runs without a
model, in real servers' dialects and with seeded faults. It binds loopback only, refuses forgeable
requests, and bounds request sizes and connections (3,000 half-sent heads once held 3,004 threads).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import logging
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import parse_qs, unquote

from personahub.core.errors import PersonahubError, UsageError
from personahub.core.hosts import host_allowed, origin_allowed
from personahub.core.validate import check_int, check_number, check_optional_number
from personahub.models.fake_server.batches import BatchBook, BatchFaults
from personahub.models.fake_server.dialects import (
    DIALECTS,
    LLAMA_CPP_N_CTX,
    Dialect,
    Plan,
    Refusal,
    Shaped,
    make_dialect,
)
from personahub.models.fake_server.files import FILE_MAX_BYTES, FileProblem, FileStore, parse_upload
from personahub.models.fake_server.logprobs import logprobs_content
from personahub.models.fake_server.plant import Plant, PlantedEngine
from personahub.models.fake_server.request_bounds import (
    HEADER_TIMEOUT_S,
    KEEP_ALIVE_S,
    LIMITS,
    MAX_CONNECTIONS,
    Problem,
    check_answer,
    check_body,
    check_chat,
    check_embeddings,
)
from personahub.models.fake_server.runaway import Runaway, run_away
from personahub.models.fake_server.stream import include_usage, sse_events, wants_stream
from personahub.models.fake_server.turn_away import LingeringCloser
from personahub.models.offline import EngineReply, OfflineEngine, approx_tokens, pick_tool
from personahub.models.prompt_prefix import PrefixWindow
from personahub.models.prompt_schema import find_prompt_schema, message_text
from personahub.models.seam_validate import REPAIR_CLOSING, REPAIR_OPENING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ANY_OBJECT = {"type": "object", "properties": {"text": {"type": "string"}}}
_BODY_TIMEOUT_S = 5.0  # a body shorter than its Content-Length is given up on after this
_MAX_BODY = 8 * 1024 * 1024
PREFIX_CACHE_PROMPTS = 64
#: the usage a bad-usage answer reports
IMPOSSIBLE_USAGE: Usage = {"prompt_tokens": -100, "completion_tokens": 10**15, "total_tokens": 10**15 - 100}
# option shares lie in [0, 1] and times in seconds are >= 0
_RATES = ("error_rate", "malformed_rate", "hang_rate", "runaway_rate",
          "bad_usage_rate", "batch_error_rate",
          "batch_fail_rate", "batch_expire_rate")
_SECONDS = {"latency_s": "--latency", "hang_s": "--hang-seconds", "retry_after_s": "--retry-after",
            "batch_delay_s": "--batch-delay"}


@dataclass(kw_only=True)
class ServerOptions:
    """Behaviour of the loopback server (dialect, latency and injected faults)."""

    seed: int = 0
    latency_s: float = 0.0
    error_rate: float = 0.0
    malformed_rate: float = 0.0
    stubborn: bool = False
    hang_rate: float = 0.0
    hang_s: float = 30.0
    runaway_rate: float = 0.0
    bad_usage_rate: float = 0.0
    fault_seed: int = 1234
    dialect: str = "openai"
    retry_after_s: float | None = None
    error_statuses: tuple[int, ...] = (429, 503)
    context_tokens: int = LLAMA_CPP_N_CTX
    #: prompts the emulated prefix cache remembers (1: one slot, no prompt cache)
    prefix_cache_prompts: int = PREFIX_CACHE_PROMPTS
    #: Model names served; others get a 404. Empty: any name is answered.
    models: tuple[str, ...] = ()
    #: Batch API: run time, the share of lines answered 500, and whole-batch failures and expiries (a
    #: rate, or creation ordinals).
    batch_delay_s: float = 0.0
    batch_error_rate: float = 0.0
    batch_fail_rate: float = 0.0
    batch_expire_rate: float = 0.0
    batch_fail: tuple[int, ...] = ()
    batch_expire: tuple[int, ...] = ()
    #: Seconds for a request's head and an idle connection, and the most open connections.
    header_timeout_s: float = HEADER_TIMEOUT_S
    keep_alive_s: float = KEEP_ALIVE_S
    max_connections: int = MAX_CONNECTIONS
    #: planted answers, so an experiment has an effect to find
    plants: tuple[Plant, ...] = ()
    #: token log-probabilities when asked; False: answered null
    logprobs: bool = True

    def __post_init__(self) -> None:
        # every float is finite: inf once made each request's sleep raise OverflowError
        for name in _RATES:
            value = check_number(getattr(self, name), f"--{name.replace('_', '-')}")
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')} must be within [0, 1], got {value}")
        for name, flag in _SECONDS.items():
            check_optional_number(getattr(self, name), flag, low=0)
        check_number(self.header_timeout_s, "--header-timeout", above=0)
        check_number(self.keep_alive_s, "--keep-alive", above=0)
        check_int(self.max_connections, "--max-connections", low=1)
        if self.dialect not in DIALECTS:
            raise UsageError(f"--dialect {self.dialect!r}: choose one of {', '.join(DIALECTS)}")
        if not self.error_statuses or any(not 400 <= s <= 599 for s in self.error_statuses):
            raise PersonahubError(f"error statuses must be 4xx/5xx, got {self.error_statuses}")
        if self.prefix_cache_prompts < 1:
            raise PersonahubError(f"prefix_cache_prompts must be >= 1, got {self.prefix_cache_prompts}")
        if self.context_tokens < 1:
            raise PersonahubError(f"context_tokens must be >= 1, got {self.context_tokens}")
        if any(not isinstance(m, str) or not m.strip() for m in self.models):
            raise PersonahubError(f"--model names must be non-empty, got {list(self.models)}")
        for name in ("batch_fail", "batch_expire"):
            if any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                   for n in getattr(self, name)):
                raise PersonahubError(f"--{name.replace('_', '-')} takes batch ordinals >= 1 "
                                      f"(1 = the first batch created), got {getattr(self, name)}")

    @property
    def batch_faults(self) -> BatchFaults:
        return BatchFaults(delay_s=self.batch_delay_s, error_rate=self.batch_error_rate,
                           fail_rate=self.batch_fail_rate, expire_rate=self.batch_expire_rate,
                           fail=tuple(self.batch_fail), expire=tuple(self.batch_expire),
                           seed=self.fault_seed)


@dataclass
class ServerStats:
    """Counts of what the server did, for tests and benchmarks."""

    requests: int = 0
    answered: int = 0
    errors: int = 0
    malformed: int = 0
    repairs: int = 0
    hangs: int = 0
    runaways: int = 0
    bad_usage: int = 0
    refused: int = 0
    truncated: int = 0
    bad_bodies: int = 0
    out_of_bounds: int = 0
    forbidden: int = 0
    files_uploaded: int = 0
    batches_created: int = 0
    batch_cancels: int = 0
    batch_lines: int = 0
    batch_line_errors: int = 0
    #: monotonic time of the first POST: tests time a client's give-up from it.
    first_request_s: float | None = None
    header_timeouts: int = 0
    idle_closed: int = 0
    turned_away: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def arrived(self, received: float) -> None:
        with self.lock:
            if self.first_request_s is None:
                self.first_request_s = received

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {name: value for name, value in vars(self).items() if isinstance(value, int)}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], options: ServerOptions) -> None:
        super().__init__(address, _Handler)
        self.options = options
        self.dialect = make_dialect(options.dialect, context_tokens=options.context_tokens)
        self.engine = (PlantedEngine(options.seed, options.plants) if options.plants
                       else OfflineEngine(options.seed))
        self.stats = ServerStats()
        self.fault_rng = random.Random(options.fault_seed)
        self.fault_lock = threading.Lock()
        self.stopping = threading.Event()
        self.prefixes = PrefixWindow(options.prefix_cache_prompts)
        self.prefix_lock = threading.Lock()
        self.files = FileStore()
        self.batches = BatchBook(self.files, partial(answer_line, self), options.batch_faults,
                                 self.stopping, self.stats.bump)
        self.open_connections = 0
        self.open_lock = threading.Lock()
        self.refused = LingeringCloser(self.stopping)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in its own thread, or answer 503 and close it when full."""
        with self.open_lock:
            full = self.open_connections >= self.options.max_connections
            if not full:
                self.open_connections += 1
        if not full:
            super().process_request(request, client_address)
            return
        self.stats.bump("turned_away")
        refusal = self.dialect.error(503, f"this server has {self.options.max_connections} "
                                          "connections open, its --max-connections; retry shortly")
        body = json.dumps(refusal.body).encode("utf-8")
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
        try:
            request.setblocking(False)
            request.send(head.encode("ascii") + body)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            self.close_request(request)
            return
        self.refused.close_later(request)  # closed once drained, so no reset eats the 503

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self.open_lock:
                self.open_connections -= 1

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket],
                     client_address: object) -> None:
        """Ignore clients that hang up (tests time out on purpose)."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def draw(self) -> float:
        with self.fault_lock:
            return self.fault_rng.random()

    def cached_tokens(self, messages: list[Turn], prompt_tokens: int) -> int:
        """Tokens of the prompt's longest prefix shared with a recent prompt; remembers the prompt."""
        text = " ".join(str(m.get("content") or "") for m in messages)
        with self.prefix_lock:
            shared = self.prefixes.match(text)
        return max(0, min(shared // 4, prompt_tokens - 1))


class _BadBody(Exception):
    """The request body could not be read as its headers describe it."""


class _TooLarge(_BadBody):
    """The request body is longer than the server takes."""


class _DeadlineReader(io.RawIOBase):
    """Socket reads bounded by a deadline while one is set: a per-read timeout alone lets a client that
    sends a byte now and then hold its connection for ever.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.deadline: float | None = None
        self.timed_out = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.deadline is None:
            return self.sock.recv_into(buffer)
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError("deadline passed")
            self.sock.settimeout(left)
            return self.sock.recv_into(buffer)
        except TimeoutError:
            self.timed_out = True
            raise


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Silence per-request logging (tests and benchmarks make many requests)."""

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineReader(self.connection)
        self._buffered = io.BufferedReader(self._reader)
        self.rfile = self._buffered

    def handle_one_request(self) -> None:
        """Wait a bounded time for a request's first byte, then for its head."""
        options = self.server.options
        self._reader.deadline = time.monotonic() + options.keep_alive_s
        self._reader.timed_out = False
        try:
            started = self._buffered.peek(1)
        except TimeoutError:
            self.server.stats.bump("idle_closed")
            self.close_connection = True
            return
        if not started:
            self.close_connection = True
            return
        self._reader.deadline = time.monotonic() + options.header_timeout_s
        self._reader.timed_out = False
        super().handle_one_request()
        if self._reader.timed_out and self._reader.deadline is not None:
            self.server.stats.bump("header_timeouts")

    def parse_request(self) -> bool:
        """Parse the head, then read the body and answer without the head's deadline."""
        ok = super().parse_request()
        self._reader.deadline = None
        self.connection.settimeout(None)
        return ok

    def _send(self, status: int, body: Mapping[str, object] | str,
              headers: Mapping[str, str] | None = None, *, plain: bool = False) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if plain else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, refusal: Refusal) -> None:
        body = refusal.body
        self._send(refusal.status, body, refusal.headers, plain=isinstance(body, str))

    def _guard(self) -> bool:
        """Whether the request may be answered: a Host naming this server and no foreign Origin (this blocks
        web pages and DNS rebinding).
        """
        address = self.server.server_address
        host, port = str(address[0]), int(address[1])
        problem = ""
        if not host_allowed(self.headers.get("Host"), host, port):
            problem = f"Host {self.headers.get('Host')!r} does not name this server"
        elif not origin_allowed(self.headers.get("Origin"), host, port):
            problem = f"cross-origin requests are refused (Origin {self.headers.get('Origin')!r})"
        if not problem:
            return True
        self.server.stats.bump("forbidden")
        self.close_connection = True
        self._refuse(self.server.dialect.error(403, problem))
        return False

    def do_OPTIONS(self) -> None:  # noqa: N802 - stdlib naming
        """Answer a same-origin preflight; no CORS header is sent, so other sites' pages are refused."""
        if not self._guard():
            return
        self.send_response(204)
        self.send_header("Allow", _ALLOW)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_allowed(self) -> None:
        if not self._guard():
            return
        self.close_connection = True
        self._send(405, {"error": {"message": f"{self.command} is not supported; use {_ALLOW}",
                                   "type": "invalid_request_error", "param": None, "code": None}},
                   {"Allow": _ALLOW})

    do_PUT = do_PATCH = _not_allowed  # noqa: N815 - stdlib naming

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if not self._guard():
            return
        path = self.path.split("?")[0].rstrip("/")
        names = self.server.options.models or ("offline",)
        files, batches = _FILES.search(path), _BATCHES.search(path)
        if path.endswith("/personahub/stats"):
            self._send(200, self.server.stats.snapshot())
        elif files or batches:
            self._batch_api(lambda: self._get_batch_api(files, batches))
        elif path.endswith("/models"):
            self._send(200, {"object": "list", "data": [_model_entry(n) for n in names]})
        elif "/models/" in path:
            name = unquote(path.split("/models/", 1)[1])
            if self.server.options.models and name not in names:
                self._refuse(self.server.dialect.model_not_found(name))
            else:
                self._send(200, _model_entry(name))
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib naming
        files = _FILES.search(self.path.split("?")[0].rstrip("/"))
        if files is None or files.group(1) is None or files.group(2):
            self._not_allowed()
            return
        if self._guard():
            if self._declares_body():  # left unread: the next request's start is unknown
                self.close_connection = True
            file_id = unquote(files.group(1))
            self._batch_api(lambda: self.server.files.delete(file_id))

    def _get_batch_api(self, files: re.Match[str] | None,
                       batches: re.Match[str] | None) -> dict[str, object] | bytes:
        srv = self.server
        query = parse_qs(self.path.partition("?")[2])
        if files is not None:
            if files.group(1) is None:
                return srv.files.listing(_first(query, "purpose"))
            stored = srv.files.get(unquote(files.group(1)))
            return stored.data if files.group(2) else stored.describe()
        assert batches is not None
        if batches.group(1) is None:
            try:
                limit = min(100, max(1, int((query.get("limit") or ["20"])[0])))
            except ValueError:
                raise FileProblem(400, "Invalid value for 'limit'.", "limit") from None
            return srv.batches.listing(_first(query, "after"), limit)
        if batches.group(2):
            raise FileProblem(405, "cancel a batch with POST")
        return srv.batches.get(unquote(batches.group(1)))

    def _batch_api(self, answer: Callable[[], dict[str, object] | bytes]) -> None:
        """Send what the route returns, or its error."""
        try:
            body = answer()
        except FileProblem as exc:
            self._refuse(self.server.dialect.error(exc.status, str(exc), param=exc.param))
            return
        except OSError:
            raise
        except Exception:  # never a dropped connection, never exception text to a client
            log.exception("offline server: %s %s failed", self.command, self.path)
            self._refuse(self.server.dialect.error(500, "offline server error (the server "
                                                   "logged it)"))
            return
        if isinstance(body, bytes):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self._send(200, body)

    def _sleep_until(self, deadline: float) -> None:
        wait = deadline - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _read_body(self, bound: int = _MAX_BODY) -> bytes:
        """Read the body, within a bound. A bad or unmet length closes the connection afterwards: the next
        request's
        start is unknown.
        """
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(bound)
        declared = self.headers.get("Content-Length")
        try:
            length = int(declared) if declared is not None else 0
        except ValueError:
            length = -1
        if length > bound:
            self.close_connection = True
            raise _TooLarge(f"the body is {length} bytes; this server takes {bound} at most")
        if not 0 <= length:
            self.close_connection = True
            raise _BadBody(f"bad Content-Length {declared!r}")
        if not length:
            return b""
        self.connection.settimeout(_BODY_TIMEOUT_S)
        try:
            raw = self.rfile.read(length)
        except TimeoutError as exc:
            self.close_connection = True
            raise _BadBody(f"the body ended before its Content-Length ({length} bytes)") from exc
        finally:
            self.connection.settimeout(None)
        if len(raw) < length:
            self.close_connection = True
            raise _BadBody(f"the body ended before its Content-Length ({length} bytes)")
        return raw

    def _read_chunked(self, bound: int = _MAX_BODY) -> bytes:
        self.connection.settimeout(_BODY_TIMEOUT_S)
        parts: list[bytes] = []
        try:
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                if sum(map(len, parts)) + size > bound:
                    self.close_connection = True
                    raise _TooLarge(f"the body is longer than {bound} bytes")
                if size < 0:
                    raise ValueError(size)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        except (TimeoutError, ValueError) as exc:
            self.close_connection = True
            raise _BadBody(f"bad chunked body ({exc})") from exc
        finally:
            self.connection.settimeout(None)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        received = time.monotonic()
        srv, dialect = self.server, self.server.dialect
        srv.stats.arrived(received)
        if not self._guard():
            return
        path = self.path.split("?")[0].rstrip("/")
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if path.endswith("/files"):
            self._upload(kind)
            return
        cancel = _BATCHES.search(path)
        if kind != "application/json" and not (cancel and cancel.group(2)
                                               and not self._declares_body()):
            srv.stats.bump("forbidden")
            self.close_connection = True
            self._refuse(dialect.error(415, f"Content-Type {kind or 'missing'!r}: this server "
                                       "takes application/json only"))
            return
        problem = ""
        try:
            raw = self._read_body()
        except _TooLarge as exc:
            srv.stats.bump("out_of_bounds")
            self._refuse(dialect.error(413, str(exc)))
            return
        except _BadBody as exc:
            raw, problem = None, str(exc)
        if cancel is not None:
            self._post_batches(cancel, raw, problem)
            return
        embeddings = path.endswith("/embeddings")
        if not embeddings and not path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        srv.stats.bump("requests")
        request = _parse(raw, dialect) if raw is not None else dialect.bad_body(problem, parsed=False)
        if isinstance(request, Refusal):
            srv.stats.bump("bad_bodies")
            self._refuse(request)
            return
        served = srv.options.models
        if served and request.get("model") not in served:
            srv.stats.bump("refused")
            self._refuse(dialect.model_not_found(request.get("model")))
            return
        try:
            check_body(request)
            if embeddings:
                self._embed(request, check_embeddings(request), received)
            else:
                self._answer(request, received)
        except Problem as exc:
            srv.stats.bump("out_of_bounds")
            self._refuse(dialect.error(400, str(exc), param=exc.param))
        except OSError:
            raise
        except Exception:  # a request shape nobody checked: answer, never drop it
            log.exception("offline server: request to %s failed", self.path)
            self._refuse(dialect.error(500, "offline server error (the server logged it)"))

    def _declares_body(self) -> bool:
        """Whether the request says it has a body."""
        length = (self.headers.get("Content-Length") or "0").strip()
        return length not in ("", "0") or "Transfer-Encoding" in self.headers

    def _upload(self, kind: str) -> None:
        srv = self.server
        if kind != "multipart/form-data":
            srv.stats.bump("forbidden")
            self.close_connection = True
            self._refuse(srv.dialect.error(415, f"Content-Type {kind or 'missing'!r}: a file "
                                           "upload is multipart/form-data"))
            return
        try:
            raw = self._read_body(FILE_MAX_BYTES)
        except _TooLarge as exc:
            srv.stats.bump("out_of_bounds")
            self._refuse(srv.dialect.error(413, str(exc)))
            return
        except _BadBody as exc:
            self._refuse(srv.dialect.error(400, str(exc)))
            return

        def store() -> dict[str, object]:
            filename, purpose, data = parse_upload(self.headers.get("Content-Type") or "", raw)
            stored = srv.files.add(filename, purpose, data)
            srv.stats.bump("files_uploaded")
            return stored.describe()

        self._batch_api(store)

    def _post_batches(self, match: re.Match[str], raw: bytes | None, problem: str) -> None:
        srv = self.server
        if match.group(2):
            self._batch_api(lambda: srv.batches.cancel(unquote(match.group(1))))
            return
        if match.group(1) is not None:
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        request = _parse(raw, srv.dialect) if raw is not None else srv.dialect.bad_body(
            problem, parsed=False)
        if isinstance(request, Refusal):
            self._refuse(request)
            return
        self._batch_api(lambda: srv.batches.create(request))

    def _fault(self, received: float) -> bool:
        """Inject a hang and/or an HTTP error as the options say; True when one was sent."""
        srv, opts, dialect = self.server, self.server.options, self.server.dialect
        if opts.hang_rate and srv.draw() < opts.hang_rate:
            srv.stats.bump("hangs")
            srv.stopping.wait(opts.hang_s)
        if opts.error_rate and srv.draw() < opts.error_rate:
            srv.stats.bump("errors")
            statuses = opts.error_statuses
            status = statuses[min(int(srv.draw() * len(statuses)), len(statuses) - 1)]
            fault = dialect.error(status, f"injected fault {status}")
            self._sleep_until(received + opts.latency_s)
            self._send(status, fault.body, _retry_after(status, opts.retry_after_s))
            return True
        return False

    def _embed(self, request: dict[str, object], texts: list[str], received: float) -> None:
        """Answer embeddings with word-hashing vectors, with the chat answers' latency and faults."""
        if self._fault(received):
            return
        self._sleep_until(received + self.server.options.latency_s)
        self.server.stats.bump("answered")
        self._send(200, _embedding_body(request, texts))

    def _answer(self, request: dict[str, object], received: float) -> None:
        """Refuse as the dialect would, inject faults, or answer."""
        srv, opts = self.server, self.server.options
        prepared = _prepare_chat(srv, request)
        if isinstance(prepared, Refusal):
            self._refuse(prepared)
            return
        if self._fault(received):
            return
        body, cut, malformed = _chat_reply(srv, request, prepared)
        # computed during the latency, so the server's CPU under load does not add to it
        self._sleep_until(received + opts.latency_s)
        if cut:
            srv.stats.bump("truncated")
        srv.stats.bump("malformed" if malformed else "answered")
        if wants_stream(request):
            self._send_stream(sse_events(body, include_usage=include_usage(request)))
        else:
            self._send(200, body)

    def _send_stream(self, events: Iterator[bytes]) -> None:
        """Send a 200 event-stream answer, one HTTP chunk per event."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")


def _parse(raw: bytes, dialect: Dialect) -> dict[str, object] | Refusal:
    try:
        request = json.loads(raw)
    except RecursionError:
        return dialect.bad_body(f"the body nests deeper than {LIMITS.depth} levels", parsed=False)
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of thousands of digits
        return dialect.bad_body(str(exc).splitlines()[0], parsed=False)
    if not isinstance(request, dict):
        return dialect.bad_body(f"the body is a JSON {type(request).__name__}, not an object",
                                parsed=True, value=request)
    return request


class Turn(TypedDict):
    """A request message as the engine reads it: its role and its text."""

    role: object
    content: str


class Usage(TypedDict, total=False):
    """A completion's token counts."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]


class Choice(TypedDict):
    """One answer of a completion."""

    index: int
    message: dict[str, object]
    finish_reason: str
    logprobs: object


class ChatBody(TypedDict):
    """A chat completion as the server sends it."""

    id: str
    object: str
    created: int
    model: object
    system_fingerprint: str
    choices: list[Choice]
    usage: Usage


@dataclass(frozen=True)
class _Prepared:
    """A chat request the dialect takes: plan, messages, choices and answer schema."""

    plan: Plan
    messages: list[Turn]
    choices: int
    schema: Mapping[str, object] | None


def _prepare_chat(srv: _Server, request: dict[str, object]) -> _Prepared | Refusal:
    """Return the dialect's refusal of the request, or what answering it takes (shared with batch lines, so
    both are refused alike).
    """
    dialect = srv.dialect
    messages = _plain_messages(request)
    plan = dialect.plan(request, approx_tokens(" ".join(m["content"] for m in messages)))
    if isinstance(plan, Refusal):
        srv.stats.bump("refused")
        return plan
    choices = dialect.choices(request)
    if isinstance(choices, Refusal):
        srv.stats.bump("refused")
        return choices
    check_chat(plan.max_tokens, choices, plan.tools)
    schema = _answer_schema(plan, messages)
    check_answer([(schema, "response_format"),
                  *((_parameters(t), "tools") for t in _tools(plan) or ())], choices)
    return _Prepared(plan, messages, choices, schema)


def _tools(plan: Plan) -> list[Mapping[str, object]] | None:
    """Return the plan's tools as check_chat lets them through: a list of tool objects, or None."""
    tools = plan.tools
    if not isinstance(tools, list):
        return None
    return [tool for tool in tools if isinstance(tool, Mapping)]


def _parameters(tool: Mapping[str, object]) -> object:
    """Return a tool's parameter schema (check_chat made sure its function is an object)."""
    function = tool.get("function", tool)
    return function.get("parameters") if isinstance(function, Mapping) else None


def _chat_reply(srv: _Server, request: dict[str, object],
                prepared: _Prepared) -> tuple[ChatBody, bool, bool]:
    """Return the completion, whether it was cut, and whether it was malformed."""
    opts = srv.options
    asked, repair = _before_repair(prepared.messages)
    malformed = bool(opts.malformed_rate and srv.draw() < opts.malformed_rate) and (
        not repair or opts.stubborn)
    runaway = bool(opts.runaway_rate and srv.draw() < opts.runaway_rate)
    if runaway:
        srv.stats.bump("runaways")
    body, cut = _answer_body(srv.engine, srv.dialect, request, asked, prepared.plan,
                             malformed, prepared.choices, runaway=runaway,
                             schema=prepared.schema)
    if repair:
        srv.stats.bump("repairs")
        usage = body["usage"]
        usage["prompt_tokens"] += approx_tokens(" ".join(m["content"] for m in repair))
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if srv.dialect.reports_cached_tokens:
        usage = body["usage"]
        usage["prompt_tokens_details"] = {
            "cached_tokens": srv.cached_tokens(prepared.messages, usage["prompt_tokens"])}
    if opts.logprobs and request.get("logprobs") is True:
        for choice in body["choices"]:
            choice["logprobs"] = logprobs_content(opts.seed, asked, request)
    if opts.bad_usage_rate and srv.draw() < opts.bad_usage_rate:
        srv.stats.bump("bad_usage")
        body["usage"].update(IMPOSSIBLE_USAGE)
    return body, cut, malformed


def answer_line(srv: _Server, url: str, request: object) -> tuple[int, Mapping[str, object] | str]:
    """Status and body answering one batch line as the online route would, minus connection faults."""
    dialect = srv.dialect
    if not isinstance(request, dict):
        refusal = dialect.bad_body(f"the body is a JSON {type(request).__name__}, not an object",
                                   parsed=True, value=request)
        return refusal.status, refusal.body
    served = srv.options.models
    if served and request.get("model") not in served:
        srv.stats.bump("refused")
        refusal = dialect.model_not_found(request.get("model"))
        return refusal.status, refusal.body
    try:
        check_body(request)
        if url.rstrip("/").endswith("/embeddings"):
            return 200, _embedding_body(request, check_embeddings(request))
        if wants_stream(request):
            refusal = dialect.error(400, "A batch request cannot be streamed.", param="stream")
            return refusal.status, refusal.body
        prepared = _prepare_chat(srv, request)
        if isinstance(prepared, Refusal):
            return prepared.status, prepared.body
        body, cut, malformed = _chat_reply(srv, request, prepared)
        if cut:
            srv.stats.bump("truncated")
        if malformed:
            srv.stats.bump("malformed")
        return 200, body
    except Problem as exc:
        srv.stats.bump("out_of_bounds")
        refusal = dialect.error(400, str(exc), param=exc.param)
    except Exception:  # a request shape nobody checked: an error line, never a dead batch
        log.exception("offline server: a batch line to %s failed", url)
        refusal = dialect.error(500, "offline server error (the server logged it)")
    return refusal.status, refusal.body


def _embedding_body(request: Mapping[str, object], texts: list[str]) -> dict[str, object]:
    from personahub.personas.embedding import HashEmbedder

    dimensions = request.get("dimensions")  # check_embeddings made sure it is an integer
    dim = dimensions if isinstance(dimensions, int) and dimensions else 64
    vectors = HashEmbedder(dim=dim).embed(texts)
    tokens = sum(approx_tokens(t) for t in texts)
    as_base64 = request.get("encoding_format") == "base64"
    return {"object": "list", "model": request.get("model", "offline"),
            "data": [{"object": "embedding", "index": i,
                      "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
                                    if as_base64 else v.tolist())}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _first(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _model_entry(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "personahub-offline"}


def _retry_after(status: int, seconds: float | None) -> dict[str, str]:
    if seconds is None or status not in (429, 503):
        return {}
    return {"Retry-After": str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"}


def _plain_messages(request: Mapping[str, object]) -> list[Turn]:
    raw = request.get("messages")
    if not isinstance(raw, list):
        return []
    return [Turn(role=m.get("role", "user"), content=message_text(m.get("content")))
            for m in raw if isinstance(m, dict)]


def _before_repair(messages: list[Turn]) -> tuple[list[Turn], list[Turn]]:
    """Split a repair prompt into the first conversation and the repair turn; a repair is answered with the
    first request's answer, unbroken.
    """
    last = messages[-1]["content"] if messages else ""
    if not (len(messages) >= 3 and messages[-1]["role"] == "user" and last.startswith(REPAIR_OPENING)
            and messages[-2]["role"] == "assistant"):
        return messages, []
    asked = messages[:-2]
    # in prompt mode the schema's instruction follows the last user turn: now the repair's
    tail = last[last.find(REPAIR_CLOSING) + len(REPAIR_CLOSING):] if REPAIR_CLOSING in last else ""
    if tail.strip() and asked[-1]["role"] == "user":
        asked[-1] = Turn(role=asked[-1]["role"], content=asked[-1]["content"] + tail)
        return asked, [messages[-2], Turn(role=messages[-1]["role"],
                                          content=last[:len(last) - len(tail)])]
    return asked, messages[-2:]


def _completion(engine: OfflineEngine, request: dict[str, object], malformed: bool = False,
                dialect: Dialect | None = None) -> Mapping[str, object]:
    dialect = dialect or make_dialect("openai")
    messages = _plain_messages(request)
    plan = dialect.plan(request, approx_tokens(" ".join(m["content"] for m in messages)))
    if isinstance(plan, Refusal):
        return {"status": plan.status, "body": plan.body}
    return _answer_body(engine, dialect, request, messages, plan, malformed)[0]


def _answer_schema(plan: Plan, messages: list[Turn]) -> Mapping[str, object] | None:
    """Return the schema an answer fills: the plan's, else the prompt's, else any object when JSON is due."""
    schema = plan.json_schema
    if schema is None and plan.prompt_schema and not plan.tools:
        try:
            schema = find_prompt_schema(messages)
        except RecursionError:
            raise Problem(f"the schema in the prompt nests deeper than {LIMITS.depth} levels",
                          "messages") from None
    if schema is None and plan.wants_json:
        schema = _ANY_OBJECT
    return schema


def _answer_body(engine: OfflineEngine, dialect: Dialect, request: Mapping[str, object],
                 messages: list[Turn], plan: Plan,
                 malformed: bool, choices: int = 1, *,
                 runaway: bool = False,
                 schema: Mapping[str, object] | None = None) -> tuple[ChatBody, bool]:
    if schema is None:
        schema = _answer_schema(plan, messages)
    answers = [_choice(choice_engine(engine, i), dialect, messages, plan, schema, malformed,
                       runaway) for i in range(choices)]
    tokens_in = answers[0][2]
    tokens_out = sum(a[3] for a in answers)
    body: ChatBody = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "offline"),
        "system_fingerprint": "personahub-offline",
        "choices": [{"index": i, "message": shaped.message, "finish_reason": shaped.finish_reason,
                     "logprobs": None} for i, (shaped, *_) in enumerate(answers)],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    }
    return body, any(a[1] for a in answers)


def choice_engine(engine: OfflineEngine, index: int) -> OfflineEngine:
    """Return the engine for a choice: the server's own for the first, one seeded by index for the others."""
    if index == 0:
        return engine
    digest = hashlib.blake2b(f"{engine.seed}/choice/{index}".encode(), digest_size=8).digest()
    return OfflineEngine(int.from_bytes(digest, "big"))


def _choice(engine: OfflineEngine, dialect: Dialect, messages: list[Turn], plan: Plan,
            schema: Mapping[str, object] | None, malformed: bool,
            runaway: bool = False) -> tuple[Shaped, bool, int, int]:
    reply = engine.respond(messages, json_schema=schema, tools=_tools(plan),
                           tool_choice=plan.tool_choice)
    limit = plan.max_tokens
    if runaway:
        ran = _run_away(reply, plan, schema)
        if ran is not None:
            return _runaway_choice(dialect, plan, reply, ran, malformed)
    cut = limit is not None and reply.tokens_out > limit
    keep = (limit or 0) * 4
    if reply.tool_calls:
        calls = []
        for call in reply.tool_calls:
            arguments = json.dumps(call["args"])
            arguments = arguments[:keep] if cut else arguments
            if malformed:
                arguments = arguments[: len(arguments) // 2]
            calls.append({"id": call["id"], "name": call["name"], "arguments": arguments})
        shaped = dialect.tool_answer(plan, calls, cut)
    else:
        content = reply.content[:keep] if cut else reply.content
        if malformed and content:
            content = content[: len(content) // 2]
        shaped = dialect.text_answer(content, cut)
    tokens_out = min(reply.tokens_out, limit) if cut and limit is not None else reply.tokens_out
    return shaped, cut, reply.tokens_in, tokens_out


def _run_away(reply: EngineReply, plan: Plan, schema: Mapping[str, object] | None) -> Runaway | None:
    if reply.tool_calls:
        tools = _tools(plan)
        tool = pick_tool(tools, plan.tool_choice) if tools else {}
        return run_away(reply.tool_calls[0]["args"], tool.get("parameters"), plan.max_tokens)
    try:
        value = json.loads(reply.content)
    except json.JSONDecodeError:
        return None
    return run_away(value, schema, plan.max_tokens)


def _runaway_choice(dialect: Dialect, plan: Plan, reply: EngineReply, ran: Runaway,
                    malformed: bool) -> tuple[Shaped, bool, int, int]:
    text = ran.text[: len(ran.text) // 2] if malformed else ran.text
    if reply.tool_calls:
        call = reply.tool_calls[0]
        shaped = dialect.tool_answer(plan, [{"id": call["id"], "name": call["name"],
                                             "arguments": text}], ran.cut)
    else:
        shaped = dialect.text_answer(text, ran.cut)
    return shaped, ran.cut, reply.tokens_in, ran.tokens


@dataclass
class RunningServer:
    """Handle of a server running in a background thread."""

    base_url: str
    stats: ServerStats
    _server: _Server

    def stop(self) -> None:
        """Stop serving, end hanging requests, and close the socket."""
        self._server.stopping.set()
        self._server.batches.close()
        self._server.shutdown()
        self._server.server_close()


_ALLOW = "GET, POST, DELETE, OPTIONS"
_FILES = re.compile(r"/files(?:/([^/]+)(/content)?)?$")
_BATCHES = re.compile(r"/batches(?:/([^/]+)(/cancel)?)?$")

#: how often the serving loop checks for a stop (the 0.5 s default made every stop wait that long)
_POLL_S = 0.02


class _Server6(_Server):
    address_family = socket.AF_INET6


def start_server(options: ServerOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> RunningServer:
    """Start the server on a loopback address in a daemon thread (port 0 picks a free port)."""
    if host not in _LOOPBACK:
        raise UsageError(f"--host {host!r}: the offline server only binds to loopback: "
                         f"{', '.join(_LOOPBACK)}")
    ipv6 = ":" in host
    try:
        server = (_Server6 if ipv6 else _Server)((host, port), options or ServerOptions())
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PersonahubError(f"--port {port}: {host} port {port} is already in use; choose "
                                  "another --port (0 picks a free one)") from None
        raise PersonahubError(f"--host {host} --port {port}: cannot listen there "
                              f"({exc.strerror or exc})") from None
    thread = threading.Thread(target=server.serve_forever, args=(_POLL_S,), name="offline-openai",
                              daemon=True)
    thread.start()
    bound_port = server.server_address[1]
    netloc = f"[{host}]" if ipv6 else host
    return RunningServer(f"http://{netloc}:{bound_port}/v1", server.stats, server)


@contextmanager
def running_server(options: ServerOptions | None = None, **kwargs: Any) -> Iterator[RunningServer]:
    handle = start_server(options or ServerOptions(**kwargs))
    try:
        yield handle
    finally:
        handle.stop()

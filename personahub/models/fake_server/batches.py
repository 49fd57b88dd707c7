"""The loopback server's Batch API over the same answers as online.

Each line is answered by the online route's own function, and batches move through the API's
statuses and files. Delays, line errors, failures and expiries are drawn from hashes of the seed and
creation ordinal, so they are deterministic.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from personahub.models.fake_server.files import FileProblem, FileStore, new_id

#: the server's online answer (status, body) to one request
Answer = Callable[[str, dict[str, object]], tuple[int, Mapping[str, object] | str]]
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
MAX_LINES = 50_000  # the OpenAI API's bound on requests per batch
MAX_RUNNING = 64  # batches in progress at once (each runs on a thread of its own)
MAX_ERRORS = 100  # validation errors reported per failed batch
_WINDOW = re.compile(r"^[1-9]\d{0,4}[mhd]$")
_WINDOW_S = {"m": 60, "h": 3600, "d": 86400}
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."


@dataclass(frozen=True)
class BatchFaults:
    """The batch options of the server options."""

    delay_s: float = 0.0
    error_rate: float = 0.0
    fail_rate: float = 0.0
    expire_rate: float = 0.0
    fail: tuple[int, ...] = ()
    expire: tuple[int, ...] = ()
    seed: int = 1234


def draw(seed: int, *parts: object) -> float:
    """Draw a number in [0, 1) from a hash of the seed and parts (independent of thread order)."""
    digest = hashlib.blake2b("/".join(map(str, (seed, *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class _Line:
    custom_id: str
    url: str
    body: dict[str, object]


@dataclass
class _Batch:
    """One batch's state, guarded by its book's lock."""

    batch_id: str
    ordinal: int
    endpoint: str
    input_file_id: str
    window: str
    metadata: dict[str, str] | None
    created_at: int
    status: str = "validating"
    stamps: dict[str, int] = field(default_factory=dict)
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: list[dict[str, object]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    model: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict[str, object]:
        """Return the API's batch object."""
        seconds = int(self.window[:-1]) * _WINDOW_S[self.window[-1]]
        stamps = {f"{name}_at": self.stamps.get(name) for name in (
            "in_progress", "finalizing", "completed", "failed", "expired", "cancelling",
            "cancelled")}
        return {"id": self.batch_id, "object": "batch", "endpoint": self.endpoint,
                "errors": None if self.errors is None else {"object": "list",
                                                            "data": self.errors},
                "input_file_id": self.input_file_id, "completion_window": self.window,
                "status": self.status, "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id, "created_at": self.created_at,
                "expires_at": self.created_at + seconds, **stamps,
                "request_counts": {"total": self.total, "completed": self.completed,
                                   "failed": self.failed},
                "metadata": self.metadata, "model": self.model}


class BatchBook:
    """Every batch the server was asked for, each run on its own daemon thread."""

    def __init__(self, files: FileStore, answer: Answer, faults: BatchFaults,
                 stopping: threading.Event, bump: Callable[[str], None]) -> None:
        self.files, self.answer, self.faults = files, answer, faults
        self.stopping, self.bump = stopping, bump
        self._batches: dict[str, _Batch] = {}
        self._order: list[str] = []
        self._lock = threading.Lock()

    def create(self, request: Mapping[str, object]) -> dict[str, object]:
        """Create a batch: check the request, start it, return it."""
        input_file_id = request.get("input_file_id")
        if not isinstance(input_file_id, str) or not input_file_id:
            raise FileProblem(400, "Missing required parameter: 'input_file_id'.", "input_file_id")
        endpoint = request.get("endpoint")
        if endpoint not in BATCH_ENDPOINTS:
            raise FileProblem(400, f"Invalid value for 'endpoint': {endpoint!r}; this server "
                              f"batches {', '.join(BATCH_ENDPOINTS)}", "endpoint")
        window = request.get("completion_window")
        if not isinstance(window, str) or not _WINDOW.match(window):
            raise FileProblem(400, f"Invalid value for 'completion_window': {window!r} (e.g. 24h)",
                              "completion_window")
        metadata = _metadata(request.get("metadata"))
        stored = self.files.get(input_file_id)
        if stored.purpose != "batch":
            raise FileProblem(400, f"File {input_file_id} has purpose {stored.purpose!r}, not "
                              "'batch'", "input_file_id")
        with self._lock:
            running = sum(b.status not in TERMINAL for b in self._batches.values())
            if running >= MAX_RUNNING:
                raise FileProblem(429, f"{running} batches are in progress, the most this "
                                  "server runs at once; create this one when one has ended")
            ordinal = len(self._order) + 1
            batch = _Batch(new_id("batch_"), ordinal, str(endpoint), input_file_id, window,
                           metadata, int(time.time()))
            self._batches[batch.batch_id] = batch
            self._order.append(batch.batch_id)
            described = batch.describe()
        self.bump("batches_created")
        threading.Thread(target=self._run, args=(batch, stored.data), daemon=True,
                         name=f"loopback-{batch.batch_id}").start()
        return described

    def get(self, batch_id: str) -> dict[str, object]:
        with self._lock:
            return self._find(batch_id).describe()

    def cancel(self, batch_id: str) -> dict[str, object]:
        """Cancel a batch: its thread writes what it answered and ends it."""
        with self._lock:
            batch = self._find(batch_id)
            if batch.status not in ("validating", "in_progress"):
                raise FileProblem(400, f"Cannot cancel a batch with status {batch.status!r}.")
            batch.status = "cancelling"
            batch.stamps["cancelling"] = int(time.time())
            batch.cancel.set()
            described = batch.describe()
        self.bump("batch_cancels")
        return described

    def listing(self, after: str | None, limit: int) -> dict[str, object]:
        """List batches, newest first, paged."""
        with self._lock:
            ids = self._order[::-1]
            if after in self._batches:
                ids = ids[ids.index(after) + 1:]
            page = [self._batches[i].describe() for i in ids[:limit]]
            more = len(ids) > limit
        return {"object": "list", "data": page, "has_more": more,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None}

    def close(self) -> None:
        """Wake every batch thread: the server is stopping, so they end without writing."""
        with self._lock:
            for batch in self._batches.values():
                batch.cancel.set()

    def _find(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise FileProblem(404, f"No batch found with id '{batch_id}'.", "batch_id")
        return batch

    def _set(self, batch: _Batch, status: str, **changes: object) -> None:
        with self._lock:
            if batch.status == "cancelling" and status in ("in_progress", "finalizing"):
                status = "cancelling"  # a cancel arrived meanwhile: stay cancelling
            batch.status = status
            batch.stamps.setdefault(status, int(time.time()))
            for name, value in changes.items():
                setattr(batch, name, value)

    def _picked(self, rate: float, ordinals: tuple[int, ...], ordinal: int, kind: str) -> bool:
        return ordinal in ordinals or (rate > 0 and draw(self.faults.seed, kind, ordinal) < rate)

    def _run(self, batch: _Batch, data: bytes) -> None:
        faults = self.faults
        lines, problems = read_lines(data, batch.endpoint)
        if self._picked(faults.fail_rate, faults.fail, batch.ordinal, "fail"):
            problems = [{"code": "batch_failed", "line": None, "param": None,
                         "message": "injected whole-batch failure (personahub serve "
                                    "--batch-fail)"}]
        if problems:
            self._set(batch, "failed", errors=problems[:MAX_ERRORS])
            return
        model = next((str(line.body.get("model")) for line in lines
                      if isinstance(line.body, dict) and line.body.get("model")), None)
        self._set(batch, "in_progress", total=len(lines), model=model)
        expire = self._picked(faults.expire_rate, faults.expire, batch.ordinal, "expire")
        runs = len(lines) // 2 if expire else len(lines)
        start = time.monotonic()
        outputs: list[_ResultLine] = []
        for index, line in enumerate(lines[:runs]):
            due = start + faults.delay_s * index / max(1, len(lines))
            if batch.cancel.wait(max(0.0, due - time.monotonic())):
                break
            status, body = self._answer_line(batch, index, line)
            outputs.append(_result(line.custom_id, status, body))
            with self._lock:
                if status == 200:
                    batch.completed += 1
                else:
                    batch.failed += 1
        if not batch.cancel.is_set():  # the rest of the delay
            batch.cancel.wait(max(0.0, start + faults.delay_s - time.monotonic()))
        if self.stopping.is_set():
            return
        cancelled = batch.cancel.is_set()
        self._set(batch, "finalizing")
        code, message = (("batch_cancelled", CANCELLED_MESSAGE) if cancelled
                         else ("batch_expired", EXPIRED_MESSAGE))
        skipped = [_skipped(line.custom_id, code, message) for line in lines[len(outputs):]]
        self._finish(batch, outputs + skipped,
                     "cancelled" if cancelled else "expired" if expire else "completed")

    def _answer_line(self, batch: _Batch, index: int,
                     line: _Line) -> tuple[int, Mapping[str, object] | str]:
        """Return a line's answer: the online answer, or an injected failure."""
        self.bump("batch_lines")
        if self.faults.error_rate and draw(self.faults.seed, "line", batch.ordinal,
                                           index) < self.faults.error_rate:
            self.bump("batch_line_errors")
            return 500, {"error": {"message": "injected batch request failure (personahub serve "
                                              "--batch-error-rate)", "type": "server_error",
                                   "param": None, "code": None}}
        return self.answer(line.url, line.body)

    def _finish(self, batch: _Batch, results: list[_ResultLine], status: str) -> None:
        """Write the output and error files and end the batch with a status."""
        ok = [r for r in results if r["response"] is not None
              and r["response"]["status_code"] == 200]
        bad = [r for r in results if not (r["response"] is not None
                                          and r["response"]["status_code"] == 200)]
        output_id = error_id = None
        try:
            if ok:
                output_id = self.files.add(f"{batch.batch_id}_output.jsonl", "batch_output",
                                           _jsonl(ok)).file_id
            if bad:
                error_id = self.files.add(f"{batch.batch_id}_error.jsonl", "batch_output",
                                          _jsonl(bad)).file_id
        except FileProblem as exc:  # the store is full: the batch fails, as a provider's would
            self._set(batch, "failed", errors=[{"code": "server_error", "line": None,
                                                "param": None, "message": str(exc)}])
            return
        skipped = sum(r["response"] is None for r in results)
        with self._lock:
            batch.failed += skipped if status != "completed" else 0
        self._set(batch, status, output_file_id=output_id, error_file_id=error_id)


def read_lines(data: bytes, endpoint: str) -> tuple[list[_Line], list[dict[str, object]]]:
    """Read the requests of a batch file, and the validation errors that fail the batch."""
    lines: list[_Line] = []
    problems: list[dict[str, object]] = []
    seen: set[str] = set()

    def problem(number: int, code: str, message: str, param: str | None = None) -> None:
        problems.append({"code": code, "line": number, "message": message, "param": param})

    text = data.decode("utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except (ValueError, RecursionError):
            problem(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(item, dict):
            problem(number, "invalid_json_line", "This line is not a JSON object.")
            continue
        custom_id, url = item.get("custom_id"), item.get("url")
        if not isinstance(custom_id, str) or not custom_id:
            problem(number, "missing_required_parameter", "The line has no custom_id.",
                    "custom_id")
        elif custom_id in seen:
            problem(number, "duplicate_custom_id", f"The custom_id {custom_id!r} is repeated.",
                    "custom_id")
        elif item.get("method") != "POST":
            problem(number, "invalid_method", "The method must be POST.", "method")
        elif url != endpoint:
            problem(number, "mismatched_url", f"The url {url!r} is not the batch's endpoint "
                    f"{endpoint!r}.", "url")
        elif not isinstance(item.get("body"), dict):
            problem(number, "invalid_body", "The body must be a JSON object.", "body")
        else:
            seen.add(custom_id)
            lines.append(_Line(custom_id, str(url), item["body"]))
    if len(lines) > MAX_LINES:
        problem(0, "too_many_requests", f"A batch holds at most {MAX_LINES} requests.")
    if not lines and not problems:
        problem(0, "empty_file", "The input file holds no requests.")
    return lines, problems


def _metadata(value: object) -> dict[str, str] | None:
    """Return the create request's metadata (at most 16 string pairs), or a problem."""
    if value is None:
        return None
    if (not isinstance(value, dict) or len(value) > 16
            or any(not isinstance(k, str) or len(k) > 64 or not isinstance(v, str) or len(v) > 512
                   for k, v in value.items())):
        raise FileProblem(400, "Invalid 'metadata': at most 16 keys of at most 64 characters, "
                          "string values of at most 512", "metadata")
    return dict(value)


class _Response(TypedDict):
    """The answer a batch line got."""

    status_code: int
    request_id: str
    body: object


class _ResultLine(TypedDict):
    """A line of a batch's output or error file."""

    id: str
    custom_id: str
    response: _Response | None
    error: dict[str, str] | None


def _result(custom_id: str, status: int, body: object) -> _ResultLine:
    return {"id": new_id("batch_req_"), "custom_id": custom_id,
            "response": {"status_code": status, "request_id": new_id("req_"), "body": body},
            "error": None}


def _skipped(custom_id: str, code: str, message: str) -> _ResultLine:
    return {"id": new_id("batch_req_"), "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}


def _jsonl(rows: Sequence[Mapping[str, object]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")

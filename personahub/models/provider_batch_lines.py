"""The Batch API's JSONL files: request lines written, result lines read (no network here).

Result lines are read as OpenAI and vLLM's run_batch write them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from personahub.core.errors import InputFileError, PersonahubError
from personahub.core.input_files import MB, UnusableInputError, read_input_bytes

CHAT_URL = "/v1/chat/completions"


# a results file is read whole: 50,000 requests (a batch's most) of up to about 10 KB a line
MAX_RESULTS_FILE_BYTES = 512 * MB


class BatchFileError(PersonahubError):
    """A results file that cannot be read: the message names the file and line."""


class RequestLine(TypedDict):
    """One request of a batch input file."""

    custom_id: str
    method: str
    url: str
    body: dict[str, object]


def request_line(custom_id: str, body: Mapping[str, object], url: str = CHAT_URL) -> RequestLine:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": dict(body)}


def to_jsonl(lines: Iterable[Mapping[str, object]]) -> bytes:
    """Lines as JSONL bytes (UTF-8, a newline after each object)."""
    return "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for line in lines).encode("utf-8")


def write_jsonl(path: str | Path, lines: Iterable[Mapping[str, object]]) -> int:
    """Write lines to a file whole or not at all; returns the bytes written."""
    target = Path(path)
    data = to_jsonl(lines)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise PersonahubError(f"{target}: cannot write the batch file ({exc.strerror or exc})"
                              ) from None
    return len(data)


@dataclass(frozen=True)
class ResultLine:
    """One result: its custom id, the HTTP status (None: never ran), the body and the error."""

    custom_id: str
    status: int | None
    body: Any
    error: Any = None

    @property
    def answered(self) -> bool:
        """True for a 200 with a completion (or embeddings) body."""
        return self.status == 200 and isinstance(self.body, dict)

    @property
    def error_code(self) -> str | None:
        """The line's error code (expired, cancelled...), if it has one."""
        error = self.error
        if isinstance(error, dict):
            inner = error.get("error", error)
            code = inner.get("code") if isinstance(inner, dict) else None
            return None if code is None else str(code)
        return None

    def message(self) -> str:
        """Return what went wrong, in the server's words."""
        for source in (self.error, self.body):
            text = _message_of(source)
            if text:
                return " ".join(text.split())[:300]
        return "no answer"


def _message_of(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if not isinstance(value, dict):
        return None
    inner = value.get("error", value)
    if isinstance(inner, str):
        return inner
    if isinstance(inner, dict):
        message = inner.get("message") or inner.get("detail")
        if message:
            return str(message)
    detail = value.get("detail")
    return None if detail is None else str(detail)


def read_results(data: bytes | str, source: str) -> list[ResultLine]:
    """Read the result lines of a batch output or error file."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    results = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except (ValueError, RecursionError):
            raise BatchFileError(f"{source}:{number}: not a JSON line") from None
        if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
            raise BatchFileError(f"{source}:{number}: not a batch result line (no custom_id); "
                                 "expected the OpenAI Batch API / vLLM run_batch output format")
        response = item.get("response")
        if response is not None and not isinstance(response, dict):
            raise BatchFileError(f"{source}:{number}: 'response' is not an object")
        status = None
        if response is not None:
            code = response.get("status_code", 200)
            if isinstance(code, bool) or not isinstance(code, int):
                raise BatchFileError(f"{source}:{number}: 'response.status_code' is not an "
                                     "integer")
            status = code
        results.append(ResultLine(item["custom_id"], status,
                                  response.get("body") if response is not None else None,
                                  item.get("error")))
    return results


def read_results_file(path: str | Path) -> list[ResultLine]:
    """Read the results of a file (a missing or unreadable file is one line naming it)."""
    target = Path(path)
    try:
        data = read_input_bytes(target, max_bytes=MAX_RESULTS_FILE_BYTES)
    except UnusableInputError:  # a device, a FIFO, a folder or too large: exit 2, never read
        raise
    except InputFileError as exc:
        raise BatchFileError(f"{target}: cannot read the results file ({exc.reason})") from None
    return read_results(data, str(target))


def by_custom_id(results: Sequence[ResultLine]) -> dict[str, ResultLine]:
    """Results by custom id; where one appears twice, an answered line wins."""
    found: dict[str, ResultLine] = {}
    for line in results:
        held = found.get(line.custom_id)
        if held is None or (line.answered and not held.answered):
            found[line.custom_id] = line
    return found

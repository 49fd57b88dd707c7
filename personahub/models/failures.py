"""What a failed model call means: retry it, try another structured mode, or stop the job.

Only what can succeed on a retry is retried: 429, 502-504, timeouts and dropped connections. A
request rejected as malformed fails the same way every time, so a job stops with one line when an
endpoint's first attempts all fail for one such reason.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time

from personahub.core.contracts import Failure
from personahub.core.failures import ModelRejected, call_error  # noqa: F401 - its home before

RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
# same non-transient failures, with no success before, after which a job stops
FAIL_FAST_ATTEMPTS = 3
MAX_RETRY_AFTER_S = 120.0


def _retry_after(headers: object) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, if any."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    millis = get("retry-after-ms")
    if millis:
        try:
            return min(MAX_RETRY_AFTER_S, max(0.0, float(millis) / 1000))
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return min(MAX_RETRY_AFTER_S, max(0.0, parsed.timestamp() - time.time()))


def _body_message(exc: BaseException) -> str:
    """Return the server's own message from an error body (OpenAI, vLLM, Ollama or FastAPI shapes)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message") or inner.get("detail") or body.get("detail")
        else:
            message = inner
        if message:
            return str(message)
        if body.get("detail") is not None:
            return str(body["detail"])
    message = getattr(exc, "message", None)
    return str(message or exc)


def _refused(exc: BaseException) -> bool:
    """Return True when a timeout was a refused connection (openai's aiohttp adapter reports one as a connect
    timeout).
    """
    cause = exc.__cause__
    for _ in range(4):
        if cause is None:
            return False
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__
    return False


def classify(exc: BaseException) -> Failure:
    """Describe an error a model call raised: retryable or not, and why."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Failure("timeout", True)
    import openai

    if isinstance(exc, openai.APITimeoutError) and not _refused(exc):
        return Failure("timeout", True)
    if isinstance(exc, openai.APIConnectionError):
        return Failure(f"connection error: {exc}", True, unreachable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = " ".join(_body_message(exc).split())[:300]
        return Failure(f"HTTP {status}: {message}", status in RETRYABLE_STATUSES, status, message,
                       _retry_after(exc.response.headers))
    return Failure(f"{type(exc).__name__}: {str(exc)[:200]}", False)


def hint(failure: Failure, mode: str, setting: str) -> str:
    """Return a likely fix for a failure that stops a job."""
    status, body = failure.status, failure.body.lower()
    if status in (401, 403):
        return ("the server refuses the credentials: name the key's variable with "
                "?api_key_env=NAME in the --llm URL (OPENAI_API_KEY goes only to OpenAI)")
    if status == 404:
        if "model" in body:
            return "the server does not know the model: check ?model=NAME in the --llm URL"
        return "check the --llm base URL (it usually ends in /v1)"
    if "response_format" in body or "json_schema" in body or "response format" in body:
        others = {"json_schema": "json_object", "json_object": "prompt", "tools": "prompt"}
        if setting == "auto":
            return "no structured-output mode worked; try --structured prompt"
        return f"the server rejects response_format {mode}; try --structured {others.get(mode, 'auto')}"
    if "tool" in body:
        return "the server rejects tool calls; try --structured json_object or prompt"
    if "max_tokens" in body or "context" in body:
        return "the request does not fit the model's context: lower --max-tokens or the prompt budget"
    return "check the --llm endpoint and its server log"


class FailFast:
    """Stops a job when an endpoint's first attempts all fail for one non-transient reason."""

    def __init__(self, endpoints: int, limit: int = FAIL_FAST_ATTEMPTS) -> None:
        self.limit = limit
        self._ok = [False] * max(1, endpoints)
        self._streak: list[tuple[str, int]] = [("", 0)] * max(1, endpoints)
        self.stopped: str | None = None

    def check(self) -> None:
        """Raise again once the job is stopped, so a call that waited for a slot is not sent while the job
        unwinds.
        """
        if self.stopped is not None:
            raise ModelRejected(self.stopped)

    def succeeded(self, endpoint: int) -> None:
        """Note an answer from an endpoint: from now on its failures are the model's or luck's."""
        self._ok[endpoint] = True

    def failed(self, endpoint: int, failure: Failure, label: str, mode: str, setting: str) -> None:
        """Note a non-transient failure; raises once the streak is long enough."""
        if self._ok[endpoint] or failure.retryable:
            return
        key, count = self._streak[endpoint]
        count = count + 1 if key == failure.reason_key else 1
        self._streak[endpoint] = (failure.reason_key, count)
        if count >= self.limit:
            self.stopped = (f"model endpoint {label} rejected the first {count} requests "
                            f"({failure.description[:160]}); {hint(failure, mode, setting)}")
            raise ModelRejected(self.stopped)


def plain_reason(error: str | None) -> str:
    """Return a failed attempt's error in a few plain words (for summaries and reports)."""
    text = str(error or "")
    if not text:
        return "no valid answer"
    http = re.search(r"HTTP (\d{3})", text)
    if http:
        return f"endpoint error (HTTP {http.group(1)})"
    if re.search(r"(?:^|: )timeout\b", text):
        return "timed out"
    if re.search(r"(?:^|: )connection error\b", text):
        return "connection failed"
    if "max_tokens" in text or "finish_reason=length" in text:
        return "cut off at max_tokens"
    rejected = re.match(r"(?:rejected|quality gate): ([\w-]+)", text)
    if rejected:
        return f"rejected by the gate ({rejected.group(1)})"
    if "ignored by the server" in text:
        return "structured mode ignored by the server"
    if text.startswith("no JSON object"):
        return "no JSON in the answer"
    return "invalid JSON for the schema"

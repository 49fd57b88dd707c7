"""One attempt's record filled in from what the endpoint did, so every endpoint records alike."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from personahub.core.contracts import CallRecord, StructuredResult, token_count
from personahub.models.failures import classify
from personahub.models.structured import StructuredMode, answer_text

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage

M = TypeVar("M", bound=BaseModel)  # the schema of a call; an attempt has no value yet


def usage(message: object) -> tuple[int | None, int | None]:
    """Input and output tokens the answer reports (0 when none; None when impossible)."""
    counts = getattr(message, "usage_metadata", None) or {}
    return (token_count(counts.get("input_tokens", 0) or 0),
            token_count(counts.get("output_tokens", 0) or 0))


def cached_prompt_tokens(message: object) -> int | None:
    """Prompt tokens the server says its prefix cache reused (None when it says nothing). langchain-openai
    leaves the key out when the server sent none, so 0 means reported, none reused.
    """
    counts = getattr(message, "usage_metadata", None) or {}
    details = counts.get("input_token_details") or {}
    value = details.get("cache_read")
    return None if value is None else token_count(value)


def answered(record: CallRecord, message: AIMessage, mode: StructuredMode,
             started: float) -> StructuredResult[M]:
    """Return the result of an attempt that got a message back (validation is above)."""
    record.latency_ms = (time.perf_counter() - started) * 1000
    record.tokens_in, record.tokens_out = usage(message)
    record.cached_prompt_tokens = cached_prompt_tokens(message)
    record.finish_reason = (message.response_metadata or {}).get("finish_reason")
    return StructuredResult(None, [record], answer_text(message, mode))


def failed(record: CallRecord, exc: BaseException, started: float) -> StructuredResult[M]:
    """Return the result of an attempt that raised (classified for what happens next)."""
    record.latency_ms = (time.perf_counter() - started) * 1000
    failure = classify(exc)
    record.status, record.error = "error", failure.description
    return StructuredResult(None, [record], None, failure=failure)


def straggled(result: StructuredResult[M], warm: bool = True) -> StructuredResult[M]:
    """Return the result of an attempt cut at its straggler deadline: a transient failure, asked again at
    once."""
    record, failure = result.last, result.failure
    assert failure is not None
    seconds = record.latency_ms / 1000
    why = "far slower than the endpoint's recent answers" if warm else "no answer from the endpoint yet"
    description = f"timeout after {seconds:.2f} s, {why} (asked again)"
    record.error = description
    result.failure = replace(failure, description=description, straggler=True)
    return result

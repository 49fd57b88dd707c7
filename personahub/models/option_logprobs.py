"""Option probabilities from a server's token log-probabilities (one call, one answer token).

Each label's probability sums the first token's alternatives that are that label, renormalised. A
server without log-probabilities raises: no fallback could mean the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from langchain_core.messages import MessageLikeRepresentation, convert_to_openai_messages
from pydantic import BaseModel

from personahub.core.call_spill import SinkSlot
from personahub.core.contracts import (
    CallRecord,
    CallStats,
    Endpoint,
    StructuredResult,
    carried_records,
    carry_records,
)
from personahub.core.errors import PersonahubError
from personahub.models.attempts import failed
from personahub.models.settings import LLMSettings


class LLMClient(Protocol):
    """What these calls use of the client (whose module imports this one)."""

    settings: LLMSettings
    endpoints: list[Endpoint]
    stats: CallStats
    _spill: SinkSlot

    @property
    def is_offline(self) -> bool: ...

__all__ = ["LOGPROBS_MODE", "LogprobsUnavailable", "OptionProbabilities", "offline_probabilities",
           "option_probabilities", "read_top_logprobs"]

LOGPROBS_MODE = "logprobs"  # the structured mode these calls record
_SLOTS: dict[tuple[int, int], asyncio.Semaphore] = {}  # client and loop to calls in flight


class OptionProbabilities(BaseModel):
    """A call's answer: each label's probability (summing to 1)."""

    probabilities: dict[str, float]


class LogprobsUnavailable(PersonahubError):
    """The server answered without the token log-probabilities it was asked for."""


def _text(messages: Sequence[MessageLikeRepresentation]) -> str:
    return "\x1e".join(str(m.get("content", "")) for m in convert_to_openai_messages(list(messages)))


def offline_probabilities(seed: int, messages: Sequence[MessageLikeRepresentation],
                          labels: Sequence[str]) -> dict[str, float]:
    """Return the offline probabilities: a flat Dirichlet draw seeded by seed, messages and labels."""
    key = f"{seed}\x1f{_text(messages)}\x1f{'|'.join(labels)}".encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
    draw = rng.dirichlet(np.ones(len(labels)))
    return {label: float(p) for label, p in zip(labels, draw, strict=True)}


def read_top_logprobs(body: Mapping[str, Any], labels: Sequence[str]) -> dict[str, float] | None:
    """Read the labels' probabilities from a completion's first answer token, or None without any."""
    choices = body.get("choices") or []
    logprobs = (choices[0] or {}).get("logprobs") if choices else None
    content = (logprobs or {}).get("content") or []
    if not content:
        return None
    first = content[0] or {}
    tops = first.get("top_logprobs") or [{"token": first.get("token"),
                                          "logprob": first.get("logprob")}]
    mass = dict.fromkeys(labels, 0.0)
    for top in tops:
        token, logprob = str(top.get("token") or "").strip(), top.get("logprob")
        if token in mass and isinstance(logprob, int | float) and math.isfinite(logprob):
            mass[token] += math.exp(logprob)
    total = sum(mass.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in mass.items()}


def _slots(client: LLMClient) -> asyncio.Semaphore:
    """Return this client's bound on calls in flight on the running loop."""
    key = (id(client), id(asyncio.get_running_loop()))
    slot = _SLOTS.get(key)
    if slot is None:
        slot = _SLOTS[key] = asyncio.Semaphore(max(1, client.settings.max_in_flight))
    return slot


async def _attempt(client: LLMClient, index: int, messages: list[dict[str, object]],
                   labels: Sequence[str], record: CallRecord,
                   top_logprobs: int) -> StructuredResult[OptionProbabilities]:
    endpoint: Any = client.endpoints[index]
    started = time.perf_counter()
    try:
        openai = await endpoint.openai_client()
        body = {"model": getattr(endpoint.model, "model_name", None) or endpoint.model_name,
                "messages": messages, getattr(endpoint, "max_tokens_param", "max_tokens"): 1,
                "logprobs": True, "top_logprobs": top_logprobs, "temperature": 1.0}
        async with _slots(client):
            reply = await openai.chat.completions.create(
                **body, timeout=getattr(endpoint, "timeout_s", None))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a record
        return failed(record, exc, started)
    reply = reply if isinstance(reply, Mapping) else reply.model_dump()
    record.latency_ms = (time.perf_counter() - started) * 1000
    usage = reply.get("usage") or {}
    record.tokens_in, record.tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    choices = reply.get("choices") or [{}]
    record.finish_reason = (choices[0] or {}).get("finish_reason")
    probabilities = read_top_logprobs(reply, labels)
    if probabilities is None:
        record.status, record.error = "invalid", "no logprobs in the answer"
        refused = LogprobsUnavailable(
            f"--llm {endpoint.label}: the server answered POST {endpoint.base_url}/chat/"
            "completions without token log-probabilities (logprobs=true, top_logprobs="
            f"{top_logprobs}); --elicit logprobs needs a server that returns them (OpenAI, "
            "vLLM, llama-server)")
        carry_records(refused, [record])
        raise refused
    if not any(probabilities.values()):
        record.status, record.error = "invalid", "no option among the top log-probabilities"
        return StructuredResult(None, [record])
    record.status = "ok"
    return StructuredResult(OptionProbabilities(probabilities=probabilities), [record])


async def option_probabilities(client: LLMClient, messages: Sequence[MessageLikeRepresentation],
                               labels: Sequence[str], *, purpose: str,
                               persona_id: str | None = None,
                               top_logprobs: int = 20) -> StructuredResult[OptionProbabilities]:
    """Each label's probability as the first answer token.

    Args:
        client: The model client (its endpoints, settings and record sink).
        messages: The prompt, asking for an answer starting with a label.
        labels: The answer labels, each one token (e.g. A, B).
        purpose: The calls' label in the call log.
        persona_id: The persona asked, if any.
        top_logprobs: How many alternatives the server lists (at least the labels' count).

    Returns:
        The probabilities by label (None: every attempt failed, or no label was listed), with every
        attempt's record.

    Raises:
        LogprobsUnavailable: the server answered without log-probabilities.
    """
    settings, records = client.settings, []
    outcome: StructuredResult[OptionProbabilities] = StructuredResult(None, [])
    try:
        for attempt in range(1, settings.max_retries + 2):
            record = CallRecord(purpose=purpose, model="", attempt=attempt, status="",
                                latency_ms=0.0, persona_id=persona_id, max_tokens=1,
                                structured_mode=LOGPROBS_MODE)
            if client.is_offline:
                endpoint = client.endpoints[0]
                record.model, record.endpoint, record.status = endpoint.label, 0, "ok"
                outcome = StructuredResult(OptionProbabilities(
                    probabilities=offline_probabilities(settings.seed, messages, labels)), [record])
            else:
                index = (attempt - 1) % len(client.endpoints)
                record.model, record.endpoint = client.endpoints[index].label, index
                outcome = await _attempt(client, index, convert_to_openai_messages(list(messages)),
                                         labels, record, max(top_logprobs, len(labels)))
            records += outcome.records
            failure = outcome.failure
            if failure is None or not failure.retryable or attempt > settings.max_retries:
                break
            await asyncio.sleep(failure.retry_after_s or settings.backoff_s * 2 ** (attempt - 1))
    except LogprobsUnavailable as exc:
        carry_records(exc, records)  # the earlier attempts, then the refused one
        _account(client, carried_records(exc))
        raise
    _account(client, records)
    return StructuredResult(outcome.value, records, failure=outcome.failure)


def _account(client: LLMClient, records: list[CallRecord]) -> None:
    """Count the attempts and hand them to the job's record sink, as the seam does."""
    client.stats.add(records)
    sink = client._spill.sink  # noqa: SLF001 - the client's own slot, shared with its layers
    if sink is not None:
        sink.done(records)

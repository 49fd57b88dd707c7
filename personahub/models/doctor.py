"""The doctor command: what an endpoint can do, measured before a million-call job.

A few requests through a job's own client stack probe structured modes, bounded strings, throughput
per concurrency level and prefix-cache reuse.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from personahub.core.contracts import CallRecord, StructuredResult, carried_records
from personahub.core.failures import ModelRejected
from personahub.models.client import LLMClient, LLMSettings, check_reachable
from personahub.models.settings import EndpointFailing, LLMUnavailable
from personahub.models.structured import AUTO_ORDER, StructuredMode

GROWTH = 1.1  # a level must beat the best so far by this factor to go on doubling
NEAR_BEST = 0.95
PROBE_MAX_TOKENS = 160
LOAD_MAX_TOKENS = 48
RUNAWAY_CHARS = 200
_PURPOSE = "doctor"


class CityProbe(BaseModel):
    """The modes probe: small, with an enum and an integer, as job schemas are."""

    city: str = Field(max_length=60)
    country: str = Field(max_length=60)
    size: str = Field(json_schema_extra={"enum": ["village", "town", "city"]})
    founded: int


class RunawayProbe(BaseModel):
    """The runaway probe: one bounded string a chatty model would like to fill for pages."""

    title: str = Field(max_length=60)
    story: str = Field(max_length=RUNAWAY_CHARS)


_FACTS = "You answer with facts, briefly."
_CITY = ("Name a well-known city, its country, whether it is a village, town or city, and the "
         "year it was founded.")
_RUNAWAY = [SystemMessage("You are a novelist who never stops writing."),
            HumanMessage("Write the longest, most detailed story you can about a lighthouse keeper "
                         "and the storm of the century: every character, every wave, every hour. "
                         "Go on for pages; do not summarise.")]
_COUNTRIES = ("France", "Japan", "Brazil", "Kenya", "Canada", "India", "Italy", "Peru", "Egypt",
              "Norway", "Chile", "Spain", "Mexico", "Ghana", "Vietnam", "Poland")
# a long shared prefix for the cache probe
_PREFIX = " ".join(
    f"Rule {i}: in the town of Aldmere the {w} market opens at {6 + i % 5} in the morning, "
    f"closes at {4 + i % 4} in the afternoon, and its stalls are counted every {i % 7 + 2} days."
    for i, w in enumerate(("fish", "grain", "wool", "salt", "spice", "timber", "honey", "cloth",
                           "iron", "wine", "cheese", "rope", "clay", "glass", "paper", "oil",
                           "tea", "silk", "amber", "copper") * 2))


@dataclass
class ModeResult:
    """How one structured mode fared."""

    mode: str
    verdict: str
    detail: str = ""
    latency_ms: float | None = None


@dataclass
class RunawayResult:
    """Whether a bounded string closed its JSON within the token limit."""

    mode: str
    closed: bool
    detail: str
    tokens_out: int = 0
    max_tokens: int = PROBE_MAX_TOKENS


@dataclass
class LoadLevel:
    """One concurrency level of the load probe."""

    concurrency: int
    requests: int
    answered: int
    failed: int
    wall_s: float
    latency_ms: float
    tokens_out: int
    tokens_per_s: float
    requests_per_s: float
    failure: str | None = None


@dataclass
class CacheResult:
    """The prefix-cache reuse reported for a request sharing a long prefix."""

    reported: bool
    cached_tokens: int | None = None
    prompt_tokens: int | None = None
    source: str | None = None

    @property
    def share(self) -> float | None:
        if self.cached_tokens is None or not self.prompt_tokens:
            return None
        return self.cached_tokens / self.prompt_tokens


@dataclass
class DoctorReport:
    """What the doctor found at one endpoint."""

    endpoint: str
    modes: list[ModeResult] = field(default_factory=list)
    runaway: RunawayResult | None = None
    levels: list[LoadLevel] = field(default_factory=list)
    cache: CacheResult | None = None
    recommended: int | None = None
    stopped_because: str = ""
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def best_mode(self) -> str | None:
        """The first accepted mode in auto's order."""
        return next((m.mode for m in self.modes if m.verdict == "accepted"), None)

    def as_dict(self) -> dict[str, object]:
        """For --json."""
        data = asdict(self)
        data["best_mode"] = self.best_mode
        if self.cache is not None:
            data["cache"]["share"] = self.cache.share
        return data


def _settings(spec: str, timeout_s: float, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {"spec": spec, "timeout_s": timeout_s, "max_retries": 1,
                              "backoff_s": 0.2, "concurrency": 1}
    values.update(overrides)
    return LLMSettings(**values)


# clients made on the probe's loop, kept until it ends: one collected earlier leaves its pool open
_LIVE: dict[asyncio.AbstractEventLoop, list[LLMClient]] = {}


def _client(spec: str, timeout_s: float, **overrides: Any) -> LLMClient:
    client = LLMClient(_settings(spec, timeout_s, **overrides))
    _LIVE.setdefault(asyncio.get_running_loop(), []).append(client)
    return client


def _failure_text(result: StructuredResult[BaseModel]) -> str:
    record = result.records[-1] if result.records else None
    if result.failure is not None:
        return result.failure.description
    return (record.error if record is not None and record.error else "no valid answer")[:200]


async def _ask(client: LLMClient, schema: type[BaseModel], messages: list[BaseMessage]
               ) -> tuple[StructuredResult[BaseModel] | None, str]:
    """One call: the result, or None and why it raised."""
    try:
        return await client.structured(schema, messages, purpose=_PURPOSE), ""
    except ModelRejected as exc:
        return None, str(exc)
    except EndpointFailing as exc:
        records = carried_records(exc)
        return None, (records[-1].error if records and records[-1].error else str(exc))


async def probe_modes(spec: str, timeout_s: float) -> list[ModeResult]:
    """One request per structured mode."""
    results = []
    for mode in AUTO_ORDER:
        client = _client(spec, timeout_s, structured=mode, max_tokens=PROBE_MAX_TOKENS)
        result, raised = await _ask(client, CityProbe, [SystemMessage(_FACTS), HumanMessage(_CITY)])
        if result is None:
            results.append(ModeResult(mode, "refused", raised[:200]))
            continue
        last = result.records[-1]
        if result.value is not None:
            results.append(ModeResult(mode, "accepted", "", round(last.latency_ms, 1)))
        elif result.failure is not None:
            results.append(ModeResult(mode, "refused", _failure_text(result)))
        elif result.raw is not None and "{" not in (result.raw or ""):
            results.append(ModeResult(mode, "ignored", "answered without JSON"))
        else:
            results.append(ModeResult(mode, "invalid", _failure_text(result)))
    return results


async def probe_runaway(spec: str, timeout_s: float, mode: StructuredMode) -> RunawayResult:
    """Whether a bounded string closes its JSON within the token limit."""
    client = _client(spec, timeout_s, structured=mode, max_tokens=PROBE_MAX_TOKENS)
    result, raised = await _ask(client, RunawayProbe, list(_RUNAWAY))
    if result is None:
        return RunawayResult(mode, False, raised[:200])
    last = result.records[-1]
    if result.value is not None and last.finish_reason != "length":
        return RunawayResult(mode, True, f"closed after {last.tokens_out} tokens",
                             last.tokens_out or 0)
    if last.finish_reason == "length":
        why = f"cut at max_tokens ({PROBE_MAX_TOKENS}): the string ran on"
    else:
        why = _failure_text(result)
    return RunawayResult(mode, False, why, last.tokens_out or 0)


def _messages(i: int) -> list[BaseMessage]:
    country = _COUNTRIES[i % len(_COUNTRIES)]
    return [SystemMessage(_FACTS),
            HumanMessage(f"Name a city in {country} (request {i}), its country, whether it is a "
                         "village, town or city, and the year it was founded.")]


async def _level(spec: str, timeout_s: float, mode: StructuredMode, concurrency: int,
                 requests: int, first: int) -> LoadLevel:
    client = _client(spec, timeout_s, structured=mode, concurrency=concurrency,
                     max_tokens=LOAD_MAX_TOKENS, max_retries=0)
    started = time.perf_counter()
    results = await asyncio.gather(*[_ask(client, CityProbe, _messages(first + i))
                                     for i in range(requests)])
    wall = max(time.perf_counter() - started, 1e-6)
    answered: list[CallRecord] = []
    failures: Counter[str] = Counter()
    for result, raised in results:
        if result is None:
            failures[raised[:120]] += 1
        elif result.failure is not None:
            failures[result.failure.description[:120]] += 1
        else:
            answered.append(result.records[-1])
    latencies = sorted(r.latency_ms for r in answered)
    tokens = sum(r.tokens_out or 0 for r in answered)
    return LoadLevel(concurrency, requests, len(answered), requests - len(answered), round(wall, 3),
                     round(latencies[len(latencies) // 2], 1) if latencies else 0.0, tokens,
                     round(tokens / wall, 2), round(len(answered) / wall, 3),
                     failures.most_common(1)[0][0] if failures else None)


def _throughput(level: LoadLevel, by_tokens: bool) -> float:
    return level.tokens_per_s if by_tokens else level.requests_per_s


async def probe_load(spec: str, timeout_s: float, mode: StructuredMode, *, max_concurrency: int,
                     budget_s: float) -> tuple[list[LoadLevel], str]:
    """Levels 1, 2, 4, ... until throughput stops growing."""
    levels: list[LoadLevel] = []
    started, concurrency, sent = time.perf_counter(), 1, 0
    while True:
        requests = max(4, 2 * concurrency)
        level = await _level(spec, timeout_s, mode, concurrency, requests, sent)
        sent += requests
        levels.append(level)
        if level.failed:
            return levels, f"{level.failed} of {level.requests} failed at {concurrency}"
        by_tokens = all(x.tokens_out > 0 for x in levels)
        best = max(_throughput(x, by_tokens) for x in levels[:-1]) if len(levels) > 1 else 0.0
        if len(levels) > 1 and _throughput(level, by_tokens) < best * GROWTH:
            return levels, "throughput stopped growing"
        if concurrency * 2 > max_concurrency:
            return levels, f"reached --max-concurrency {max_concurrency}"
        spent = time.perf_counter() - started
        if spent + level.wall_s * 2 > budget_s:
            return levels, f"time budget ({budget_s:g} s) spent"
        concurrency *= 2


def recommend(levels: Sequence[LoadLevel]) -> int | None:
    """Return the smallest failure-free level within a share of the best throughput."""
    clean = [x for x in levels if not x.failed and x.answered]
    if not clean:
        return 1 if any(x.answered for x in levels) else None
    by_tokens = all(x.tokens_out > 0 for x in clean)
    best = max(_throughput(x, by_tokens) for x in clean)
    return min(x.concurrency for x in clean if _throughput(x, by_tokens) >= best * NEAR_BEST)


def _cache_numbers(body: Any) -> CacheResult:
    if not isinstance(body, dict):
        body = body.model_dump() if hasattr(body, "model_dump") else {}
    usage = body.get("usage") or {}
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details") or {}
    if isinstance(details, dict) and details.get("cached_tokens") is not None:
        return CacheResult(True, int(details["cached_tokens"]), prompt,
                           "usage.prompt_tokens_details.cached_tokens")
    timings = body.get("timings") or {}
    if isinstance(timings, dict) and timings.get("cache_n") is not None:
        total = int(timings["cache_n"]) + int(timings.get("prompt_n") or 0)
        return CacheResult(True, int(timings["cache_n"]), total or prompt, "timings.cache_n")
    return CacheResult(False, None, prompt)


async def probe_cache(spec: str, timeout_s: float) -> CacheResult:
    """Two requests with one long shared prefix; what the second reports as cached."""
    client = _client(spec, timeout_s)
    endpoint: Any = client.endpoints[0]
    root = endpoint.model.root_async_client
    try:
        body: Any = None
        for question in ("Which market opens first?", "Which market closes last?"):
            body = await asyncio.wait_for(root.chat.completions.create(
                model=endpoint.model_name,
                messages=[{"role": "system", "content": _PREFIX},
                          {"role": "user", "content": question}],
                **{endpoint.max_tokens_param: 8}), timeout_s)
        return _cache_numbers(body)
    except Exception as exc:  # noqa: BLE001 - a server that answers jobs but not this is a note
        return CacheResult(False, source=f"probe failed: {type(exc).__name__}")
    finally:
        await root.close()


def _no_mode_problem(modes: Sequence[ModeResult]) -> str:
    details = [m.detail for m in modes]
    if all(d.startswith("HTTP") for d in details):
        return f"it refuses every request ({details[0][:160]})"
    return "no structured mode works (" + "; ".join(
        f"{m.mode}: {m.verdict}{' ' + m.detail[:60] if m.detail else ''}" for m in modes) + ")"


async def diagnose(spec: str, *, timeout_s: float = 30.0, max_concurrency: int = 32,
                   budget_s: float = 60.0) -> DoctorReport:
    """Probe the endpoint a spec names."""
    client = _client(spec, timeout_s)
    report = DoctorReport(endpoint=client.label)
    try:
        check_reachable(client, timeout_s=min(timeout_s, 10.0))
        await _diagnose(report, spec, timeout_s, max_concurrency, budget_s)
    except LLMUnavailable as exc:
        cause = exc.__cause__
        report.problem = f"it is unreachable ({type(cause).__name__ if cause else 'no answer'})"
    finally:
        _LIVE.pop(asyncio.get_running_loop(), None)
    return report


async def _diagnose(report: DoctorReport, spec: str, timeout_s: float, max_concurrency: int,
                    budget_s: float) -> None:
    report.modes = await probe_modes(spec, timeout_s)
    best = report.best_mode
    if best is None:
        report.problem = _no_mode_problem(report.modes)
        return
    mode: StructuredMode = best  # type: ignore[assignment]
    report.runaway = await probe_runaway(spec, timeout_s, mode)
    if not report.runaway.closed:
        report.warnings.append(f"a bounded string did not close in {mode} mode "
                               f"({report.runaway.detail}); long answers may be cut off")
    report.levels, report.stopped_because = await probe_load(
        spec, timeout_s, mode, max_concurrency=max_concurrency, budget_s=budget_s)
    report.recommended = recommend(report.levels)
    if report.recommended is None:
        first = report.levels[0].failure if report.levels else None
        report.problem = f"no request of the load probe was answered ({first or 'no answer'})"
        return
    if report.levels[0].failed:
        report.warnings.append(f"{report.levels[0].failed} of {report.levels[0].requests} "
                               f"requests failed even one at a time ({report.levels[0].failure})")
    report.cache = await probe_cache(spec, timeout_s)

"""The one fake model client of the test suite.

Tests used to hand-write a stand-in client each (scripted answers, crashes, failing endpoints,
edited answers); every one re-implemented ``structured``. ``FakeClient`` is that stand-in once,
a ``contracts.StructuredCaller`` like the real client: a real client underneath (offline unless
given), with three optional hooks —

- ``answer(call)``: answer a call yourself (a pydantic value or a ``StructuredResult``), raise to
  simulate a crash or an unreachable endpoint, or return ``None`` to let the offline engine answer;
- ``edit(call, result)``: change what came back (a broken tool spec, a planted text);
- ``delay(call)``: seconds to sleep before answering (calls completing out of order).

Small factories below build the behaviours several test files share.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from personahub.core.contracts import CallStats, Endpoint
from personahub.models.client import LLMClient, LLMSettings, LLMUnavailable, StructuredResult


@dataclass
class Call:
    """One ``structured`` call as the fake saw it (``number`` counts from 1 over all calls)."""

    schema: type[BaseModel]
    messages: Any
    kwargs: dict[str, Any]
    number: int

    @property
    def purpose(self) -> str | None:
        return self.kwargs.get("purpose")

    @property
    def persona_id(self) -> str | None:
        return self.kwargs.get("persona_id")

    @property
    def step(self) -> int:
        return self.kwargs.get("step") or 0


Answer = Callable[[Call], "BaseModel | StructuredResult | None"]
Edit = Callable[[Call, StructuredResult], StructuredResult]


@dataclass
class FakeClient:
    """A model client for tests: ``inner`` (an offline ``LLMClient`` unless given), unless a hook
    says otherwise.

    Counts what it is asked (``calls``, ``by_purpose``, ``by_step``, ``prompts``), the most
    calls in flight at once, and every answer's attempts (``stats``, scripted ones included).
    Records and cache entries come back with each result only, as from the real client.
    ``label`` and ``is_offline`` are ``inner``'s unless ``name``/``offline`` override them; the
    endpoints, cache and modes are ``inner``'s.
    """

    answer: Answer | None = None
    edit: Edit | None = None
    delay: Callable[[Call], float] | None = None
    inner: Any = None
    seed: int = 1
    name: str | None = None
    offline: bool | None = None
    calls: int = 0
    by_purpose: Counter[str] = field(default_factory=Counter)
    by_step: Counter[tuple[int, str]] = field(default_factory=Counter)
    prompts: list[tuple[str, str, str]] = field(default_factory=list)  # purpose, persona, last message
    max_in_flight: int = 0
    stats: CallStats = field(default_factory=CallStats)
    _in_flight: int = 0

    def client(self) -> Any:
        """The client underneath, built on first use (scripted fakes never need one)."""
        if self.inner is None:
            self.inner = LLMClient(LLMSettings(seed=self.seed))
        return self.inner

    @property
    def label(self) -> str:
        return self.name if self.name is not None else self.client().label

    @property
    def is_offline(self) -> bool:
        return self.offline if self.offline is not None else self.client().is_offline

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        return self.client().endpoints

    @property
    def cache_model(self) -> str:
        return self.client().cache_model

    def use_cache(self, cache: Any) -> None:
        self.client().use_cache(cache)

    def structured_modes(self) -> dict[str, str]:
        return self.client().structured_modes()

    def concurrency_report(self) -> dict[str, Any]:
        return self.client().concurrency_report()

    async def structured(self, schema: type[BaseModel], messages: Any, **kwargs: Any) -> StructuredResult:
        self.calls += 1
        call = Call(schema, messages, kwargs, self.calls)
        self.by_purpose[call.purpose or ""] += 1
        self.by_step[(call.step, call.purpose or "")] += 1
        last = messages[-1]
        self.prompts.append((call.purpose or "", call.persona_id or "", getattr(last, "content", last)))
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay is not None:
                await asyncio.sleep(self.delay(call))
            result = await self._answer(call)
        finally:
            self._in_flight -= 1
        if self.edit is not None:
            result = self.edit(call, result)
        self.stats.add(result.records)
        return result

    async def _answer(self, call: Call) -> StructuredResult:
        scripted = self.answer(call) if self.answer is not None else None
        if scripted is None:
            return await self.client().structured(call.schema, call.messages, **call.kwargs)
        if not isinstance(scripted, StructuredResult):
            scripted = StructuredResult(scripted, [])
        return scripted


# --------------------------------------------------------------------------- shared behaviours


class Interrupted(RuntimeError):
    """A simulated crash in the middle of a job (raised by ``crash_after``)."""


def crash_after(n: int, purpose: str | None = None,
                error: Callable[[str], BaseException] = Interrupted) -> Answer:
    """Answer (offline) the first ``n`` calls (of ``purpose``, if given), then raise on each."""
    seen = Counter[str | None]()

    def answer(call: Call) -> None:
        if purpose is None or call.purpose == purpose:
            seen[purpose] += 1
            if seen[purpose] > n:
                raise error(f"simulated crash at call {seen[purpose]}")
        return None

    return answer


def unreachable_from_step(step: int) -> Answer:
    """The endpoint goes away from ``step`` on (a run that fails mid-way and can be resumed)."""

    def answer(call: Call) -> None:
        if call.step >= step:
            raise LLMUnavailable("model endpoint test is unreachable")
        return None

    return answer


def people_answers(texts: Iterable[str], relations: Iterable[str] | None = None) -> Answer:
    """Every persona-pipeline call (expansion or text-to-persona) answered with ``texts`` (an
    expansion's with ``relations``, default ``colleague`` each); other calls (an expansion's
    link questions) go to the offline engine."""
    texts = list(texts)
    labels = list(relations) if relations is not None else ["colleague"] * len(texts)

    def answer(call: Call) -> BaseModel | None:
        if "links" in call.schema.model_fields:
            return None
        if "people" in call.schema.model_fields:
            data: dict[str, Any] = {"people": [{"relation": r, "persona": t}
                                               for t, r in zip(texts, labels, strict=True)]}
        else:
            data = {"personas": [{"persona": t} for t in texts]}
        return call.schema.model_validate(data)

    return answer


def shuffled_completion(seed: int, most_s: float = 0.003) -> Callable[[Call], float]:
    """A ``delay`` making concurrent calls complete in a seeded random order."""
    rng = random.Random(seed)
    return lambda call: rng.random() * most_s


def same_person_links(every: int = 3) -> Answer:
    """Answer the link question of every ``every``-th new persona (chosen by its id, so an
    interrupted and a resumed expansion answer alike) with 'same person' for its first candidate."""

    def answer(call: Call) -> BaseModel | None:
        if call.purpose != "expand:link" or int(str(call.persona_id)[-2:], 16) % every:
            return None
        count = call.schema.model_json_schema()["properties"]["links"]["minItems"]
        links = [{"knows": True, "relation": "Same person"}] + [{"knows": False}] * (count - 1)
        return call.schema(links=links)

    return answer

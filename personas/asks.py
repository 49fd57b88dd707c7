"""One batch's structured model calls as data, so a job can hand them to whichever executor runs
them: its own event loop (``local_asks``, through whatever caller the executor lends: Ray actors'
``RayCaller`` for an expansion) or Ray workers (``sim.executors.ray_batches.ask_batches``).

An ``Ask`` names its schema by a module-level factory and its arguments instead of holding the
class: the schemas of ``from-text`` and ``expand`` are built at run time (``create_model``) and
cannot be pickled, while the factory can, and rebuilds the same class on a worker. A worker's
answer comes back with its value dumped to plain data (``portable``); ``restored`` validates it
against the same schema on the driver, so the job sees what a local call would have returned.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from personahub.core.contracts import StructuredCaller, StructuredResult

# a batch's calls in, their results out, in the same order
Asks = Callable[[Sequence["Ask"]], Awaitable[list[StructuredResult[Any]]]]
# a job's batches of calls in (planned ahead), each batch's results out, in batch order
RemoteBatches = Callable[[Sequence[Sequence["Ask"]]], Iterator[list[StructuredResult[Any]]]]


@dataclass(frozen=True)
class Ask:
    """One structured call: ``schema(*args)`` is the answer's class (a module-level factory)."""

    schema: Callable[..., type[BaseModel]]
    args: tuple[Any, ...]
    messages: list[Any]
    purpose: str
    persona_id: str | None = None
    key: str | None = None  # what the call is for, stable across resumes (a text id and relation)
    # the job's quality check of a valid answer (a module-level function or a partial of one,
    # so that it pickles): a rejected answer earns the seam's one fresh sample
    check: Callable[[Any], str | None] | None = None

    def model(self) -> type[BaseModel]:
        """The answer's class."""
        return self.schema(*self.args)


async def ask_one(caller: StructuredCaller, ask: Ask) -> StructuredResult[Any]:
    """``ask`` through ``caller``."""
    return await caller.structured(ask.model(), ask.messages, purpose=ask.purpose,
                                   persona_id=ask.persona_id, check=ask.check)


def local_asks(caller: StructuredCaller) -> Asks:
    """A batch's calls on the running event loop, concurrently (the client bounds calls in flight)."""

    async def run(asks: Sequence[Ask]) -> list[StructuredResult[Any]]:
        return list(await asyncio.gather(*(ask_one(caller, a) for a in asks)))

    return run


def portable(result: StructuredResult[Any]) -> StructuredResult[Any]:
    """The result with its value as plain data, and only what a batch commit writes (records,
    cache entries): what a worker sends back."""
    value = result.value.model_dump() if isinstance(result.value, BaseModel) else result.value
    return StructuredResult(value, list(result.records), cache_entries=list(result.cache_entries))


def restored(ask: Ask, result: StructuredResult[Any]) -> StructuredResult[Any]:
    """A worker's ``portable`` result as the local call returns it: its value validated again."""
    if result.value is None:
        return result
    return StructuredResult(ask.model().model_validate(result.value), result.records,
                            cache_entries=result.cache_entries)


def ask_keys(asks: Sequence[Ask]) -> list[str]:
    """A stable key per ask, the same in a resumed job's pass: its ``key`` (when the job gave
    one), purpose, schema and messages hashed, so an answer left on disk is only taken for the
    same question; two asks alike in all of that are told apart by their order."""
    seen: Counter[str] = Counter()
    keys = []
    for ask in asks:
        what = json.dumps([ask.key, ask.purpose, ask.persona_id, getattr(ask.schema, "__qualname__", ""),
                           repr(ask.args),
                           [[getattr(m, "type", ""), getattr(m, "content", m)] for m in ask.messages]],
                          default=str, ensure_ascii=False)
        digest = hashlib.sha1(what.encode()).hexdigest()
        keys.append(f"{digest}:{seen[digest]}")
        seen[digest] += 1
    return keys

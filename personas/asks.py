"""One structured model call as data (``Ask``), asked through whatever caller a job has: the
job's client, or the ``RayCaller`` an executor lends (``local_asks`` for a batch of them).

An ``Ask`` names its schema by a module-level factory and its arguments instead of holding the
class: the schemas of ``from-text`` and ``expand`` are built at run time (``create_model``) and
cannot be pickled, while the factory can, and rebuilds the same class where the call runs (a
from-text asker shipped to a Ray worker holds its asks' factories, not their classes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from personahub.core.contracts import StructuredCaller, StructuredResult

# a batch's calls in, their results out, in the same order
Asks = Callable[[Sequence["Ask"]], Awaitable[list[StructuredResult[Any]]]]


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
    max_tokens: int | None = None  # the call's output limit (its job's, personahub.tasks.limits)

    def model(self) -> type[BaseModel]:
        """The answer's class."""
        return self.schema(*self.args)


async def ask_one(caller: StructuredCaller, ask: Ask) -> StructuredResult[Any]:
    """``ask`` through ``caller``."""
    return await caller.structured(ask.model(), ask.messages, purpose=ask.purpose,
                                   persona_id=ask.persona_id, check=ask.check,
                                   max_tokens=ask.max_tokens)


def local_asks(caller: StructuredCaller) -> Asks:
    """A batch's calls on the running event loop, concurrently (the client bounds calls in flight)."""

    async def run(asks: Sequence[Ask]) -> list[StructuredResult[Any]]:
        return list(await asyncio.gather(*(ask_one(caller, a) for a in asks)))

    return run

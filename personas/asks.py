"""One structured model call as data, asked through whatever caller a job has.

An Ask names its schema by a module-level factory and arguments: classes built at run time cannot
be pickled to a Ray worker, while the factory can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from personahub.core.contracts import StructuredCaller, StructuredResult

Asks = Callable[[Sequence["Ask"]], Awaitable[list[StructuredResult[Any]]]]


@dataclass(frozen=True)
class Ask:
    """One structured call: schema(*args) is the answer's class."""

    schema: Callable[..., type[BaseModel]]
    args: tuple[object, ...]
    messages: list[Any]
    purpose: str
    persona_id: str | None = None
    key: str | None = None  # stable across resumes (a text id and relation)
    # the job's check of a valid answer (module-level, so it pickles); a rejection earns one
    # fresh sample
    check: Callable[[object], str | None] | None = None
    max_tokens: int | None = None

    def model(self) -> type[BaseModel]:
        """Return the answer's class."""
        return self.schema(*self.args)


async def ask_one(caller: StructuredCaller, ask: Ask) -> StructuredResult[Any]:
    """Ask one call through the caller."""
    return await caller.structured(ask.model(), ask.messages, purpose=ask.purpose,
                                   persona_id=ask.persona_id, check=ask.check,
                                   max_tokens=ask.max_tokens)


def local_asks(caller: StructuredCaller) -> Asks:
    """Return an asker that runs a batch's calls concurrently on the running event loop."""

    async def run(asks: Sequence[Ask]) -> list[StructuredResult[Any]]:
        return list(await asyncio.gather(*(ask_one(caller, a) for a in asks)))

    return run

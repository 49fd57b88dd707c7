"""A shard's agent memories as one small integer per agent into a table of distinct memories.

Agents that saw the same events and wrote the same pooled output hold the same memory, so a
million agents of a hundred archetypes share a few thousand memories (a column shard holds its
agents' inboxes apart, ``sim/inbox_columns.py``, so a message received does not make one).
Each change (an event, a note, an answer kept, an emission remembered, a forget) is applied once
per distinct memory it meets, with ``AgentMemory``'s own code, and the agents are moved to the
result; equal results are the same entry. Entry 0 is the memory of an agent that remembers nothing yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from personahub.sim.memory import AgentMemory, Message

#: ("observe", step, text, source) | ("own", step, kind, text) | ("forget",)
#: | ("receive", *the fields of a ``Message``, in order)
#: | ("take_in",) or ("take_in", step, text): a message held in a column inbox, and the one it
#: pushed out (``AgentMemory.take_in``)
Change = tuple[Any, ...]


class MemoryTable:
    """Distinct memories of one shard's agents, shared by every agent that holds each."""

    def __init__(self, new_memory: Callable[[], AgentMemory]) -> None:
        self._new = new_memory
        empty = new_memory()
        self.memories: list[AgentMemory] = [empty]
        self._texts: list[str] = [_state_text(empty)]
        self._by_text: dict[str, int] = {self._texts[0]: 0}
        self._after: dict[tuple[int, Change], int] = {}

    def __len__(self) -> int:
        return len(self.memories)

    def text(self, index: int) -> str:
        """Return the memory's state as JSON text (``AgentMemory.to_state``)."""
        return self._texts[index]

    def intern(self, state: dict[str, object]) -> int:
        """Return the entry of a memory given as ``AgentMemory.to_state`` data (added if new)."""
        memory = self._new()
        memory.load_state(state)
        return self._add(memory)

    def apply(self, held: np.ndarray, where: np.ndarray, change: Change) -> None:
        """Apply one change to the memories of the agents at ``where`` (positions or a mask)."""
        chosen = held[where]
        if chosen.size == 0:
            return
        distinct, inverse = np.unique(chosen, return_inverse=True)
        moved = np.fromiter((self._changed(int(d), change) for d in distinct), dtype=np.int32,
                            count=distinct.size)
        held[where] = moved[inverse]

    def apply_each(self, held: np.ndarray, positions: np.ndarray, which: np.ndarray,
                   changes: list[Change]) -> None:
        """Apply ``changes[which[i]]`` to the memory of the agent at ``positions[i]``."""
        if positions.size == 0:
            return
        pairs = held[positions].astype(np.int64) * len(changes) + which.astype(np.int64)
        distinct, inverse = np.unique(pairs, return_inverse=True)
        moved = np.fromiter((self._changed(int(p // len(changes)), changes[int(p % len(changes))])
                             for p in distinct), dtype=np.int32, count=distinct.size)
        held[positions] = moved[inverse]

    def compact(self, held: np.ndarray) -> None:
        """Drop memories no agent holds any more and renumber the rest (entry 0 stays)."""
        used = np.unique(np.concatenate([np.zeros(1, dtype=np.int32), held]))
        if used.size == len(self.memories):
            self._after.clear()
            return
        renumber = np.zeros(len(self.memories), dtype=np.int32)
        renumber[used] = np.arange(used.size, dtype=np.int32)
        held[:] = renumber[held]
        self.memories = [self.memories[i] for i in used.tolist()]
        self._texts = [self._texts[i] for i in used.tolist()]
        self._by_text = {text: i for i, text in enumerate(self._texts)}
        self._after.clear()

    def changed(self, index: int, change: Change) -> int:
        """Return the entry of memory ``index`` after one change (added if new)."""
        return self._changed(index, change)

    def _changed(self, index: int, change: Change) -> int:
        key = (index, change)
        found = self._after.get(key)
        if found is None:
            memory = self._new()
            memory.load_state(self.memories[index].to_state())
            _change(memory, change)
            found = self._after[key] = self._add(memory)
        return found

    def _add(self, memory: AgentMemory) -> int:
        text = _state_text(memory)
        found = self._by_text.get(text)
        if found is None:
            found = self._by_text[text] = len(self.memories)
            self.memories.append(memory)
            self._texts.append(text)
        return found


def _change(memory: AgentMemory, change: Change) -> None:
    what = change[0]
    if what == "observe":
        memory.observe(change[1], change[2], source=change[3])
    elif what == "own":
        memory.remember_own(change[1], change[2], change[3])
    elif what == "forget":
        memory.forget()
    elif what == "receive":
        memory.receive(Message(*change[1:]))
    elif what == "take_in":
        memory.take_in((change[1], "message", change[2]) if len(change) > 1 else None)
    else:
        raise ValueError(f"unknown memory change {what!r}")


def _state_text(memory: AgentMemory) -> str:
    return json.dumps(memory.to_state(), ensure_ascii=False)

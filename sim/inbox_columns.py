"""A column shard's inboxes: each agent's latest received messages, as columns.

An agent that received a message used to hold a memory of its own with the message in it, so a
step of 50,000 messages made 50,000 memories, a Python object each, a message at a time. Here a
shard's messages are rows (kept while an inbox holds them) and each agent's inbox is a fixed-size
row of message indices, oldest first (``slots``; ``held`` of them in use). The shard's memory table
keeps the rest of a memory, still shared by every agent whose memory is the same. A message that
pushes the oldest out of a full inbox hands it back to the caller, who retires it into the memory
(``AgentMemory.take_in``), so an agent's state is that of an ``AgentMemory`` that received the
same messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personahub.sim.message_rows import json_strings

#: the fields of a ``memory.Message``, in order: an inbox row's JSON keys
FIELDS = ("message_id", "step", "sender_id", "receiver_id", "text", "reply_to", "emission_id",
          "thread_id")


class InboxColumns:
    """The inboxes of a shard's ``n`` agents, ``capacity`` messages each."""

    def __init__(self, n: int, capacity: int) -> None:
        self.capacity = max(int(capacity), 1)
        self.slots = np.full((n, self.capacity), -1, dtype=np.int32)
        self.held = np.zeros(n, dtype=np.int32)
        self.step = np.zeros(0, dtype=np.int32)
        self.sender = np.zeros(0, dtype=np.int64)  # the sender's agent id; -1: none known
        self.text = np.zeros(0, dtype=np.int32)  # the heard text, as a code into ``texts``
        self.texts: list[str] = []
        self._codes: dict[str, int] = {}
        self.message_ids = pa.array([], pa.string())
        self.threads = pa.array([], pa.string())  # its thread's id (its own for a new thread)
        self.rows = pa.array([], pa.string())  # the message as ``AgentMemory.to_state`` has it

    def nbytes(self) -> int:
        """Return the bytes the inboxes and their messages hold (an estimate for the bench)."""
        arrays = (self.slots, self.held, self.step, self.sender, self.text)
        strings = self.message_ids.nbytes + self.threads.nbytes + self.rows.nbytes
        return int(sum(a.nbytes for a in arrays) + strings + sum(map(len, self.texts)))

    def codes(self, texts: pa.Array) -> np.ndarray:
        """Return each text's code into ``texts`` (added when new), a distinct text at a time."""
        encoded = pc.dictionary_encode(texts).combine_chunks() if isinstance(
            texts, pa.ChunkedArray) else pc.dictionary_encode(texts)
        mapped = np.array([self._code(t) for t in encoded.dictionary.to_pylist()],
                          dtype=np.int32)
        return mapped[encoded.indices.to_numpy(zero_copy_only=False)]

    def _code(self, text: str) -> int:
        found = self._codes.get(text)
        if found is None:
            found = self._codes[text] = len(self.texts)
            self.texts.append(text)
        return found

    def add(self, messages: pa.Table, senders: np.ndarray) -> np.ndarray:
        """Keep messages (a ``messages`` table's rows: FIELDS' columns) and return their indices.

        Args:
            senders: each message's sender agent id (-1: none known).
        """
        n = messages.num_rows
        step = messages.column("step").to_numpy().astype(np.int32)
        pieces: list[pa.Array | pa.Scalar] = []
        for i, name in enumerate(FIELDS):
            pieces.append(pa.scalar(("{" if i == 0 else ", ") + json.dumps(name) + ": "))
            pieces.append(pc.cast(pa.array(step), pa.string()) if name == "step"
                          else json_strings(messages.column(name)))
        pieces.append(pa.scalar("}"))
        rows = pc.binary_join_element_wise(*pieces, "")
        first = self.step.size
        self.step = np.concatenate([self.step, step])
        self.sender = np.concatenate([self.sender, np.asarray(senders, dtype=np.int64)])
        self.text = np.concatenate([self.text, self.codes(messages.column("text"))])
        ids = messages.column("message_id").combine_chunks()
        threads = pc.coalesce(messages.column("thread_id"), messages.column("message_id"))
        self.message_ids = pa.concat_arrays([self.message_ids, ids])
        self.threads = pa.concat_arrays([self.threads, _array(threads)])
        self.rows = pa.concat_arrays([self.rows, _array(rows)])
        return np.arange(first, first + n, dtype=np.int32)

    def push(self, positions: np.ndarray,
             messages: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Put each message in the inbox of the agent at its position, in the order given.

        Yields, a round at a time (each agent at most once a round, its messages in order), the
        agents' positions and the message each pushed out of a full inbox (-1: none). The
        caller applies a round's pushed-out messages before the next round is pushed.
        """
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if order.size else order
        rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        for r in range(int(rank.max()) + 1 if rank.size else 0):
            chosen = order[rank == r]
            where, incoming = positions[chosen], messages[chosen]
            count = self.held[where]
            full = count == self.capacity
            out = np.where(full, self.slots[where, 0], -1)
            shifted = where[full]
            self.slots[shifted, :-1] = self.slots[shifted, 1:]
            self.slots[shifted, -1] = incoming[full]
            room = where[~full]
            self.slots[room, count[~full]] = incoming[~full]
            self.held[room] += 1
            yield where, out

    def clear(self, positions: np.ndarray) -> None:
        """Empty the inboxes of the agents at ``positions`` (a forget)."""
        self.slots[positions] = -1
        self.held[positions] = 0

    def restore(self, position: int, inbox: list[dict[str, object]]) -> None:
        """Put a checkpointed inbox (``AgentMemory.to_state``'s, oldest first) back."""
        self.clear(np.array([position]))
        kept = inbox[-self.capacity:]
        if not kept:
            return
        table = pa.table({name: pa.array([m.get(name) for m in kept],
                                         pa.int32() if name == "step" else pa.string())
                          for name in FIELDS})
        senders = np.array([_sender(m.get("emission_id")) for m in kept], dtype=np.int64)
        self.slots[position, :len(kept)] = self.add(table, senders)
        self.held[position] = len(kept)

    def newest(self, positions: np.ndarray) -> tuple[np.ndarray, pa.Array, pa.Array]:
        """Per agent: the sender agent id of its newest message (-1: none, or none known), that
        message's id and its thread (null when -1)."""
        count = self.held[positions]
        newest = np.where(count > 0, self.slots[positions, np.maximum(count - 1, 0)], -1)
        sender = np.r_[self.sender, -1][newest]  # -1 (no message) indexes the -1 put last
        at = pa.array(np.maximum(newest, 0), mask=sender < 0)
        return sender, self.message_ids.take(at), self.threads.take(at)

    def texts_of(self, messages: np.ndarray) -> list[str]:
        """Return the heard texts of messages (indices)."""
        return [self.texts[c] for c in self.text[messages].tolist()]

    def inbox_json(self, positions: np.ndarray) -> pa.Array:
        """Return each agent's inbox as ``AgentMemory.to_state`` writes it (a JSON list)."""
        count = self.held[positions]
        held = np.arange(self.capacity) < count[:, None]
        flat = self.slots[positions][held]
        offsets = pa.array(np.r_[0, np.cumsum(count)].astype(np.int32))
        lists = pa.ListArray.from_arrays(offsets, self.rows.take(pa.array(flat, pa.int64())))
        return pc.binary_join_element_wise("[", pc.binary_join(lists, ", "), "]", "")

    def compact(self) -> None:
        """Drop the messages no inbox holds any more, once they are most of the rows."""
        used = np.unique(self.slots[self.slots >= 0])
        if used.size * 2 > self.step.size:
            return
        renumber = np.full(self.step.size + 1, -1, dtype=np.int32)
        renumber[used] = np.arange(used.size, dtype=np.int32)
        self.slots = renumber[self.slots]  # -1 indexes the last entry, which stays -1
        take = pa.array(used, pa.int64())
        self.step, self.sender = self.step[used], self.sender[used]
        codes, inverse = np.unique(self.text[used], return_inverse=True)
        self.text = inverse.reshape(-1).astype(np.int32)
        self.texts = [self.texts[c] for c in codes.tolist()]
        self._codes = {t: i for i, t in enumerate(self.texts)}
        self.message_ids = self.message_ids.take(take)
        self.threads = self.threads.take(take)
        self.rows = self.rows.take(take)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _sender(emission_id: object) -> int:
    """Return the sender agent id at the end of an emission id (run:step:agent); -1 when none."""
    return int(str(emission_id).rsplit(":", 1)[1]) if emission_id else -1

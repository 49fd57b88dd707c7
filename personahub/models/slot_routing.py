"""Routing calls to llama.cpp server slots by shared prompt prefix (llama.cpp's ``id_slot``).

llama.cpp's server keeps one prompt per slot (``--parallel`` slots) and reuses a new prompt's
prefix only from the slot it runs on. Left to itself it gives a request any idle slot, so the
first calls of a family (calls sharing a prefix: one system text and task, many personas) that
arrive together start cold on every slot, and a family's later calls meet whichever slot is free.
The client knows each slot's last prompt, so it names the slot (``id_slot``) whose last prompt
shares the most with the new one; llama.cpp queues a request for a busy slot. A warm slot that
already holds ``SPILL_AFTER`` calls gives way to an idle one, so a large family still uses every
slot. Only for llama.cpp's server: ``llama_cpp_slots`` finds its slots from ``GET /props``, which
other servers do not serve, and ``id_slot`` is sent to no other server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from personahub.models.prompt_prefix import common_prefix

if TYPE_CHECKING:
    from openai import AsyncOpenAI

#: a warm slot holding this many calls (running and queued) gives the next one to an idle slot:
#: waiting costs a CPU server little (its slots share the threads) and saves a family's cold start
SPILL_AFTER = 4
#: a prompt sharing less than this share with every slot starts a new family: the least loaded,
#: least recently used slot takes it, as llama.cpp's own choice does below its similarity bound
NEW_FAMILY_SHARE = 0.5
#: a new family prefers the slot sharing at least this share (the same system text and world)
USEFUL_SHARE = 0.2
#: a busy warm slot keeps a call when an idle slot would compute this many times as much of it
WAIT_RATIO = 2.0
#: the most slots routed to (a server reporting more is routed over this many)
MAX_SLOTS = 256
PROBE_TIMEOUT_S = 5.0


@dataclass
class SlotRouter:
    """The slots of one llama.cpp server: each one's last prompt and its calls in flight."""

    slots: int
    _last: list[str] = field(default_factory=list, repr=False)
    _load: list[int] = field(default_factory=list, repr=False)
    _used: list[int] = field(default_factory=list, repr=False)  # when each slot was last chosen
    _clock: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.slots <= MAX_SLOTS:
            raise ValueError(f"slots must be 1..{MAX_SLOTS}, not {self.slots}")
        self._last = [""] * self.slots
        self._load = [0] * self.slots
        self._used = [0] * self.slots

    def choose(self, text: str) -> int:
        """Return the slot for a prompt and count the call on it (``release`` it when answered).

        A prompt sharing at least ``NEW_FAMILY_SHARE`` of itself with a slot's last prompt is of
        that slot's family: the slot sharing the most takes it when idle; when busy it still takes
        it (llama.cpp queues it) if it holds fewer than ``SPILL_AFTER`` calls and an idle slot
        would compute at least ``WAIT_RATIO`` times as much of the prompt, else the idle slot
        sharing the most does. A prompt of a new family goes to the least loaded slot, among those
        the one sharing the most (counted from ``USEFUL_SHARE`` of the prompt: the same system
        text and world), then the least recently chosen, so another family's prefix is kept.

        Args:
            text: the prompt laid out as one string (``prompt_prefix.prompt_text``).

        Returns:
            The slot's index, for the request's ``id_slot``.
        """
        load, n, slots = self._load, len(text), range(self.slots)
        shared = [common_prefix(last, text) for last in self._last]
        left = [n - s for s in shared]  # what the slot would compute
        best = min(slots, key=lambda i: (left[i], load[i], i))
        idle = [i for i in slots if load[i] == 0]
        if shared[best] < NEW_FAMILY_SHARE * n:
            useful = [s if s >= USEFUL_SHARE * n else 0 for s in shared]
            best = min(slots, key=lambda i: (load[i], -useful[i], self._used[i], i))
        elif load[best] and idle:
            spare = min(idle, key=lambda i: (left[i], i))
            if load[best] >= SPILL_AFTER or left[spare] < WAIT_RATIO * left[best]:
                best = spare
        elif load[best] >= SPILL_AFTER:
            under = [i for i in slots if load[i] < SPILL_AFTER]
            best = (min(under, key=lambda i: (left[i], load[i], i)) if under
                    else min(slots, key=lambda i: (load[i], left[i], i)))
        self._last[best] = text
        load[best] += 1
        self._clock += 1
        self._used[best] = self._clock
        return best

    def release(self, slot: int) -> None:
        """Count a call on a slot as answered (or given up on)."""
        self._load[slot] = max(0, self._load[slot] - 1)

    def load(self) -> list[int]:
        """Return the calls in flight per slot."""
        return list(self._load)


def props_url(base_url: str) -> str:
    """Return llama.cpp's ``/props`` address for an OpenAI-compatible base URL (``.../v1``)."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/props", "", ""))


def slots_from_props(body: Any) -> int | None:
    """Return the slot count of a llama.cpp ``/props`` body, or None when it is not one."""
    if not isinstance(body, dict):
        return None
    slots = body.get("total_slots")
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        return None
    return min(slots, MAX_SLOTS)


async def llama_cpp_slots(client: AsyncOpenAI, base_url: str) -> int | None:
    """Return the slots of llama.cpp's server at ``base_url``, or None for any other server.

    One ``GET /props`` without retries; any failure (a 404 from OpenAI, vLLM or Ollama, a refused
    connection, a body without ``total_slots``) means not llama.cpp.
    """
    try:
        body = await client.with_options(max_retries=0, timeout=PROBE_TIMEOUT_S).get(
            props_url(base_url), cast_to=object)
    except Exception:  # noqa: BLE001 - any failure means: do not route
        return None
    return slots_from_props(body)

"""Bounded agent memory: recent observations, messages received, own emissions, and a summary.

Each part is a fixed-size deque. Whatever falls out of one is folded into a running summary of
keywords with decaying weights (the offline engine's keyword extractor, no model call), and the
summary keeps at most ``summary_terms`` words. So memory stays bounded however many steps run,
costs nothing per step, is identical on every machine and survives a resume byte for byte.
A model-written summary would read better but would add a model call per overflow and make the
memory depend on the engine; the keyword summary is what an offline, replayable run needs.

All state is plain data (``to_state`` / ``from_state``) for checkpoints.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from personahub.agents.offline_text import keywords

DECAY = 0.8  # weight kept by older summary terms at each eviction
TERMS_PER_ITEM = 8


@dataclass(frozen=True)
class Message:
    """A line of dialogue from one persona to a neighbour, delivered the step after.

    ``thread_id`` is the id of the first message of the dialogue thread it belongs to
    (``reply_to`` chains lead back to it).
    """

    message_id: str
    step: int
    sender_id: str
    receiver_id: str
    text: str
    reply_to: str | None = None
    emission_id: str | None = None
    thread_id: str | None = None


class AgentMemory:
    """One agent's memory; every part is bounded."""

    def __init__(self, *, observations: int, messages: int, own: int, summary_terms: int) -> None:
        self.observations: deque[tuple[int, str]] = deque(maxlen=observations)
        self.inbox: deque[Message] = deque(maxlen=max(messages, 1))
        self.own: deque[tuple[int, str, str]] = deque(maxlen=own)
        self.summary_terms = summary_terms
        self.summary: dict[str, float] = {}

    # -- adding things -------------------------------------------------------------------------
    def observe(self, step: int, text: str) -> None:
        """Remember an event seen (or a note) at ``step``."""
        self._push(self.observations, (step, text), text)

    def receive(self, message: Message) -> None:
        """Bring a delivered message into view."""
        self._push(self.inbox, message, message.text)

    def remember_own(self, step: int, kind: str, text: str) -> None:
        """Remember one of the agent's own emissions."""
        self._push(self.own, (step, kind, text), text)

    def forget(self) -> None:
        """Clear everything (an intervention)."""
        self.observations.clear()
        self.inbox.clear()
        self.own.clear()
        self.summary.clear()

    def _push(self, queue: deque[Any], item: Any, text: str) -> None:
        if queue.maxlen == 0:
            self._fold(text)
            return
        if len(queue) == queue.maxlen:
            evicted = queue[0]
            self._fold(evicted.text if isinstance(evicted, Message) else evicted[-1])
        queue.append(item)

    def _fold(self, text: str) -> None:
        """Fold an evicted item's keywords into the summary (older terms decay)."""
        if self.summary_terms == 0:
            return
        terms = {w: round(v * DECAY, 6) for w, v in self.summary.items()}
        for word in keywords(text, TERMS_PER_ITEM):
            terms[word] = round(terms.get(word, 0.0) + 1.0, 6)
        ranked = sorted(terms.items(), key=lambda kv: (-kv[1], kv[0]))[: self.summary_terms]
        self.summary = dict(ranked)

    # -- reading -------------------------------------------------------------------------------
    def summary_text(self) -> str:
        """The running summary, strongest terms first ('' when nothing was evicted)."""
        return ("Earlier, things about: " + ", ".join(self.summary)) if self.summary else ""

    def prompt_lines(self, before_step: int) -> list[str]:
        """What the agent recalls for a prompt: the summary, then observations before a step."""
        lines = [self.summary_text()] if self.summary else []
        lines += [f"(step {s}) {text}" for s, text in self.observations if s < before_step]
        return lines

    def current_events(self, step: int) -> list[str]:
        """Observations made at ``step`` (this step's events)."""
        return [text for s, text in self.observations if s == step]

    def recent_own(self) -> list[str]:
        """The agent's own latest emissions (texts)."""
        return [text for _, _, text in self.own]

    # -- plain data ----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain-data state (JSON-able)."""
        return {
            "observations": [[s, t] for s, t in self.observations],
            "inbox": [vars(m).copy() for m in self.inbox],
            "own": [[s, k, t] for s, k, t in self.own],
            "summary": [[w, v] for w, v in self.summary.items()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``to_state`` returned."""
        self.observations.clear()
        self.observations.extend((int(s), str(t)) for s, t in state.get("observations", []))
        self.inbox.clear()
        self.inbox.extend(Message(**m) for m in state.get("inbox", []))
        self.own.clear()
        self.own.extend((int(s), str(k), str(t)) for s, k, t in state.get("own", []))
        self.summary = {str(w): float(v) for w, v in state.get("summary", [])}

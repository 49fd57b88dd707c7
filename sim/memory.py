"""Bounded agent memory: recent observations, messages, own emissions, and a keyword summary.

What leaves a fixed-size part folds into the summary without a model call, so memory is bounded,
free and identical after a resume. Retrieval and reflection (Generative Agents) are opt-in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from personahub.agents.prompts.budget import RELEVANCE_WEIGHT, clip_text, stems
from personahub.core.text_measures import keywords

DECAY = 0.8  # weight kept by older summary terms at each eviction
TERMS_PER_ITEM = 8
RECENCY_DECAY = 0.9  # per step of age (the paper: 0.995 per hour)
# Importance by source, not rated by a model as in the paper: the world shapes an agent most,
# then what others said to it.
IMPORTANCE: dict[str, float] = {"event": 1.0, "message": 0.6, "answer": 0.4, "own": 0.3}
REFLECTION_CHARS = 280  # cut at a word (~70 tokens)
UNREFLECTED_KEEP = 12  # evicted items kept for the next reflection (at least)
LABELS = {"event": "", "message": "heard: ", "answer": "", "own": "I wrote: ",
          "reflection": "In my own words: "}


@dataclass(frozen=True)
class Message:
    """A line of dialogue from one persona to a neighbour, delivered the step after.

    thread_id is the id of the first message of its thread.
    """

    message_id: str
    step: int
    sender_id: str
    receiver_id: str
    text: str
    reply_to: str | None = None
    emission_id: str | None = None
    thread_id: str | None = None


Recollection = tuple[int, str, str]  # (step, source, text)


class AgentMemory:
    """One agent's memory; every part is bounded."""

    def __init__(self, *, observations: int, messages: int, own: int, summary_terms: int,
                 retrieve: bool = False, store: int = 0, top_k: int = 6, reflect: bool = False,
                 reflect_overflow: int | None = None) -> None:
        self.observations: deque[tuple[int, str]] = deque(maxlen=observations)
        self.inbox: deque[Message] = deque(maxlen=max(messages, 1))
        self.own: deque[tuple[int, str, str]] = deque(maxlen=own)
        self.summary_terms = summary_terms
        self.summary: dict[str, float] = {}
        self.retrieve = retrieve
        self.top_k = top_k
        self.store: deque[Recollection] = deque(maxlen=store if retrieve else 0)
        self.sources: deque[str] = deque(maxlen=observations)
        self.reflect = reflect
        self.reflect_overflow = reflect_overflow
        self.reflection = ""  # '' before the first
        self.reflected_at = 0
        self.fresh = 0  # items remembered since the latest reflection (capped)
        self.unreflected: deque[Recollection] = deque(
            maxlen=max(reflect_overflow or 0, UNREFLECTED_KEEP) if reflect else 0)

    def observe(self, step: int, text: str, source: str = "event") -> None:
        """Remember an event, note or answer seen at a step."""
        if self.retrieve and self.observations.maxlen:
            if len(self.observations) == self.observations.maxlen:
                (old_step, old_text), old_source = self.observations[0], self.sources[0]
                self._retire((old_step, old_source, old_text))
            self.observations.append((step, text))
            self.sources.append(source)
            self._count()
            return
        self._push(self.observations, (step, text), text, (step, source, text))

    def receive(self, message: Message) -> None:
        """Bring a delivered message into view."""
        self._push(self.inbox, message, message.text, (message.step, "message", message.text))

    def take_in(self, pushed_out: Recollection | None) -> None:
        """Do what ``receive`` does besides holding the message, for an inbox kept outside this
        memory (a column shard's, ``sim/inbox_columns.py``): count it, and retire the message it
        pushed out of a full inbox."""
        self._count()
        if pushed_out is not None:
            self._retire(pushed_out)

    def remember_own(self, step: int, kind: str, text: str) -> None:
        """Remember one of the agent's own emissions."""
        self._push(self.own, (step, kind, text), text, (step, "own", text))

    def forget(self) -> None:
        """Clear everything (an intervention)."""
        self.observations.clear()
        self.inbox.clear()
        self.own.clear()
        self.summary.clear()
        self.sources.clear()
        self.store.clear()
        self.unreflected.clear()
        self.reflection = ""
        self.fresh = 0

    def _push(self, queue: deque[Any], item: Any, text: str, recollection: Recollection) -> None:
        self._count()
        if queue.maxlen == 0:
            self._retire(recollection)
            return
        if len(queue) == queue.maxlen:
            evicted = queue[0]
            if isinstance(evicted, Message):
                self._retire((evicted.step, "message", evicted.text))
            elif len(evicted) == 3:
                self._retire((evicted[0], "own", evicted[2]))
            else:
                self._retire((evicted[0], "event", evicted[1]))
        queue.append(item)

    def _count(self) -> None:
        if self.reflect:
            self.fresh = min(self.fresh + 1, 1_000_000)

    def _retire(self, item: Recollection) -> None:
        """Retire an item that leaves view: into the store (retrieval), else folded into the summary."""
        if self.store.maxlen:
            if len(self.store) == self.store.maxlen:
                self._evict(self.store[0])
            self.store.append(item)
            return
        self._evict(item)

    def _evict(self, item: Recollection) -> None:
        """Evict an item from memory: its keywords fold into the summary, and a reflection sees it."""
        self._fold(item[2])
        if self.unreflected.maxlen:
            self.unreflected.append(item)

    def _fold(self, text: str) -> None:
        if self.summary_terms == 0:
            return
        terms = {w: round(v * DECAY, 6) for w, v in self.summary.items()}
        for word in keywords(text, TERMS_PER_ITEM):
            terms[word] = round(terms.get(word, 0.0) + 1.0, 6)
        ranked = sorted(terms.items(), key=lambda kv: (-kv[1], kv[0]))[: self.summary_terms]
        self.summary = dict(ranked)

    def summary_text(self) -> str:
        """Return the running summary, strongest terms first ('' when nothing was evicted)."""
        if not self.summary:
            return ""
        return ("Since then, things about: " if self.reflection else "Earlier, things about: ") + \
            ", ".join(self.summary)

    def summary_lines(self) -> list[str]:
        """Return the reflection, then the keyword summary of what it has not seen."""
        lines = [f"In my own words: {self.reflection}"] if self.reflection else []
        return lines + ([self.summary_text()] if self.summary else [])

    def prompt_lines(self, before_step: int) -> list[str]:
        """Return what the agent recalls for a prompt, oldest first; the reflection sits at its own step so
        the prompt budget weighs it by age.
        """
        lines = [self.summary_text()] if self.summary else []
        recalled = self.recalled(before_step)
        if self.reflection:
            at = sum(1 for s, _, _ in recalled if s <= self.reflected_at)
            recalled.insert(at, (self.reflected_at, "reflection", self.reflection))
        return lines + [recollection_line(item) for item in recalled]

    def recalled(self, before_step: int) -> list[Recollection]:
        """Return the items a prompt shows before a step, oldest first (without summaries)."""
        if self.retrieve:
            return self.retrieved(before_step)
        return [(s, "event", text) for s, text in self.observations if s < before_step]

    def candidates(self, before_step: int) -> list[Recollection]:
        """Return the retrievable items from before a step, oldest first (store, then observations)."""
        seen = [(s, src, t) for (s, t), src in zip(self.observations, self.sources, strict=True)]
        return [item for item in (*self.store, *seen) if item[0] < before_step]

    def retrieved(self, before_step: int) -> list[Recollection]:
        """Return the top_k candidates by recency + importance + relevance, shown oldest first.

        Recency and relevance are min-max normalised as in Generative Agents; importance keeps its
        fixed scale. Relevance (word-stem cosine with this step's events and messages) weighs double,
        so an old item about this step beats the newest unrelated one.
        """
        items = self.candidates(before_step)
        if len(items) <= self.top_k:
            return sorted(items, key=lambda item: item[0])  # stable
        query = stems("\n".join([t for s, t in self.observations if s >= before_step]
                                 + [m.text for m in self.inbox]))
        recency = [RECENCY_DECAY ** max(before_step - 1 - s, 0) for s, _, _ in items]
        importance = [IMPORTANCE.get(src, 0.5) for _, src, _ in items]
        relevance = [_overlap(stems(text), query) for _, _, text in items]
        score = [r + i + RELEVANCE_WEIGHT * v for r, i, v in zip(
            _minmax(recency), importance, _minmax(relevance), strict=True)]
        best = sorted(range(len(items)), key=lambda i: (-round(score[i], 9), -i))[: self.top_k]
        return [items[i] for i in sorted(best, key=lambda i: (items[i][0], i))]

    def current_events(self, step: int) -> list[str]:
        """Observations made at a step (this step's events)."""
        return [text for s, text in self.observations if s == step]

    def recent_own(self) -> list[str]:
        """Return the agent's own latest emissions (texts)."""
        return [text for _, _, text in self.own]

    def reflection_due(self, step: int, every: int | None) -> bool:
        """Whether this agent reflects at a step: periodically when it has something new, or on overflow."""
        if not self.reflect:
            return False
        if self.reflect_overflow and len(self.unreflected) >= self.reflect_overflow:
            return True
        return every is not None and step % every == 0 and self.fresh > 0

    def reflection_material(self, before_step: int) -> list[str]:
        """Return what a reflection looks back on: what left memory since the last one, what is in view, then
        its own recent output.
        """
        gone = [recollection_line(item) for item in self.unreflected]
        held = [recollection_line(item) for item in self.recalled(before_step)]
        mine = [recollection_line((s, "own", t)) for s, _, t in self.own if s < before_step]
        return gone + held + mine

    def reflected(self, step: int, text: str) -> None:
        """Apply a reflection: it replaces the summary and what it saw."""
        self.reflection = clip_text(text, REFLECTION_CHARS)
        self.reflected_at = step
        self.summary = {}
        self.unreflected.clear()
        self.fresh = 0

    def to_state(self) -> dict[str, object]:
        """JSON-able state; retrieval and reflection parts only when switched on."""
        state: dict[str, object] = {
            "observations": [[s, t] for s, t in self.observations],
            "inbox": [vars(m).copy() for m in self.inbox],
            "own": [[s, k, t] for s, k, t in self.own],
            "summary": [[w, v] for w, v in self.summary.items()],
        }
        if self.retrieve:
            state["sources"] = list(self.sources)
            state["store"] = [list(item) for item in self.store]
        if self.reflect:
            state["reflection"] = self.reflection
            state["reflected_at"] = self.reflected_at
            state["fresh"] = self.fresh
            state["unreflected"] = [list(item) for item in self.unreflected]
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state from to_state."""
        self.observations.clear()
        self.observations.extend((int(s), str(t)) for s, t in state.get("observations", []))
        self.inbox.clear()
        self.inbox.extend(Message(**m) for m in state.get("inbox", []))
        self.own.clear()
        self.own.extend((int(s), str(k), str(t)) for s, k, t in state.get("own", []))
        self.summary = {str(w): float(v) for w, v in state.get("summary", [])}
        self.sources.clear()
        if self.retrieve:
            sources = [str(x) for x in state.get("sources", [])]
            self.sources.extend(sources + ["event"] * (len(self.observations) - len(sources)))
        self.store.clear()
        self.store.extend((int(s), str(src), str(t)) for s, src, t in state.get("store", []))
        self.reflection = str(state.get("reflection", ""))
        self.reflected_at = int(state.get("reflected_at", 0))
        self.fresh = int(state.get("fresh", 0))
        self.unreflected.clear()
        self.unreflected.extend((int(s), str(src), str(t))
                                for s, src, t in state.get("unreflected", []))


def recollection_line(item: Recollection) -> str:
    """Return a remembered item as a prompt line: (step N) [label]text."""
    step, source, text = item
    return f"(step {step}) {LABELS.get(source, '')}{text}"


def _minmax(values: list[float]) -> list[float]:
    """Values scaled to 0..1; all 0 when they are equal."""
    low, high = min(values), max(values)
    if high - low <= 1e-12:
        return [0.0] * len(values)
    return [(v - low) / (high - low) for v in values]


def _overlap(words: frozenset[str], query: frozenset[str]) -> float:
    if not words or not query:
        return 0.0
    return len(words & query) / (len(words) * len(query)) ** 0.5

"""How much of a stream of prompts a server's prefix cache could reuse.

Each prompt's longest common prefix with any earlier prompt is counted in approximate tokens. It
assumes an unbounded cache (an upper bound) and needs no tokenizer: messages are laid out as role and
content, as chat templates do.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from personahub.core.text_measures import approx_tokens


def prompt_text(messages: Sequence[Any]) -> str:
    """Return a message list laid out as one string, as a chat template would."""
    parts = []
    for message in messages:
        if isinstance(message, Mapping):
            role, content = str(message.get("role", "")), message.get("content")
        elif isinstance(message, tuple) and len(message) == 2:  # LangChain's ("user", "text") form
            role, content = str(message[0]), message[1]
        else:
            role, content = str(getattr(message, "type", "")), message.content
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        parts.append(f"<|{role}|>\n{content or ''}\n")
    return "".join(parts)


def common_prefix(a: str, b: str) -> int:
    """Characters two strings share from their start."""
    n = min(len(a), len(b))
    low, high = 0, n
    while low < high:  # binary search on slice equality: C speed for long shared prefixes
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass
class PrefixWindow:
    """The last prompts (all when unbounded), kept sorted: a new prompt's longest shared prefix is with a
    neighbour, so a match costs a binary search and two comparisons. A bounded window forgets its oldest
    prompt, as a server's cache evicts.
    """

    capacity: int | None = None
    _sorted: list[str] = field(default_factory=list)
    _order: deque[str] = field(default_factory=deque)

    def match(self, text: str) -> int:
        """Characters a text shares from its start with a remembered prompt; then remembers it."""
        at = bisect.bisect_left(self._sorted, text)
        shared = max((common_prefix(self._sorted[i], text) for i in (at - 1, at)
                      if 0 <= i < len(self._sorted)), default=0)
        self._sorted.insert(at, text)
        if self.capacity is not None:
            self._order.append(text)
            if len(self._order) > self.capacity:
                oldest = self._order.popleft()
                del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        return shared


@dataclass
class SharedPrefixMeter:
    """Prompt tokens seen, and those in a prefix shared with a recent prompt."""

    capacity: int | None = None
    total_tokens: int = 0
    shared_tokens: int = 0
    _window: PrefixWindow | None = field(default=None, repr=False)

    def add(self, messages: Sequence[object]) -> int:
        """Count one prompt; returns its tokens in a shared prefix."""
        return self.add_text(prompt_text(messages))

    def add_text(self, text: str) -> int:
        """Count one prompt already laid out as text; returns its tokens in a shared prefix."""
        if self._window is None:
            self._window = PrefixWindow(self.capacity)
        shared = self._window.match(text)
        tokens = approx_tokens(text[:shared]) if shared else 0
        self.total_tokens += approx_tokens(text) if text else 0
        self.shared_tokens += tokens
        return tokens

    @property
    def share(self) -> float:
        """The share of all prompt tokens that sat in a shared prefix (0 before any prompt)."""
        return self.shared_tokens / self.total_tokens if self.total_tokens else 0.0

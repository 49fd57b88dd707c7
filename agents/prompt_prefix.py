"""How much of a stream of prompts a server's prefix cache could reuse.

Servers with prefix caching (vLLM, SGLang, llama.cpp) skip the prompt tokens a request shares,
from its first token on, with a request they have already seen. ``SharedPrefixMeter`` measures
that on the prompts themselves: each prompt's longest common prefix with any earlier prompt,
counted in the prompt budget's approximate tokens, against all its tokens. It assumes an
unbounded cache (an upper bound of what a real one holds), and it needs no tokenizer: messages
are laid out as role and content, one after the other, as chat templates do.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from personahub.agents.prompt_budget import count_tokens


def prompt_text(messages: Sequence[Any]) -> str:
    """A message list laid out as one string (role, then content), as a chat template would."""
    parts = []
    for message in messages:
        if isinstance(message, Mapping):
            role, content = str(message.get("role", "")), message.get("content")
        else:
            role, content = str(getattr(message, "type", "")), message.content
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        parts.append(f"<|{role}|>\n{content or ''}\n")
    return "".join(parts)


def common_prefix(a: str, b: str) -> int:
    """Characters ``a`` and ``b`` share from their start."""
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
class SharedPrefixMeter:
    """Prompt tokens seen, and those in a prefix shared with an earlier prompt.

    The earlier prompt sharing the longest prefix with a new one is a neighbour of it in sorted
    order, so each prompt costs a binary search and two comparisons.
    """

    seen: list[str] = field(default_factory=list)
    total_tokens: int = 0
    shared_tokens: int = 0

    def add(self, messages: Sequence[Any]) -> int:
        """Count one prompt; returns its tokens in a shared prefix."""
        text = prompt_text(messages)
        at = bisect.bisect_left(self.seen, text)
        shared = max((common_prefix(self.seen[i], text) for i in (at - 1, at)
                      if 0 <= i < len(self.seen)), default=0)
        self.seen.insert(at, text)
        tokens = count_tokens(text[:shared])
        self.total_tokens += count_tokens(text)
        self.shared_tokens += tokens
        return tokens

    @property
    def share(self) -> float:
        """The share of all prompt tokens that sat in a shared prefix (0 before any prompt)."""
        return self.shared_tokens / self.total_tokens if self.total_tokens else 0.0

"""Token log-probabilities of the loopback server.

The first token's alternatives are the letters A, B, ..., their log-probabilities a Dirichlet draw
seeded by the seed and the messages, in OpenAI's shape. With log-probabilities off the server answers
null, as a server that ignores the request does.
"""

from __future__ import annotations

import hashlib
import math
import string
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["letter_logprobs", "logprobs_content"]


def letter_logprobs(seed: int, messages: Sequence[Mapping[str, object]], n: int) -> dict[str, float]:
    """Return the log-probability of each of the first letters as the first answer token."""
    letters = string.ascii_uppercase[:max(1, min(n, 26))]
    text = "\x1e".join(str(m.get("content", "")) for m in messages)
    digest = hashlib.sha256(f"{seed}\x1flogprobs\x1f{text}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    draw = rng.dirichlet(np.full(len(letters), 0.7))
    return {letter: math.log(max(float(p), 1e-12)) for letter, p in zip(letters, draw, strict=True)}


def logprobs_content(seed: int, messages: Sequence[Mapping[str, object]],
                     request: Mapping[str, object]) -> dict[str, object]:
    """Return a choice's log-probabilities object for a request."""
    top = request.get("top_logprobs")
    n = top if isinstance(top, int) and not isinstance(top, bool) and top > 0 else 1
    ranked = sorted(letter_logprobs(seed, messages, n).items(), key=lambda kv: -kv[1])
    first = ranked[0]
    return {"content": [{"token": first[0], "logprob": first[1], "bytes": list(first[0].encode()),
                         "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                          for t, lp in ranked]}]}

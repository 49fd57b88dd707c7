"""Diversity measures after the Persona Hub paper's analysis, over texts in memory.

- distinct-n: distinct word n-grams / all word n-grams of a set of texts;
- persona-vs-output similarity: for sampled pairs of items, the estimated Jaccard similarity
  (MinHash, word 1-grams) of their personas against that of what they produced. Diverse
  personas should give diverse outputs: points should stay low on the output axis.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from personahub.personas.minhash import MinHashConfig, signatures
from personahub.personas.near_dup import word_ngrams


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Share of word n-grams that are distinct across ``texts`` (0 when there are none)."""
    total, seen = 0, set()
    for text in texts:
        words = text.lower().split()
        grams = [tuple(words[i:i + n]) for i in range(max(0, len(words) - n + 1))]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def pair_similarities(personas: Sequence[str], outputs: Sequence[str], *, pairs: int = 500,
                      seed: int = 0) -> list[tuple[float, float]]:
    """(persona similarity, output similarity) for up to ``pairs`` random pairs of items."""
    count = len(personas)
    if count < 2:
        return []
    config = MinHashConfig()
    persona_sigs = signatures(list(personas), config)
    output_sigs = signatures(list(outputs), config)
    rng = random.Random(seed)
    chosen: set[tuple[int, int]] = set()
    limit = min(pairs, count * (count - 1) // 2)
    while len(chosen) < limit:
        a, b = rng.sample(range(count), 2)
        chosen.add((min(a, b), max(a, b)))
    return [(float(np.mean(persona_sigs[a] == persona_sigs[b])),
             float(np.mean(output_sigs[a] == output_sigs[b])))
            for a, b in sorted(chosen)]


def exact_jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of two texts' word sets (for checking the MinHash estimate)."""
    x, y = word_ngrams(a), word_ngrams(b)
    return len(x & y) / len(x | y) if x | y else 1.0

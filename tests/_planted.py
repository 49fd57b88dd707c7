"""Seeded synthetic persona texts with planted near-duplicates, shared by the dedup tests."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


@dataclass
class Planted:
    texts: list[str]
    source: list[int]  # -1 for distinct texts, else index of the text it was derived from
    kind: list[str]

    def truth(self) -> np.ndarray:
        return np.array(self.source, dtype=np.int64)


def _vocab(rng: random.Random, size: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(words)


def planted_corpus(
    n_distinct: int = 400,
    n_planted: int = 200,
    *,
    seed: int = 3,
    length: tuple[int, int] = (100, 140),
    kinds: tuple[str, ...] = ("swap", "edit1", "variant"),
) -> Planted:
    """Distinct long texts plus planted near-duplicates appended after them in random order.

    Kinds: ``swap`` (two words swapped), ``edit1`` (one word replaced), ``variant`` (case and
    punctuation), ``edit_block`` (4 adjacent words replaced: Jaccard ~0.87, below MinHash's 0.9
    but above 0.9 cosine for word-overlap embeddings).
    """
    rng = random.Random(seed)
    vocab = _vocab(rng, 6000)
    texts = [" ".join(rng.choices(vocab, k=rng.randint(*length))) for _ in range(n_distinct)]
    source = [-1] * n_distinct
    kind = ["distinct"] * n_distinct
    for _ in range(n_planted):
        src = rng.randrange(n_distinct)
        words = texts[src].split()
        k = rng.choice(kinds)
        if k == "swap":
            a, b = rng.sample(range(len(words)), 2)
            words[a], words[b] = words[b], words[a]
        elif k == "edit1":
            words[rng.randrange(len(words))] = rng.choice(vocab)
        elif k == "variant":
            j = rng.randrange(len(words))
            words[j] = words[j].upper() + ","
            words[0] = words[0].capitalize()
        elif k == "edit_block":
            j = rng.randrange(len(words) - 4)
            words[j : j + 4] = rng.sample(vocab, 4)
        else:
            raise ValueError(k)
        texts.append(" ".join(words) + ("." if k == "variant" else ""))
        source.append(src)
        kind.append(k)
    return Planted(texts, source, kind)


def recall_precision(dup: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Recall over planted texts; precision over marked texts (a mark is right when it points
    to the planted text's source, or to another text planted from the same source)."""
    planted = truth >= 0
    marked = dup >= 0
    root = np.where(truth >= 0, truth, np.arange(truth.size))
    right = marked & (root[np.maximum(dup, 0)] == root)
    recall = float((marked & planted).sum() / max(1, planted.sum()))
    precision = float(right.sum() / max(1, marked.sum()))
    return recall, precision

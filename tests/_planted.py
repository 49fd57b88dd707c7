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


# the words every item of a template shares, as templated math problems share their frame
_TEMPLATES = (
    "how many apples does the baker have left after selling some at the market each day",
    "a train leaves the station at noon and travels at a steady speed for several hours",
    "the garden has rows of plants and each row holds the same number of flowers in total",
)


def planted_items(seed: int, n: int = 200, originals: int = 25) -> tuple[list[str], list[int]]:
    """Templated items (20 to 40 distinct words each) and planted copies of some of them.

    A copy replaces one word of its original (or of an earlier copy), so its exact word-set
    Jaccard with it is (w - 1) / (w + 1): 0.905 to 0.951 for 20 to 40 words, just above the
    0.9 a 128-slot MinHash estimate often puts below it. Items of one template share its frame,
    so unrelated items crowd the LSH buckets as the offline engine's problems do.

    Returns:
        The texts (copies after the originals, in a seeded order) and each text's source: -1
        for an original, else the index of the text it was copied from.
    """
    rng = random.Random(seed)
    vocab = _vocab(rng, 4000)
    texts, source = [], []
    for _ in range(n - originals):
        frame = rng.choice(_TEMPLATES).split()
        own = rng.sample(vocab, rng.randint(20, 40) - len(set(frame)))
        texts.append(" ".join(frame + own))
        source.append(-1)
    for _ in range(originals):
        src = rng.choice([i for i, s in enumerate(source) if s == -1]) if rng.random() < 0.7 \
            or len(texts) == n - originals else rng.randrange(n - originals, len(texts))
        words = texts[src].split()
        unique = [i for i, w in enumerate(words) if words.count(w) == 1]
        new = rng.choice(vocab)
        while new in words:
            new = rng.choice(vocab)
        words[rng.choice(unique)] = new
        texts.append(" ".join(words))
        source.append(src)
    return texts, source

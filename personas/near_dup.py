"""Incremental near-duplicate detection (MinHash LSH, datasketch) for streams of texts.

Used where items arrive one batch at a time and must be flagged at once: emissions in each
simulation step, personas created by expansion. The paper's settings are the defaults: 1-gram
(word) features, 128 permutations, Jaccard threshold 0.9. The earliest text is kept; later
near-duplicates point to it.
"""

from __future__ import annotations

import re
from functools import lru_cache

from datasketch import MinHash, MinHashLSH

_TOKEN = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's optimal (bands, rows) for a threshold; computed once (it integrates, ~50 ms)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def word_ngrams(text: str, n: int = 1) -> set[str]:
    """Lower-cased word n-grams of ``text`` (1-grams by default, as in the paper)."""
    words = _TOKEN.findall(text.lower())
    if n == 1:
        return set(words)
    return {" ".join(words[i : i + n]) for i in range(max(0, len(words) - n + 1))}


class NearDuplicateIndex:
    """MinHash LSH over the texts seen so far; ``check_and_add`` flags and indexes in one go."""

    def __init__(self, *, threshold: float = 0.9, num_perm: int = 128, ngram: int = 1,
                 seed: int = 1) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self._template = MinHash(num_perm=num_perm, seed=seed)
        self._lsh = MinHashLSH(num_perm=num_perm, params=lsh_params(threshold, num_perm))
        self._signatures: dict[str, MinHash] = {}
        self._order: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def signature(self, text: str) -> MinHash:
        """MinHash of ``text``'s word n-grams (permutations shared, so this is cheap)."""
        sig = MinHash(num_perm=self.num_perm, permutations=self._template.permutations,
                      scheme=self._template.scheme)
        sig.update_batch([t.encode("utf-8") for t in word_ngrams(text, self.ngram)])
        return sig

    def find(self, text: str) -> str | None:
        """Key of the earliest indexed text whose estimated Jaccard is >= threshold, if any."""
        return self._find(self.signature(text))

    def _find(self, sig: MinHash) -> str | None:
        hits = [
            key for key in self._lsh.query(sig)
            if sig.jaccard(self._signatures[key]) >= self.threshold
        ]
        return min(hits, key=self._order.__getitem__) if hits else None

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key`` (keys must be unique)."""
        self._insert(key, self.signature(text))

    def _insert(self, key: str, sig: MinHash) -> None:
        self._lsh.insert(key, sig)
        self._signatures[key] = sig
        self._order[key] = len(self._order)

    def check_and_add(self, key: str, text: str) -> str | None:
        """Return the key ``text`` duplicates, or index it under ``key`` and return None."""
        sig = self.signature(text)
        original = self._find(sig)
        if original is None:
            self._insert(key, sig)
        return original

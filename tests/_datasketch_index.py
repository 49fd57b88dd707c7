"""The incremental near-duplicate index on datasketch's ``MinHashLSH``.

Our vectorised signatures (``personas.minhash.signatures``, bit-identical to datasketch's
``MinHash``) wrapped as ``LeanMinHash`` and indexed in ``MinHashLSH`` with the same (bands, rows);
a query's candidates are verified earliest first by ``LeanMinHash.jaccard``. It flags exactly
what ``personas.near_dup.NearDuplicateIndex`` flags (tests/personas/test_near_dup.py), which is why it is
the yardstick for that index: ``bench/bench_near_dup.py`` and ``bench/bench_memory.py --variants
datasketch`` measure what using it in runs would cost, and bench/RESULTS.md gives the figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from personahub.personas.minhash import MinHashConfig, lsh_params, signatures

_EMPTY = np.iinfo(np.uint32).max


class DatasketchNearDuplicateIndex:
    """``MinHashLSH`` over ``LeanMinHash``-wrapped signatures; keeps every sketch for verification."""

    def __init__(self, *, threshold: float = 0.9, num_perm: int = 128, ngram: int = 1,
                 seed: int = 1) -> None:
        self.config = MinHashConfig(num_perm=num_perm, threshold=threshold, ngram=ngram, seed=seed)
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm,
                               params=lsh_params(threshold, num_perm))
        self._keys: list[str] = []  # by text number (the LSH key)
        self._sketches: list[LeanMinHash] = []

    def __len__(self) -> int:
        return len(self._keys)

    def _sketches_of(self, texts: Sequence[str]) -> list[tuple[LeanMinHash, bool]]:
        """(sketch, has words) per text: a text without words matches nothing."""
        sigs = signatures(texts, self.config)
        words = (sigs != _EMPTY).any(axis=1).tolist()
        return [(LeanMinHash(seed=self.config.seed, hashvalues=sig, scheme="affine32"), w)
                for sig, w in zip(sigs, words, strict=True)]

    def _find(self, sketch: LeanMinHash) -> int | None:
        for number in sorted(self._lsh.query(sketch)):  # earliest first
            if self._sketches[number].jaccard(sketch) >= self.threshold:
                return number
        return None

    def _insert(self, key: str, sketch: LeanMinHash) -> None:
        number = len(self._keys)
        self._keys.append(key)
        self._sketches.append(sketch)
        self._lsh.insert(number, sketch, check_duplication=False)

    def check_and_add_many(self, items: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each (key, text) in order: the key it duplicates, or None after indexing it."""
        flags: list[str | None] = []
        for (key, _), (sketch, words) in zip(items, self._sketches_of([t for _, t in items]),
                                             strict=True):
            original = self._find(sketch) if words else None
            if original is None:
                self._insert(key, sketch)
            flags.append(None if original is None else self._keys[original])
        return flags

    def add_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Index every (key, text) without checking (keys must be unique)."""
        for (key, _), (sketch, _) in zip(items, self._sketches_of([t for _, t in items]), strict=True):
            self._insert(key, sketch)

    def find(self, text: str) -> str | None:
        """Key of the earliest indexed text whose estimated Jaccard is >= threshold, if any."""
        sketch, words = self._sketches_of([text])[0]
        number = self._find(sketch) if words else None
        return None if number is None else self._keys[number]

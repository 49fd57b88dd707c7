"""The near-duplicate index as it was before compact storage (``personas/near_dup.py``).

A reference: tests check the compact index flags exactly what this one flags, and
``bench/bench_memory.py --index dict`` measures the memory it cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from personahub.personas.minhash import MinHashConfig, lsh_params, signatures

_EMPTY = np.iinfo(np.uint32).max


class DictNearDuplicateIndex:
    """The index before compact storage: bytes band keys in per-band dicts, one array per text."""

    def __init__(self, *, threshold: float = 0.9, num_perm: int = 128, ngram: int = 1,
                 seed: int = 1) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.config = MinHashConfig(num_perm=num_perm, threshold=threshold, ngram=ngram, seed=seed)
        self.threshold = threshold
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self._buckets: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self._keys: list[str] = []
        self._signatures: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._keys)

    def _band_keys(self, sig: np.ndarray) -> list[bytes]:
        r = self.rows
        return [sig[b * r : (b + 1) * r].tobytes() for b in range(self.bands)]

    def _find(self, sig: np.ndarray, bands: list[bytes]) -> int | None:
        if sig[0] == _EMPTY and (sig == _EMPTY).all():
            return None  # a text without words matches nothing
        candidates: set[int] = set()
        for bucket, key in zip(self._buckets, bands, strict=True):
            candidates.update(bucket.get(key, ()))
        for index in sorted(candidates):  # earliest first
            if float(np.mean(self._signatures[index] == sig)) >= self.threshold:
                return index
        return None

    def _insert(self, key: str, sig: np.ndarray, bands: list[bytes]) -> None:
        index = len(self._keys)
        self._keys.append(key)
        self._signatures.append(sig)
        for bucket, band in zip(self._buckets, bands, strict=True):
            bucket.setdefault(band, []).append(index)

    def check_and_add_many(self, items: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each (key, text) in order: the key it duplicates, or None after indexing it."""
        sigs = signatures([text for _, text in items], self.config)
        flags: list[str | None] = []
        for (key, _), sig in zip(items, sigs, strict=True):
            bands = self._band_keys(sig)
            original = self._find(sig, bands)
            if original is None:
                self._insert(key, sig, bands)
                flags.append(None)
            else:
                flags.append(self._keys[original])
        return flags

    def add_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Index every (key, text) without checking (keys must be unique)."""
        sigs = signatures([text for _, text in items], self.config)
        for (key, _), sig in zip(items, sigs, strict=True):
            self._insert(key, sig, self._band_keys(sig))

    def find(self, text: str) -> str | None:
        """Key of the earliest indexed text whose estimated Jaccard is >= threshold, if any."""
        sig = signatures([text], self.config)[0]
        index = self._find(sig, self._band_keys(sig))
        return None if index is None else self._keys[index]

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key`` (keys must be unique)."""
        self.add_many([(key, text)])

    def check_and_add(self, key: str, text: str) -> str | None:
        """Return the key ``text`` duplicates, or index it under ``key`` and return None."""
        return self.check_and_add_many([(key, text)])[0]

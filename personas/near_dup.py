"""Incremental near-duplicate detection (MinHash LSH) for texts flagged as they arrive.

Used for a run's emissions and an expansion's personas; the earliest text is kept. Flags equal
datasketch's MinHashLSH plus verification at half the time and a quarter of the memory
(bench_near_dup.py, bench_memory.py): band hashes live in sorted numpy arrays.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import numpy as np

from personahub.personas.minhash import MinHashConfig, lsh_params, signatures, tokenize

_EMPTY = np.iinfo(np.uint32).max
_U64 = np.uint64
_MIX1 = _U64(0xFF51AFD7ED558CCD)
_MIX2 = _U64(0xC4CEB9FE1A85EC53)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
BLOCK = 1024  # the unit of growth and of eviction
MERGE = 2048  # newest texts kept apart before joining the sorted level
BULK = 65_536
HOT = 4096  # with a reader: signatures kept for the newest texts
READ_CACHE = 4096  # older signatures read back, LRU

TextReader = Callable[[Sequence[str]], Sequence[str]]


def word_ngrams(text: str, n: int = 1) -> set[str]:
    """Return lower-cased word n-grams of text (1-grams by default, as in the paper)."""
    words = tokenize(text)
    if n == 1:
        return set(words)
    return {" ".join(words[i : i + n]) for i in range(max(0, len(words) - n + 1))}


def _fmix64(x: Any) -> Any:
    x = x ^ (x >> _U64(33))
    x = x * _MIX1
    x = x ^ (x >> _U64(33))
    x = x * _MIX2
    return x ^ (x >> _U64(33))


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Return one hash per LSH band of each signature, the band number mixed in."""
    out = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            key = np.full(sigs.shape[0], _fmix64(_GOLDEN * _U64(b + 1)), dtype=np.uint64)
            for col in range(b * rows, (b + 1) * rows):
                key = _fmix64(key ^ sigs[:, col].astype(np.uint64))
            out[:, b] = key
    return out


class _Keys:
    """Keys by text number; a full block is packed into one string plus offsets."""

    def __init__(self) -> None:
        self._packed: list[tuple[str, np.ndarray]] = []
        self._open: list[str] = []

    def append(self, key: str) -> None:
        self._open.append(key)
        if len(self._open) == BLOCK:
            ends = np.cumsum([len(k) for k in self._open], dtype=np.int64)
            self._packed.append(("".join(self._open), ends))
            self._open = []

    def get(self, block: int, row: int) -> str:
        if block == len(self._packed):
            return self._open[row]
        text, ends = self._packed[block]
        return text[int(ends[row - 1]) if row else 0 : int(ends[row])]

    def drop(self, blocks: int) -> None:
        del self._packed[:blocks]


class _Sorted:
    """Band hashes, sorted, with the number of the text each belongs to."""

    def __init__(self) -> None:
        self.hashes = np.empty(0, dtype=np.uint64)
        self.numbers = np.empty(0, dtype=np.int64)

    def add(self, hashes: np.ndarray, numbers: np.ndarray, first: int) -> None:
        """Merge hashes of numbered texts, dropping texts numbered below first."""
        keep = self.numbers >= first
        old_hashes, old_numbers = self.hashes[keep], self.numbers[keep]
        order = np.argsort(hashes, kind="stable")
        at = np.searchsorted(old_hashes, hashes[order], side="right")
        self.hashes = np.insert(old_hashes, at, hashes[order])
        self.numbers = np.insert(old_numbers, at, numbers[order])

    def hits(self, flat: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Return (position in flat, text numbers) for every hash of flat found."""
        if self.hashes.size == 0 or flat.size == 0:
            return []
        lo = np.searchsorted(self.hashes, flat, side="left")
        hi = np.searchsorted(self.hashes, flat, side="right")
        return [(pos, self.numbers[lo[pos] : hi[pos]]) for pos in np.flatnonzero(hi > lo).tolist()]


class NearIndex(Protocol):
    """What an expansion asks of its near-duplicate index: check and add, or add."""

    def check_and_add(self, key: str, text: str) -> str | None:
        """Return the key text duplicates, or None after indexing it."""

    def add_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Index every (key, text) without checking."""


class NearDuplicateIndex:
    """MinHash LSH over the texts seen so far; check_and_add flags and indexes in one go.

    max_items keeps only the latest texts. texts reads back texts indexed earlier, so the index
    keeps few signatures between calls.
    """

    def __init__(self, *, threshold: float = 0.9, num_perm: int = 128, ngram: int = 1,
                 seed: int = 1, max_items: int | None = None,
                 texts: TextReader | None = None) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be >= 1 or None, got {max_items}")
        self.config = MinHashConfig(num_perm=num_perm, threshold=threshold, ngram=ngram, seed=seed)
        self.threshold = threshold
        self.max_items = max_items
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self._count = 0  # a text's number is its position in indexing order
        self._first = 0  # first text whose key is kept
        self._hot = 0  # first text whose signature is kept
        self._blocks: list[np.ndarray] = []
        self._reader = texts
        self._held: dict[int, np.ndarray] = {}
        self._read: OrderedDict[int, np.ndarray] = OrderedDict()
        self._keys = _Keys()
        self._merged = _Sorted()
        self._recent = _Sorted()

    def __len__(self) -> int:
        return self._count - self._start()

    def _start(self) -> int:
        return 0 if self.max_items is None else max(0, self._count - self.max_items)

    def _signature(self, number: int) -> np.ndarray:
        if number < self._hot:
            return self._held[number]
        block, row = divmod(number - self._hot, BLOCK)
        return self._blocks[block][row]

    def _key(self, number: int) -> str:
        return self._keys.get(*divmod(number - self._first, BLOCK))

    def _proposed(self, hashes: np.ndarray) -> dict[int, list[tuple[int, list[int]]]]:
        flat = hashes.ravel()
        found: dict[int, list[tuple[int, list[int]]]] = {}
        for level in (self._merged, self._recent):
            for pos, numbers in level.hits(flat):
                row, band = divmod(pos, self.bands)
                found.setdefault(row, []).append((band, numbers.tolist()))
        return found

    def _read_back(self, proposed: dict[int, list[tuple[int, list[int]]]]) -> None:
        """With a reader, load the signatures of the older texts the band hashes propose."""
        if self._reader is None:
            return
        start, hot = self._start(), self._hot
        wanted = sorted({number for found in proposed.values() for _, numbers in found
                         for number in numbers if start <= number < hot})
        missing = []
        for number in wanted:  # templated kinds propose the same texts step after step
            sig = self._read.get(number)
            if sig is None:
                missing.append(number)
            else:
                self._read.move_to_end(number)
                self._held[number] = sig
        if missing:
            texts = list(self._reader([self._key(number) for number in missing]))
            for number, sig in zip(missing, signatures(texts, self.config), strict=True):
                self._held[number] = self._read[number] = sig.copy()
            while len(self._read) > READ_CACHE:
                self._read.popitem(last=False)

    def _verify(self, sig: np.ndarray, proposed: list[tuple[int, list[int]]]) -> int | None:
        """Return the earliest proposed text whose band and estimated Jaccard match, or None."""
        start, r = self._start(), self.rows
        candidates: set[int] = set()
        for band, numbers in proposed:
            lo, hi = band * r, (band + 1) * r
            for number in numbers:
                if number >= start and number not in candidates \
                        and np.array_equal(self._signature(number)[lo:hi], sig[lo:hi]):
                    candidates.add(number)
        for number in sorted(candidates):
            if float(np.mean(self._signature(number) == sig)) >= self.threshold:
                return number
        return None

    def _store(self, key: str, sig: np.ndarray) -> int:
        number = self._count
        self._keys.append(key)
        self._count += 1
        block, row = divmod(number - self._hot, BLOCK)
        if block == len(self._blocks):
            self._blocks.append(np.empty((min(BLOCK, 64), sig.size), dtype=np.uint32))
        elif row == len(self._blocks[block]):
            grown = np.empty((min(BLOCK, 2 * row), sig.size), dtype=np.uint32)
            grown[:row] = self._blocks[block]
            self._blocks[block] = grown
        self._blocks[block][row] = sig
        return number

    def _settle(self, hashes: np.ndarray, numbers: list[int]) -> None:
        """Index a call's new texts and let texts out of reach go."""
        self._held = {}
        start = self._start()
        stale = (start - self._first) // BLOCK
        if stale:
            self._keys.drop(stale)
            self._first += stale * BLOCK
        hot = start if self._reader is None else max(start, self._count - HOT)
        cold = (hot - self._hot) // BLOCK
        if cold:
            del self._blocks[:cold]
            self._hot += cold * BLOCK
        if numbers:
            flat = hashes.ravel()
            repeated = np.repeat(np.asarray(numbers, dtype=np.int64), self.bands)
            if len(numbers) >= MERGE:
                self._merged.add(flat, repeated, self._first)
            else:
                self._recent.add(flat, repeated, self._first)
        if self._recent.hashes.size >= MERGE * self.bands:
            self._merged.add(self._recent.hashes, self._recent.numbers, self._first)
            self._recent = _Sorted()

    def check_and_add_many(self, items: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each (key, text) in order, return the key it duplicates, or None after indexing it."""
        sigs = signatures([text for _, text in items], self.config)
        hashes = band_hashes(sigs, self.bands, self.rows)
        words = (sigs != _EMPTY).any(axis=1).tolist()
        proposed = {i: found for i, found in self._proposed(hashes).items() if words[i]}
        self._read_back(proposed)
        # another text of this call may share a band hash
        _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
        shared = cast(list[bool], (counts[inverse.reshape(hashes.shape)] > 1).any(axis=1).tolist())
        in_call: dict[int, list[int]] = {}
        kept: list[int] = []
        flags: list[str | None] = []
        for i, (key, _) in enumerate(items):
            found = proposed.get(i, [])
            values = hashes[i].tolist() if shared[i] else []
            for band, value in enumerate(values):
                numbers = in_call.get(value)
                if numbers:
                    found = [*found, (band, numbers)]
            original = self._verify(sigs[i], found) if found and words[i] else None
            if original is not None:
                flags.append(self._key(original))
                continue
            number = self._store(key, sigs[i])
            for value in values:
                in_call.setdefault(value, []).append(number)
            kept.append(i)
            flags.append(None)
        self._settle(hashes[kept], list(range(self._count - len(kept), self._count)))
        return flags

    def add_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Index every (key, text) without checking; keys must be unique."""
        for lo in range(0, len(items), BULK):
            chunk = items[lo : lo + BULK]
            sigs = signatures([text for _, text in chunk], self.config)
            numbers = [self._store(key, sig) for (key, _), sig in zip(chunk, sigs, strict=True)]
            self._settle(band_hashes(sigs, self.bands, self.rows), numbers)

    def find(self, text: str) -> str | None:
        """Return the key of the earliest indexed text at or above the threshold, if any."""
        sig = signatures([text], self.config)
        if not (sig[0] != _EMPTY).any():
            return None
        proposed = self._proposed(band_hashes(sig, self.bands, self.rows))
        self._read_back(proposed)
        number = self._verify(sig[0], proposed.get(0, []))
        self._held = {}
        return None if number is None else self._key(number)

    def add(self, key: str, text: str) -> None:
        """Index text under key; keys must be unique."""
        self.add_many([(key, text)])

    def check_and_add(self, key: str, text: str) -> str | None:
        """Return the key text duplicates, or None after indexing it."""
        return self.check_and_add_many([(key, text)])[0]


class IndexesByKind(dict[str, NearDuplicateIndex]):
    """One index per emission kind, made on first use with the same settings."""

    def __init__(self, *, max_items: int | None = None, texts: TextReader | None = None) -> None:
        super().__init__()
        self.max_items = max_items
        self.texts = texts

    def __missing__(self, kind: str) -> NearDuplicateIndex:
        index = self[kind] = NearDuplicateIndex(max_items=self.max_items, texts=self.texts)
        return index

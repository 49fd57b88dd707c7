"""Incremental near-duplicate detection (MinHash LSH) for streams of texts.

Used where items arrive one batch at a time and must be flagged at once: emissions in each
simulation step, personas created by expansion. The paper's settings are the defaults: 1-gram
(word) features, 128 permutations, Jaccard threshold 0.9. The earliest text is kept; later
near-duplicates point to it.

Signatures come from ``personas.minhash.signatures`` (vectorised, bit-identical to datasketch's
``MinHash``), banded with datasketch's optimal (bands, rows) and verified by estimated Jaccard,
so the flags equal those of ``datasketch.MinHashLSH`` plus verification, at a fraction of the
cost per text.

Memory. A run indexes every kept emission of every kind for the whole run, so what the index
holds per text decides how memory grows with run length (bench/bench_memory.py). Per text it
holds one 64-bit hash per LSH band, in two sorted numpy arrays, and its key, packed into one
string per block of keys: no Python object per text and band (a bytes key, a bucket list, an
int), which is what cost the most. The newest texts wait in a small dict until enough of them
are merged into the sorted arrays at once (one merge per text would copy the arrays each time).
A band hash only proposes a candidate: it counts when its band's values equal the query's, so
the candidates, and the flags, are exactly those of exact band buckets.

Verifying a candidate needs its whole signature (the estimated Jaccard compares all 128
values), which would be most of what is left per text. Where the texts are kept anyway, as a
run keeps its emissions in DuckDB, a ``texts`` reader lets the index keep none: each call reads
back the few texts its band hashes propose and recomputes their signatures (deterministic, so
the flags do not change). Without a reader (persona expansion, synthesis jobs) signatures are
kept as rows of uint32 blocks.

Evicting old texts would bound memory outright but changes flags (a text could no longer match
one from long ago), so it is opt-in: ``max_items`` matches against the latest texts only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from personas.minhash import MinHashConfig, lsh_params, signatures, tokenize

_EMPTY = np.iinfo(np.uint32).max
_U64 = np.uint64
_MIX1 = _U64(0xFF51AFD7ED558CCD)
_MIX2 = _U64(0xC4CEB9FE1A85EC53)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
BLOCK = 1024  # texts per signature block: the unit of growth and of eviction
MERGE = 2048  # texts kept in the dict of newest texts before a merge into the sorted arrays
BULK = 65_536  # texts per chunk of a bulk load

TextReader = Callable[[Sequence[str]], Sequence[str]]


def word_ngrams(text: str, n: int = 1) -> set[str]:
    """Lower-cased word n-grams of ``text`` (1-grams by default, as in the paper)."""
    words = tokenize(text)
    if n == 1:
        return set(words)
    return {" ".join(words[i : i + n]) for i in range(max(0, len(words) - n + 1))}


def _fmix64(x: np.ndarray) -> np.ndarray:
    """Murmur3's 64-bit finaliser (wrapping uint64)."""
    x = x ^ (x >> _U64(33))
    x = x * _MIX1
    x = x ^ (x >> _U64(33))
    x = x * _MIX2
    return x ^ (x >> _U64(33))


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one hash per LSH band of each signature, the band number mixed in."""
    out = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            key = np.full(sigs.shape[0], _fmix64(_GOLDEN * _U64(b + 1)), dtype=np.uint64)
            for col in range(b * rows, (b + 1) * rows):
                key = _fmix64(key ^ sigs[:, col].astype(np.uint64))
            out[:, b] = key
    return out


class _Keys:
    """Keys by text number, a full block packed into one string plus offsets."""

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


class NearDuplicateIndex:
    """MinHash LSH over the texts seen so far; ``check_and_add`` flags and indexes in one go.

    ``max_items`` (None: no limit) makes a text match only the latest ``max_items`` texts indexed
    before it and lets older ones go, bounding memory. ``texts`` reads back the texts of keys
    indexed by earlier calls, in order (a run reads its emissions table); given it, the index
    keeps no signatures between calls and re-derives those a call needs. See the module doc.
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
        self._count = 0  # texts ever indexed: a text's number is its position in that order
        self._first = 0  # number of the first text still stored (a multiple of BLOCK)
        self._blocks: list[np.ndarray] = []  # signatures, BLOCK rows each (the last may be short)
        self._reader = texts
        self._held: dict[int, np.ndarray] = {}  # with a reader: signatures this call needs
        self._keys = _Keys()
        self._hashes = np.empty(0, dtype=np.uint64)  # band hashes, sorted ...
        self._numbers = np.empty(0, dtype=np.int64)  # ... and the text each belongs to
        self._new: dict[int, list[int]] = {}  # band hash -> numbers, not merged yet
        self._new_hashes: list[np.ndarray] = []
        self._new_numbers: list[int] = []

    def __len__(self) -> int:
        return self._count - self._start()

    def _start(self) -> int:
        """Number of the oldest text a new text may match."""
        return 0 if self.max_items is None else max(0, self._count - self.max_items)

    def _signature(self, number: int) -> np.ndarray:
        if self._reader is not None:
            return self._held[number]
        block, row = divmod(number - self._first, BLOCK)
        return self._blocks[block][row]

    def _key(self, number: int) -> str:
        return self._keys.get(*divmod(number - self._first, BLOCK))

    # -- lookup --------------------------------------------------------------------------------
    def _merged_hits(self, hashes: np.ndarray) -> list[list[tuple[int, np.ndarray]]]:
        """For each row of ``hashes``: (band, numbers) found in the sorted arrays."""
        hits: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(hashes.shape[0])]
        if self._hashes.size == 0 or hashes.size == 0:
            return hits
        flat = hashes.ravel()
        lo = np.searchsorted(self._hashes, flat, side="left")
        hi = np.searchsorted(self._hashes, flat, side="right")
        for pos in np.flatnonzero(hi > lo).tolist():
            row, band = divmod(pos, self.bands)
            hits[row].append((band, self._numbers[lo[pos] : hi[pos]]))
        return hits

    def _read_back(self, sigs: np.ndarray, hashes: np.ndarray,
                   hits: list[list[tuple[int, np.ndarray]]]) -> None:
        """With a reader: the signatures of every earlier text the call's band hashes propose."""
        if self._reader is None:
            return
        wanted: set[int] = set()
        for i in np.flatnonzero((sigs != _EMPTY).any(axis=1)).tolist():  # empty texts match nothing
            for _, numbers in hits[i]:
                wanted.update(numbers.tolist())
            for value in hashes[i].tolist():
                wanted.update(self._new.get(value, ()))
        start = self._start()
        numbers = sorted(number for number in wanted if number >= start)
        if numbers:
            texts = list(self._reader([self._key(number) for number in numbers]))
            self._held.update(zip(numbers, signatures(texts, self.config), strict=True))

    def _find(self, sig: np.ndarray, hashes: np.ndarray,
              hits: list[tuple[int, np.ndarray]]) -> int | None:
        if sig[0] == _EMPTY and (sig == _EMPTY).all():
            return None  # a text without words matches nothing
        start, r = self._start(), self.rows
        proposed = [(band, numbers.tolist()) for band, numbers in hits]
        for band, value in enumerate(hashes.tolist()):
            numbers = self._new.get(value)
            if numbers:
                proposed.append((band, numbers))
        candidates: set[int] = set()
        for band, numbers in proposed:
            lo, hi = band * r, (band + 1) * r
            for number in numbers:
                if number >= start and number not in candidates \
                        and np.array_equal(self._signature(number)[lo:hi], sig[lo:hi]):
                    candidates.add(number)
        for number in sorted(candidates):  # earliest first
            if float(np.mean(self._signature(number) == sig)) >= self.threshold:
                return number
        return None

    # -- storage -------------------------------------------------------------------------------
    def _store(self, key: str, sig: np.ndarray) -> int:
        """Keep a text's signature and key; returns its number."""
        number = self._count
        self._keys.append(key)
        self._count += 1
        if self._reader is not None:  # read back when needed: kept only for this call
            self._held[number] = sig
            return number
        block, row = divmod(number - self._first, BLOCK)
        if block == len(self._blocks):
            self._blocks.append(np.empty((min(BLOCK, 64), sig.size), dtype=np.uint32))
        elif row == len(self._blocks[block]):  # the last block grows by doubling up to BLOCK
            grown = np.empty((min(BLOCK, 2 * row), sig.size), dtype=np.uint32)
            grown[:row] = self._blocks[block]
            self._blocks[block] = grown
        self._blocks[block][row] = sig
        return number

    def _insert(self, key: str, sig: np.ndarray, hashes: np.ndarray) -> None:
        number = self._store(key, sig)
        for value in hashes.tolist():
            self._new.setdefault(value, []).append(number)
        self._new_hashes.append(hashes)
        self._new_numbers.append(number)

    def _settle(self) -> None:
        """Between batches: let texts out of reach go; merge the newest texts when enough wait."""
        self._held = {}
        if self.max_items is not None:
            stale = (self._start() - self._first) // BLOCK
            if stale:
                del self._blocks[:stale]
                self._keys.drop(stale)
                self._first += stale * BLOCK
        if len(self._new_numbers) >= MERGE:
            self._flush()

    def _flush(self) -> None:
        """Merge every text waiting in the dict into the sorted arrays."""
        if self._new_numbers:
            self._merge(np.stack(self._new_hashes), np.asarray(self._new_numbers, dtype=np.int64))
        self._new.clear()
        self._new_hashes = []
        self._new_numbers = []

    def _merge(self, hashes: np.ndarray, numbers: np.ndarray) -> None:
        """Merge (n, bands) hashes of texts ``numbers`` into the sorted arrays."""
        keep = self._numbers >= self._first
        old_hashes, old_numbers = self._hashes[keep], self._numbers[keep]
        flat = hashes.ravel()
        order = np.argsort(flat, kind="stable")
        new_hashes, new_numbers = flat[order], np.repeat(numbers, self.bands)[order]
        at = np.searchsorted(old_hashes, new_hashes, side="right")
        self._hashes = np.insert(old_hashes, at, new_hashes)
        self._numbers = np.insert(old_numbers, at, new_numbers)

    # -- public --------------------------------------------------------------------------------
    def check_and_add_many(self, items: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each (key, text) in order: the key it duplicates, or None after indexing it."""
        sigs = signatures([text for _, text in items], self.config)
        hashes = band_hashes(sigs, self.bands, self.rows)
        hits = self._merged_hits(hashes)  # the sorted arrays do not change during the batch
        self._read_back(sigs, hashes, hits)
        flags: list[str | None] = []
        for i, (key, _) in enumerate(items):
            original = self._find(sigs[i], hashes[i], hits[i])
            if original is None:
                self._insert(key, sigs[i], hashes[i])
                flags.append(None)
            else:
                flags.append(self._key(original))
        self._settle()
        return flags

    def add_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Index every (key, text) without checking (keys must be unique)."""
        if len(items) < MERGE:
            sigs = signatures([text for _, text in items], self.config)
            hashes = band_hashes(sigs, self.bands, self.rows)
            for i, (key, _) in enumerate(items):
                self._insert(key, sigs[i], hashes[i])
            self._settle()
            return
        for lo in range(0, len(items), BULK):  # a bulk load (a resume, a hub): straight into
            chunk = items[lo : lo + BULK]      # the sorted arrays, a bounded chunk at a time
            sigs = signatures([text for _, text in chunk], self.config)
            numbers = np.fromiter((self._store(key, sig) for (key, _), sig
                                   in zip(chunk, sigs, strict=True)), dtype=np.int64, count=len(chunk))
            self._merge(band_hashes(sigs, self.bands, self.rows), numbers)
            self._settle()

    def find(self, text: str) -> str | None:
        """Key of the earliest indexed text whose estimated Jaccard is >= threshold, if any."""
        sig = signatures([text], self.config)
        hashes = band_hashes(sig, self.bands, self.rows)
        hits = self._merged_hits(hashes)
        self._read_back(sig, hashes, hits)
        number = self._find(sig[0], hashes[0], hits[0])
        self._held = {}
        return None if number is None else self._key(number)

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key`` (keys must be unique)."""
        self.add_many([(key, text)])

    def check_and_add(self, key: str, text: str) -> str | None:
        """Return the key ``text`` duplicates, or index it under ``key`` and return None."""
        return self.check_and_add_many([(key, text)])[0]


class IndexesByKind(dict[str, NearDuplicateIndex]):
    """One index per emission kind, each made on first use with the same settings."""

    def __init__(self, *, max_items: int | None = None, texts: TextReader | None = None) -> None:
        super().__init__()
        self.max_items = max_items
        self.texts = texts

    def __missing__(self, kind: str) -> NearDuplicateIndex:
        index = self[kind] = NearDuplicateIndex(max_items=self.max_items, texts=self.texts)
        return index

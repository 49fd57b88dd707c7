"""Stage 1 of persona dedup: vectorised MinHash + LSH over word n-grams, bit-identical to datasketch.

Bands are chosen for recall (16 x 8 proposes 99.99% of pairs at J = 0.9, datasketch's 5 x 25
only 31%); candidates are checked by exact Jaccard.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import repeat
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "FeatureSets",
    "MinHashConfig",
    "band_bucket_pairs",
    "band_keys",
    "bucket_pairs",
    "candidate_pairs",
    "duplicates_from_signatures",
    "exact_jaccard",
    "lsh_params",
    "minhash_duplicates",
    "prefilter_floor",
    "recall_lsh_params",
    "signature_keys",
    "signatures",
    "sketch",
    "slot_low_bytes",
    "slot_prefilter",
    "split_bucket_pairs",
    "split_slots",
    "tokenize",
    "use_kernels",
    "verified_pairs",
]

_TOKEN_RE = re.compile(r"\w+")
_T = TypeVar("_T")
_BATCH_RE = re.compile(r"\w+|\x00")
TEXT_SEPARATOR = "\x00"
_U64 = np.uint64
_MIX1 = _U64(0xFF51AFD7ED558CCD)
_MIX2 = _U64(0xC4CEB9FE1A85EC53)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_EMPTY = np.iinfo(np.uint32).max
_BATCH_TEXTS = 50_000
_GATHER_ROWS = 1 << 17


@dataclass(frozen=True, kw_only=True)
class MinHashConfig:
    """Settings of stage 1; the defaults are the Persona Hub paper's.

    Attributes:
        num_perm: Number of hash permutations (signature length).
        threshold: Jaccard similarity at or above which two texts are duplicates.
        ngram: Word n-gram size of the features (1 = bag of words).
        seed: Seeds the permutations.
        max_bucket_pairs: Each text in an LSH bucket is compared with at most this many of the
            bucket's earliest texts, and, in a bucket of more, with as many of the earliest that
            also share 8 further head slots (``split_bucket_pairs``).
        threads: Threads for signing and bucketing (numpy releases the GIL in its big
            operations); 0 = one per core this process may use, 1 = no threads. The marks do
            not depend on it.
    """

    num_perm: int = 128
    threshold: float = 0.9
    ngram: int = 1
    seed: int = 1
    max_bucket_pairs: int = 2
    threads: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.num_perm, int) or not 16 <= self.num_perm <= 1024:
            raise ValueError(f"num_perm must be an int in [16, 1024], got {self.num_perm!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not isinstance(self.ngram, int) or not 1 <= self.ngram <= 8:
            raise ValueError(f"ngram must be an int in [1, 8], got {self.ngram!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not isinstance(self.max_bucket_pairs, int) or self.max_bucket_pairs < 1:
            raise ValueError(f"max_bucket_pairs must be >= 1, got {self.max_bucket_pairs!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be a non-negative int, got {self.threads!r}")

    @property
    def thread_count(self) -> int:
        """Return the threads to use: threads, or with 0 the cores this process may run on."""
        if self.threads:
            return self.threads
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity else os.cpu_count() or 1


def tokenize(text: str) -> list[str]:
    """Return lower-cased word tokens."""
    return _TOKEN_RE.findall(text.lower())


def _fmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> _U64(33))
    x = x * _MIX1
    x = x ^ (x >> _U64(33))
    x = x * _MIX2
    return x ^ (x >> _U64(33))


def token_hash(token: str) -> int:
    """Hash a token to 32 bits as datasketch does (SHA-1, first 4 bytes, little-endian)."""
    return int.from_bytes(hashlib.sha1(token.encode("utf-8")).digest()[:4], "little")


def token_hashes(tokens: Sequence[str]) -> np.ndarray:
    """Return token_hash of each token as uint64, the digests' first 4 bytes read in one go."""
    sha1 = hashlib.sha1
    heads = b"".join([sha1(token.encode("utf-8")).digest()[:4] for token in tokens])
    return np.frombuffer(heads, dtype="<u4").astype(np.uint64)


def _fmix32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


@lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw datasketch's affine permutations a*h + b mod 2^32."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _permuted(
    hashes: np.ndarray, config: MinHashConfig, out: np.ndarray | None = None
) -> np.ndarray:
    a, b = _permutations(config.num_perm, config.seed)
    if out is None:
        out = np.empty((hashes.size, config.num_perm), dtype=np.uint32)
    step = max(1, (1 << 22) // config.num_perm)
    with np.errstate(over="ignore"):
        for lo in range(0, hashes.size, step):
            h = _fmix32((hashes[lo : lo + step] & _U64(0xFFFFFFFF)).astype(np.uint32))
            rows = out[lo : lo + step]
            np.multiply(h[:, None], a, out=rows)
            np.add(rows, b, out=rows)
    return out


class _Ids(dict[str, int]):

    def __init__(self, first: dict[str, int]) -> None:
        super().__init__(first)
        self._new: list[str] = []

    def __missing__(self, token: str) -> int:
        new_id = len(self)
        self[token] = new_id
        self._new.append(token)
        return new_id

    def take_new(self) -> list[str]:
        """Return tokens numbered since the last call (walking the dict was quadratic on templated text)."""
        new, self._new = self._new, []
        return new


class _Vocabulary:
    """Token ids, with permuted rows cached for the first _TABLE_ROWS tokens.

    The cap keeps the table at 64 MiB: templated personas bring a new token each, cheaper to recompute.
    """

    def __init__(self, config: MinHashConfig) -> None:
        self.config = config
        self.ids = _Ids({TEXT_SEPARATOR: 0})
        self._hashes = np.zeros(1024, dtype=np.uint64)
        self._table = np.full((1024 if config.ngram == 1 else 1, config.num_perm), _EMPTY,
                              dtype=np.uint32)
        self.size = 1

    @property
    def hashes(self) -> np.ndarray:
        return self._hashes[: self.size]

    @property
    def table(self) -> np.ndarray:
        return self._table[: self.table_rows] if self.config.ngram == 1 else self._table

    @property
    def table_rows(self) -> int:
        return min(self.size, _TABLE_ROWS)

    def lookup(self, tokens: list[str]) -> np.ndarray:
        known = self.size
        ids = np.fromiter(map(self.ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        total = len(self.ids)
        if total > known:
            new = self.ids.take_new()
            if total > self._hashes.size:
                capacity = max(total, 2 * self._hashes.size)
                self._hashes = np.resize(self._hashes, capacity)
            fresh = token_hashes(new)
            self._hashes[known:total] = fresh
            rows = min(total, _TABLE_ROWS)
            if self.config.ngram == 1 and rows > known:
                if rows > self._table.shape[0]:
                    capacity = min(_TABLE_ROWS, max(rows, 2 * self._table.shape[0]))
                    grown = np.empty((capacity, self.config.num_perm), dtype=np.uint32)
                    grown[:known] = self._table[:known]
                    self._table = grown
                _permuted(fresh[: rows - known], self.config, self._table[known:rows])
            self.size = total
        return ids


def _ascii_table() -> bytes:
    """Build a bytes.translate table that leaves exactly the lower-cased \\w+ tokens."""
    table = bytearray(b" " * 256)
    for c in range(128):
        ch = chr(c)
        if re.match(r"\w", ch) or ch == TEXT_SEPARATOR:
            table[c] = ord(ch.lower())
    return bytes(table)


_ASCII_TABLE = _ascii_table()
_JOIN = f" {TEXT_SEPARATOR} "


def batch_tokens(texts: Sequence[str]) -> list[str]:
    """Return all lower-cased tokens of a batch, texts separated by TEXT_SEPARATOR."""
    joined = _JOIN.join(texts)
    if joined.count(TEXT_SEPARATOR) != len(texts) - 1:  # a text carries the separator itself
        joined = _JOIN.join(t.replace(TEXT_SEPARATOR, " ") for t in texts)
    if joined.isascii():  # fast path: one C-level byte translation, then split
        return joined.encode("ascii").translate(_ASCII_TABLE).decode("ascii").split()
    return _BATCH_RE.findall(joined.lower())


def batch_codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return a batch's tokens as codes into its distinct tokens, each text's count, the distinct tokens.

    The tokens are tokenize()'s. An ASCII batch is cut by numpy and numbered by pyarrow's
    dictionary encoding, out of the GIL; any other batch goes through the regex.
    """
    codes, counts, dictionary = _batch_dictionary(texts)
    return codes, counts, dictionary.to_pylist()


def _batch_dictionary(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Return batch_codes' codes and counts, and the distinct tokens as an Arrow array."""
    joined = _JOIN.join(texts)
    if joined.count(TEXT_SEPARATOR) != len(texts) - 1:  # a text carries the separator itself
        joined = _JOIN.join(t.replace(TEXT_SEPARATOR, " ") for t in texts)
    if joined.isascii():
        tokens = _ascii_tokens(joined.encode("ascii").translate(_ASCII_TABLE))
    else:
        tokens = pa.array(_BATCH_RE.findall(joined.lower()), type=pa.string())
    encoded = pc.dictionary_encode(tokens)
    dictionary = encoded.dictionary
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    separator = pc.index(dictionary, TEXT_SEPARATOR).as_py()
    if separator < 0:  # one text
        return codes, np.array([codes.size], dtype=np.int64), dictionary
    is_sep = codes == separator
    bounds = np.concatenate([[-1], np.flatnonzero(is_sep), [codes.size]])
    return codes[~is_sep], np.diff(bounds) - 1, dictionary


def _ascii_tokens(data: bytes) -> pa.StringArray:
    """Cut translated bytes (word bytes and spaces) into their runs of word bytes."""
    buf = np.frombuffer(data, dtype=np.uint8)
    word = buf != ord(" ")
    edges = np.flatnonzero(np.diff(word.view(np.int8), prepend=np.int8(0), append=np.int8(0)))
    lengths = edges[1::2] - edges[0::2]
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    chars = buf[word]
    return pa.LargeStringArray.from_buffers(lengths.size, pa.py_buffer(offsets),
                                            pa.py_buffer(chars))


def _batch_ids(texts: Sequence[str], vocab: _Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    ids = vocab.lookup(batch_tokens(texts))
    is_sep = ids == 0
    bounds = np.concatenate([[-1], np.flatnonzero(is_sep), [ids.size]])
    return ids[~is_sep], np.diff(bounds) - 1


def _ngram_features(
    token_hashes: np.ndarray, counts: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    total = token_hashes.size
    starts = np.cumsum(counts) - counts
    text_of = np.repeat(np.arange(counts.size), counts)
    pos_in_text = np.arange(total) - starts[text_of]
    remaining = counts[text_of] - pos_in_text
    combined = token_hashes.copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            nxt = np.zeros(total, dtype=np.uint64)
            nxt[:-k] = token_hashes[k:]
            use = remaining > k
            combined = np.where(use, _fmix64(combined * _GOLDEN + nxt), combined)
    keep = (remaining >= n) | ((counts[text_of] < n) & (pos_in_text == 0))
    feat_counts = np.bincount(text_of[keep], minlength=counts.size)
    return combined[keep], feat_counts


_SEGMENT_ROWS = 2048  # texts folded at a time: their rows and one gather stay in cache
_TABLE_ROWS = 1 << 17  # tokens whose permuted rows the vocabulary keeps (64 MiB at 128 perms)


def _segment_min(
    table: np.ndarray, index: np.ndarray, counts: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Return each text's column-wise min over its features' rows, folded in cache-sized segments."""
    n = counts.size
    width = table.shape[1]
    if out is None:
        out = np.empty((n, width), dtype=np.uint32)
    if n == 0:
        return out
    order = np.argsort(-counts, kind="stable")
    sorted_counts = counts[order]
    starts = (np.cumsum(counts) - counts)[order]
    acc = np.empty((min(n, _SEGMENT_ROWS), width), dtype=np.uint32)
    buf = np.empty_like(acc)
    for lo in range(0, n, _SEGMENT_ROWS):
        hi = min(n, lo + _SEGMENT_ROWS)
        chunk_counts, chunk_starts, rows = sorted_counts[lo:hi], starts[lo:hi], acc[: hi - lo]
        longest = int(chunk_counts[0])
        active = np.searchsorted(-chunk_counts, -np.arange(max(longest, 1)), side="left")
        have = int(active[0]) if longest else 0
        rows[have:] = _EMPTY
        # mode=clip: ids are in range, and mode=raise copies through a buffer
        if have:
            np.take(table, index[chunk_starts[:have]], axis=0, out=rows[:have], mode="clip")
        for k in range(1, longest):
            m = int(active[k])
            np.take(table, index[chunk_starts[:m] + k], axis=0, out=buf[:m], mode="clip")
            np.minimum(rows[:m], buf[:m], out=rows[:m])
        out[order[lo:hi]] = rows
    return out


@dataclass(frozen=True)
class FeatureSets:
    """Each text's features as packed 32-bit values, for the exact Jaccard check.

    An estimate from 128 slots misses about half the pairs at J = 0.9.
    """

    values: np.ndarray
    offsets: np.ndarray
    sorted_distinct: bool = False  # each text's values sorted, without repeats

    def __len__(self) -> int:
        return self.offsets.size - 1

    @staticmethod
    def from_counts(values: np.ndarray, counts: np.ndarray) -> FeatureSets:
        offsets = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return FeatureSets(values.astype(np.uint32, copy=False), offsets)

    @staticmethod
    def concat(parts: Sequence[FeatureSets]) -> FeatureSets:
        if not parts:
            return FeatureSets(np.empty(0, dtype=np.uint32), np.zeros(1, dtype=np.int64))
        counts = np.concatenate([np.diff(p.offsets) for p in parts])
        joined = FeatureSets.from_counts(np.concatenate([p.values for p in parts]), counts)
        return replace(joined, sorted_distinct=all(p.sorted_distinct for p in parts))

    def sorted_sets(self) -> FeatureSets:
        """Return these sets with each text's values sorted and distinct (compiled)."""
        if self.sorted_distinct:
            return self
        from personahub.personas import minhash_kernels

        values, offsets = minhash_kernels.sorted_sets(self.values, self.offsets)
        return FeatureSets(values, offsets, sorted_distinct=True)


def _signatures_of_ids(
    vocab: _Vocabulary, ids: np.ndarray, counts: np.ndarray, out: np.ndarray
) -> None:
    """Write signatures of a batch of 1-gram texts: cached rows plus per-batch rows for the rest."""
    tail = ids >= vocab.table_rows
    if not tail.any():
        _segment_min(vocab.table, ids, counts, out)
        return
    text_of = np.repeat(np.arange(counts.size), counts)
    _segment_min(vocab.table, ids[~tail], np.bincount(text_of[~tail], minlength=counts.size),
                 out)
    uniq, inverse = np.unique(ids[tail], return_inverse=True)
    rows = _permuted(vocab.hashes[uniq], vocab.config)
    folded = _segment_min(rows, inverse.ravel(), np.bincount(text_of[tail], minlength=counts.size))
    np.minimum(out, folded, out=out)


def sketch(texts: Sequence[str], config: MinHashConfig, *, compiled: bool | None = None
           ) -> tuple[np.ndarray, FeatureSets]:
    """Return signatures and feature sets of texts, in one pass.

    Args:
        texts: The texts.
        config: The stage's settings.
        compiled: Fold signatures with the compiled kernel (the same signatures); None decides
            by the number of texts (``use_kernels``).

    Returns:
        The signatures, shape (n, num_perm), and each text's feature set.
    """
    sigs, feats = _sketch(texts, config, with_features=True, compiled=compiled)
    assert feats is not None
    return sigs, feats


def signatures(texts: Sequence[str], config: MinHashConfig) -> np.ndarray:
    """Return MinHash signatures, shape (n, num_perm); a text without words never matches."""
    return _sketch(texts, config, with_features=False)[0]


def _sketch(
    texts: Sequence[str], config: MinHashConfig, *, with_features: bool,
    compiled: bool | None = None,
) -> tuple[np.ndarray, FeatureSets | None]:
    """Sign texts in batches of _BATCH_TEXTS, each batch on its own in a pool thread.

    A batch is tokenised, numbered and folded by numpy and pyarrow, which release the GIL; only
    the batch's distinct tokens pass through Python (their SHA-1), so the threads overlap.
    Compiled, the kernels hash and fold out of the GIL as well.
    """
    n = len(texts)
    out = np.empty((n, config.num_perm), dtype=np.uint32)
    hashes = _HashCache()
    compiled = use_kernels(n) if compiled is None else compiled

    def one(lo: int) -> FeatureSets | None:
        return _sketch_batch(texts[lo : lo + _BATCH_TEXTS], config, hashes,
                             out[lo : lo + _BATCH_TEXTS], with_features, compiled)

    parts = list(_in_threads(one, range(0, n, _BATCH_TEXTS), config.thread_count))
    if not with_features:
        return out, None
    return out, FeatureSets.concat([p for p in parts if p is not None])


class _HashCache(dict[str, int]):
    """Map tokens to token_hash, up to _CACHED_TOKENS of them (templated text brings a new token each)."""

    def of(self, tokens: list[str]) -> np.ndarray:
        """Return the hashes of distinct tokens, hashing only those not cached."""
        out = np.fromiter(map(self.get, tokens, repeat(-1, len(tokens))), dtype=np.int64,
                          count=len(tokens))
        missing = np.flatnonzero(out < 0)
        if missing.size:
            new = [tokens[i] for i in missing.tolist()]
            fresh = token_hashes(new)
            out[missing] = fresh
            if len(self) < _CACHED_TOKENS:
                self.update(zip(new, fresh.tolist(), strict=True))
        return out.astype(np.uint64)


_CACHED_TOKENS = 1 << 20


def _sketch_batch(
    texts: Sequence[str], config: MinHashConfig, cache: _HashCache, out: np.ndarray,
    with_features: bool, compiled: bool,
) -> FeatureSets | None:
    """Write the signatures of one batch into out; return its feature sets if asked.

    Compiled, the distinct tokens are hashed and the signatures folded by the kernels, and no
    token becomes a Python string; otherwise by hashlib (cached) and numpy. The same signatures.
    """
    codes, counts, dictionary = _batch_dictionary(texts)
    fold: Callable[[np.ndarray, np.ndarray, np.ndarray, MinHashConfig, np.ndarray], None]
    if compiled:
        from personahub.personas import minhash_kernels

        token_hashes_, fold = minhash_kernels.token_hashes(dictionary), _compiled_fold
    else:
        token_hashes_, fold = cache.of(dictionary.to_pylist()), _numpy_fold
    if config.ngram == 1:
        fold(token_hashes_, codes, counts, config, out)
        features = FeatureSets.from_counts(token_hashes_[codes], counts) if with_features else None
    else:
        feats, feat_counts = _ngram_features(token_hashes_[codes], counts, config.ngram)
        uniq, inverse = np.unique(feats, return_inverse=True)
        fold(uniq, inverse.ravel(), feat_counts, config, out)
        features = (FeatureSets.from_counts(feats & _U64(0xFFFFFFFF), feat_counts)
                    if with_features else None)
    # compiled, the exact check reads sorted sets: sorting them here runs in the batch's thread
    return features.sorted_sets() if compiled and features is not None else features


def _numpy_fold(hashes: np.ndarray, codes: np.ndarray, counts: np.ndarray, config: MinHashConfig,
                out: np.ndarray) -> None:
    """Write the signatures of texts whose features are codes into hashes, by numpy."""
    _segment_min(_permuted(hashes, config), codes, counts, out)


def _compiled_fold(hashes: np.ndarray, codes: np.ndarray, counts: np.ndarray,
                   config: MinHashConfig, out: np.ndarray) -> None:
    """Write _numpy_fold's signatures by the compiled kernel (``fold_signatures``)."""
    from personahub.personas import minhash_kernels

    a, b = _permutations(config.num_perm, config.seed)
    with np.errstate(over="ignore"):
        mixed = _fmix32((hashes & _U64(0xFFFFFFFF)).astype(np.uint32))
    minhash_kernels.fold_signatures(mixed, codes.astype(np.intp, copy=False),
                                    counts.astype(np.int64, copy=False), a, b, out)


def _in_threads(fn: Callable[[int], _T], items: Iterable[int], threads: int) -> Iterator[_T]:
    """Yield fn(item) in order, computed by up to `threads` threads."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        yield from pool.map(fn, items)


def _false_positive_area(threshold: float, bands: int, rows: int, grid: np.ndarray) -> float:
    s = grid[grid <= threshold]
    return float(np.trapezoid(1 - (1 - s**rows) ** bands, s))


def _false_negative_area(threshold: float, bands: int, rows: int, grid: np.ndarray) -> float:
    s = grid[grid >= threshold]
    return float(np.trapezoid((1 - s**rows) ** bands, s))


@lru_cache(maxsize=64)
def lsh_params(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """Return (bands, rows) minimising weighted false-positive + false-negative areas, like datasketch."""
    grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, 2001), [threshold]]))
    best, best_err = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            err = false_positive_weight * _false_positive_area(
                threshold, bands, rows, grid
            ) + false_negative_weight * _false_negative_area(threshold, bands, rows, grid)
            if err < best_err:
                best, best_err = (bands, rows), err
    return best


@lru_cache(maxsize=64)
def recall_lsh_params(threshold: float, num_perm: int, miss: float = 1e-3) -> tuple[int, int]:
    """Return (bands, rows): the longest rows still proposing a pair at threshold with P >= 1 - miss.

    A false candidate costs a little time, a missed one recall.
    """
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= 1.0 - miss:
            return bands, rows
    return num_perm, 1


# odd multipliers for combining a band's words
_WORD_MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                              0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                              0x94D049BB133111EB, 0xBF58476D1CE4E5B9], dtype=np.uint64)
_KEY_ROWS = 1 << 16  # texts keyed per chunk: the temporaries stay in cache
_KEY_CHUNK = 1 << 14


def _band_words(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    n = sigs.shape[0]
    per = (rows + 1) // 2
    if rows % 2 == 0 and sigs.dtype == np.uint32 and sigs.strides[1] == 4 and \
            sigs.dtype.byteorder in ("=", "<") and np.little_endian:
        return sigs.view(np.uint64)[:, : bands * per].reshape(n, bands, per)
    words = np.zeros((n, bands, per), dtype=np.uint64)
    used = sigs[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    words[:, :, :] = used[:, :, 0::2]
    words[:, :, : rows // 2] |= used[:, :, 1::2] << _U64(32)
    return words


def _band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    n = sigs.shape[0]
    words = _band_words(sigs, bands, rows)
    per = words.shape[2]
    out = np.empty((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lo in range(0, n, _KEY_ROWS):
            chunk = words[lo : lo + _KEY_ROWS]
            key = chunk[:, :, 0] * _WORD_MULTIPLIERS[0]
            for j in range(1, per):
                key += chunk[:, :, j] * _WORD_MULTIPLIERS[j % _WORD_MULTIPLIERS.size]
            out[lo : lo + _KEY_ROWS] = _fmix64(key)
    return out


def _keys_by_band(sigs: np.ndarray, bands: int, rows: int, threads: int = 1
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Return band keys as (bands, n) and signature keys, in one chunked pass (chunks in threads)."""
    n = sigs.shape[0]
    keys = np.empty((bands, n), dtype=np.uint64)
    signature = np.empty(n, dtype=np.uint64)
    weights = _signature_weights(bands)

    def key_chunk(lo: int) -> None:
        with np.errstate(over="ignore"):
            chunk = _band_keys(sigs[lo : lo + _KEY_CHUNK], bands, rows)
            keys[:, lo : lo + _KEY_CHUNK] = chunk.T
            signature[lo : lo + _KEY_CHUNK] = _fmix64((chunk * weights).sum(axis=1,
                                                                           dtype=np.uint64))

    for _ in _in_threads(key_chunk, range(0, n, _KEY_CHUNK), threads):
        pass
    return keys, signature


def _shared_keys(keys: np.ndarray) -> np.ndarray:
    """Mask keys that may repeat, by counting low and high bits, so only those few are sorted."""
    maybe = _repeated_bits(keys, high=False)
    kept = np.flatnonzero(maybe)
    if 2 * kept.size < keys.size:  # templated text: most keys repeat, a second pass is waste
        maybe[kept[~_repeated_bits(keys[kept], high=True)]] = False
    return maybe


def _repeated_bits(keys: np.ndarray, *, high: bool) -> np.ndarray:
    bits = max(10, (4 * keys.size).bit_length())
    shift = _U64(64 - bits if high else 0)
    slot = ((keys >> shift) & _U64((1 << bits) - 1)).astype(np.intp)
    counts = np.bincount(slot, minlength=1 << bits)
    return counts[slot] > 1


def _group_order(keys: np.ndarray) -> np.ndarray:
    """Return the positions of keys that may repeat, sorted by key and then position.

    Key bits above the position's are packed with the position into one word for a plain
    np.sort (twice as fast as a stable argsort); if two keys share those bits, a stable argsort
    of the full keys takes over, so the order never depends on the packing.
    """
    pos = np.flatnonzero(_shared_keys(keys))
    if pos.size < 2:
        return pos
    bits = int(pos[-1]).bit_length()
    if bits > 40:
        return pos[np.argsort(keys[pos], kind="stable")]
    shift = _U64(bits)
    packed = ((keys[pos] >> shift) << shift) | pos.astype(np.uint64)
    packed.sort()
    order = (packed & _U64((1 << bits) - 1)).astype(np.intp)
    head = packed >> shift
    full = keys[order]
    if ((full[1:] != full[:-1]) & (head[1:] == head[:-1])).any():  # keys alike in the packed bits
        return pos[np.argsort(keys[pos], kind="stable")]
    return order


def _groups(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each sorted row's group start and its rank in the group."""
    new_group = np.ones(sorted_keys.size, dtype=bool)
    new_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
    positions = np.arange(sorted_keys.size)
    group_start = np.maximum.accumulate(np.where(new_group, positions, 0))
    return group_start, positions - group_start


def _bucket_pairs(keys: np.ndarray, members: np.ndarray, max_pairs: int) -> np.ndarray:
    """Return (earlier, later) pairs sharing a key, each later text with up to max_pairs earliest ones."""
    order = _group_order(keys)
    group_start, rank = _groups(keys[order])
    return _ranked_pairs(members[order], group_start, rank, max_pairs)


def _ranked_pairs(idx: np.ndarray | None, group_start: np.ndarray, rank: np.ndarray,
                  max_pairs: int, first: int = 0) -> np.ndarray:
    """Return each grouped row paired with the earliest max_pairs rows of its group.

    The pairs hold idx of the rows, or with idx None the rows' positions. group_start and rank
    may be a slice of the rows that starts at position first (group starts are positions).
    """
    earlier: list[np.ndarray] = []
    later: list[np.ndarray] = []
    at = np.flatnonzero(rank > 0)
    for j in range(max_pairs):
        if j:
            at = at[rank[at] > j]
        if at.size == 0:
            break
        earlier.append(group_start[at] + j if idx is None else idx[group_start[at] + j])
        later.append(at + first if idx is None else idx[at + first])
    if not later:
        return np.empty((0, 2), dtype=np.int64)
    out = np.empty((sum(map(len, later)), 2), dtype=np.int64)
    out[:, 0] = np.concatenate(earlier)
    out[:, 1] = np.concatenate(later)
    return out


_SPLIT_SLOTS = 8  # head slots whose 4-bit values split a band's over-full buckets
# rows whose pairs are made and pre-filtered at a time: a bucket of templates, whose size grows
# with the hub, makes many pairs the filter drops, and they are never all held
_PAIR_SLICE_ROWS = 1 << 16


def split_slots(band: int, rows: int, head_slots: int) -> np.ndarray:
    """Return the head slots that split band's over-full buckets: the next band's, within the head.

    They lie outside band's own slots, so texts that fill a bucket by sharing its slots (template
    words) are told apart by others.
    """
    start = ((band + 1) * rows) % head_slots
    return (start + np.arange(min(_SPLIT_SLOTS, head_slots))) % head_slots


def split_bucket_pairs(keys: np.ndarray, members: np.ndarray, head: np.ndarray, slots: np.ndarray,
                       max_pairs: int) -> np.ndarray:
    """Return the pairs a bucket cap would lose, found again in buckets split by more slots.

    A bucket of more than max_pairs + 1 texts compares each later text with its earliest
    max_pairs only, so as buckets of templated texts grow with the hub a near-duplicate's
    original falls past them ever more often. Buckets are split by the 4-bit values of slots
    (head holds each text's 4-bit head slots, packed; rows as keys) and each later text is
    paired with the earliest max_pairs of its split bucket as well: a pair at Jaccard J shares
    the split with probability about J ** len(slots), and split buckets stay small. Only the
    pairs of over-full buckets are new (a smaller bucket gave all its pairs already).
    """
    sub = _split_values(np.ascontiguousarray(head), slots)
    with np.errstate(over="ignore"):
        split = _fmix64(keys ^ (sub * _WORD_MULTIPLIERS[1]))
    # a bucket of at most max_pairs + 1 texts gives all its pairs already: its split ones repeat
    return _bucket_pairs(split, members, max_pairs)


def band_bucket_pairs(keys: np.ndarray, members: np.ndarray, head: np.ndarray, band: int,
                      config: MinHashConfig, head_floor: int = 0) -> np.ndarray:
    """Return one band's candidate pairs: its buckets' capped pairs and their split buckets'.

    Args:
        keys: The band key of each row (one row per text of the band, ascending text order).
        members: The text of each row.
        head: Each row's packed 4-bit head slots (``_slot_bytes(sigs, 64, bits=4)``).
        band: The band's number, which picks the slots that split its over-full buckets.
        config: The stage's settings.
        head_floor: Drop pairs with fewer equal head slots (the pre-filter's first look, done
            here on rows gathered in bucket order, where it reads memory in sequence); 0 keeps all.

    Returns:
        The pairs of _bucket_pairs and split_bucket_pairs together as (earlier, later) texts,
        found with one sort of the band: only the over-full buckets' rows are split (a smaller
        bucket's split pairs repeat its own), keyed by their bucket and split values. The same
        in memory, out of core and on Ray.
    """
    _, rows = recall_lsh_params(float(config.threshold), config.num_perm)
    head_slots = min(config.num_perm, 64)
    slots = split_slots(band, rows, head_slots)
    max_pairs = config.max_bucket_pairs
    order = _group_order(keys)
    group_start, rank = _groups(keys[order])
    sizes = np.bincount(group_start, minlength=group_start.size)
    over = np.flatnonzero(sizes[group_start] > max_pairs + 1)
    rows_head = head[order] if over.size or head_floor else head[:0]
    step = _PAIR_SLICE_ROWS if head_floor else max(1, rank.size)

    def kept(idx: np.ndarray | None, starts: np.ndarray, ranks: np.ndarray) -> Iterator[np.ndarray]:
        for lo in range(0, ranks.size, step):  # rows in bucket order
            at = _ranked_pairs(idx, starts[lo:lo + step], ranks[lo:lo + step], max_pairs, lo)
            yield at[_equal_slots(rows_head, at, head_slots, bits=4) >= head_floor] if (
                head_floor and len(at)) else at

    found = list(kept(None, group_start, rank))
    if over.size:
        sub = _split_values(rows_head[over], slots)
        with np.errstate(over="ignore"):  # fmix64 is a bijection: equal keys, equal (bucket, split)
            split = _fmix64((group_start[over].astype(np.uint64) << _U64(32)) | sub)
        split_order = _group_order(split)
        split_start, split_rank = _groups(split[split_order])
        found.extend(kept(over[split_order], split_start, split_rank))
    at = np.concatenate(found) if len(found) > 1 else found[0] if found else np.empty(
        (0, 2), dtype=np.int64)
    return members[order[at]]


def _split_values(head: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Return the 4-bit values of slots in rows of packed head slots, side by side in a word."""
    start = int(slots[0])
    if slots.size == 8 and start % 8 == 0 and (slots == start + np.arange(8)).all():
        return head.view(np.uint32)[:, start // 8].astype(np.uint64)  # the same bits, one read
    nibbles = np.ascontiguousarray(head).view(np.uint8)
    sub = np.zeros(len(nibbles), dtype=np.uint64)
    for j, slot in enumerate(slots.tolist()):
        value = (nibbles[:, slot >> 1] >> np.uint8(4 * (slot & 1))) & np.uint8(15)
        sub |= value.astype(np.uint64) << _U64(4 * j)
    return sub


def _estimated_jaccard(sigs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float64)
    step = 1 << 18
    for lo in range(0, len(pairs), step):
        p = pairs[lo : lo + step]
        out[lo : lo + step] = (sigs[p[:, 0]] == sigs[p[:, 1]]).mean(axis=1)
    return out


_ROW_FEATURES = 48  # pairs whose sets both fit are checked row-wise (persona texts do)
_ROW_PAD = _U64(1 << 40)


def exact_jaccard(features: FeatureSets, pairs: np.ndarray) -> np.ndarray:
    """Return exact Jaccard of each pair's feature sets (0 for two empty sets)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float64)
    if features.values.size == 0:  # every set empty: nothing to index into
        out[:] = 0.0
        return out
    lens = np.diff(features.offsets)
    short = (lens[pairs[:, 0]] <= _ROW_FEATURES) & (lens[pairs[:, 1]] <= _ROW_FEATURES)
    if short.any():
        out[short] = _exact_jaccard_rows(features, pairs[short])
    if not short.all():
        out[~short] = _exact_jaccard_sorted(features, pairs[~short])
    return out


def _exact_jaccard_rows(features: FeatureSets, pairs: np.ndarray) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float64)
    lens = np.diff(features.offsets)
    step = 1 << 14
    for lo in range(0, len(pairs), step):
        chunk = pairs[lo : lo + step]
        n_feat = lens[chunk]
        width = max(1, int(n_feat.max()))
        cols = np.arange(width)
        rows = np.empty((len(chunk), 2 * width), dtype=np.uint64)
        for side in (0, 1):
            valid = cols < n_feat[:, side, None]
            at = np.where(valid, features.offsets[chunk[:, side], None] + cols, 0)
            values = (features.values[at].astype(np.uint64) << _U64(1)) | _U64(side)
            rows[:, side * width : (side + 1) * width] = np.where(valid, values, _ROW_PAD)
        rows.sort(axis=1)
        real = rows < _ROW_PAD
        repeat = rows[:, 1:] == rows[:, :-1]
        sizes = real.sum(axis=1) - (repeat & real[:, 1:]).sum(axis=1)  # |A| + |B|
        shared = ((rows[:, 1:] >> _U64(1)) == (rows[:, :-1] >> _U64(1))) & ~repeat & real[:, 1:]
        inter = shared.sum(axis=1)
        union = sizes - inter
        out[lo : lo + len(chunk)] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def _exact_jaccard_sorted(features: FeatureSets, pairs: np.ndarray) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float64)
    lens = np.diff(features.offsets)
    step = 1 << 16
    for lo in range(0, len(pairs), step):
        chunk = pairs[lo : lo + step]
        m = len(chunk)
        keys = []
        for side in (0, 1):
            texts = chunk[:, side]
            n_feat = lens[texts]
            pair_of = np.repeat(np.arange(m, dtype=np.uint64), n_feat)
            start = np.repeat(features.offsets[texts] - (np.cumsum(n_feat) - n_feat), n_feat)
            values = features.values[start + np.arange(pair_of.size)].astype(np.uint64)
            keys.append((pair_of << _U64(33)) | (values << _U64(1)) | _U64(side))
        key = np.sort(np.concatenate(keys))
        first = np.ones(key.size, dtype=bool)
        first[1:] = key[1:] != key[:-1]
        key = key[first]
        pair = (key >> _U64(33)).astype(np.int64)
        sizes = np.bincount(pair, minlength=m)  # |A| + |B|
        shared = (key[1:] >> _U64(1)) == (key[:-1] >> _U64(1))
        inter = np.bincount(pair[1:][shared], minlength=m)
        union = sizes - inter
        out[lo : lo + m] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def candidate_pairs(
    sigs: np.ndarray, config: MinHashConfig, params: tuple[int, int] | None = None
) -> np.ndarray:
    """Return unique (earlier, later) pairs sharing at least one LSH bucket."""
    n = sigs.shape[0]
    bands, rows = params or recall_lsh_params(float(config.threshold), config.num_perm)
    members = np.flatnonzero(sigs[:, 0] != _EMPTY) if n else np.empty(0, dtype=np.int64)
    keys = _band_keys(sigs[members] if members.size < n else sigs, bands, rows)
    found = [_bucket_pairs(keys[:, band], members, config.max_bucket_pairs)
             for band in range(bands)]
    return _unique_pairs(found, n)


def _unique_pairs(found: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Return the distinct pairs, sorted (np.unique is ten times slower on millions)."""
    pairs = np.concatenate(found) if len(found) else np.empty((0, 2), dtype=np.int64)
    if pairs.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    if n > 1 << 32:
        code = np.sort(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])
        code = code[np.concatenate([[True], code[1:] != code[:-1]])]
        return np.stack([code // n, code % n], axis=1)
    # shifts, not division, to pack and unpack: a third of the time on millions
    return _pairs_of_sorted_codes([_sorted_pair_codes(pairs)])


def _sorted_pair_codes(pairs: np.ndarray) -> np.ndarray:
    """Return (earlier, later) pairs of texts below 2**32 as sorted 64-bit codes (earlier high)."""
    code = (pairs[:, 0].astype(np.uint64) << _U64(32)) | pairs[:, 1].astype(np.uint64)
    code.sort()
    return code


def _pairs_of_sorted_codes(runs: Sequence[np.ndarray]) -> np.ndarray:
    """Return the distinct pairs of several sorted runs of pair codes, sorted.

    The runs are merged by numpy's stable sort (timsort), which finds them already sorted: on
    templated 1M's 17 runs a fifth of the time of sorting their codes afresh.
    """
    code = np.concatenate(runs) if runs else np.empty(0, dtype=np.uint64)
    code.sort(kind="stable")
    code = code[np.concatenate([[True], code[1:] != code[:-1]])] if code.size else code
    out = np.empty((code.size, 2), dtype=np.int64)
    out[:, 0] = code >> _U64(32)
    out[:, 1] = code & _U64(0xFFFFFFFF)
    return out


def signature_keys(band_keys: np.ndarray) -> np.ndarray:
    """Return one key per text, equal for equal banded signatures."""
    weights = _signature_weights(band_keys.shape[1])
    with np.errstate(over="ignore"):
        return _fmix64((band_keys * weights).sum(axis=1, dtype=np.uint64))


def _signature_weights(bands: int) -> np.ndarray:
    weights = _WORD_MULTIPLIERS[np.arange(bands) % _WORD_MULTIPLIERS.size]
    return weights + _U64(2) * np.arange(bands, dtype=np.uint64)  # stay odd


def prefilter_floor(threshold: float, num_perm: int, miss: float = 1e-5) -> int:
    """Return the fewest equal slots a pair needs to pass the pre-filter.

    A pair at the threshold is rejected with probability <= miss. At 0.9 and 128 slots: 99.
    """
    p = float(threshold)
    cdf = 0.0
    for m in range(num_perm + 1):
        nxt = cdf + math.comb(num_perm, m) * p**m * (1 - p) ** (num_perm - m)
        if nxt > miss:
            return m
        cdf = nxt
    return num_perm


def _slot_bytes(sigs: np.ndarray, slots: int | None = None, bits: int = 8) -> np.ndarray:
    n = sigs.shape[0]
    slots = sigs.shape[1] if slots is None else slots
    width = -(-slots // (64 // bits)) * (64 // bits)
    low = sigs[:, :slots].astype(np.uint8)
    if width > slots:
        low = np.concatenate([low, np.zeros((n, width - slots), dtype=np.uint8)], axis=1)
    if bits == 4:
        low = (low[:, 0::2] & np.uint8(15)) | (low[:, 1::2] << np.uint8(4))
    return np.ascontiguousarray(low).view(np.uint64)


def _slot_rows(sigs: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Return every text's slots packed as nibbles and as low bytes, chunks of rows in threads."""
    n = sigs.shape[0]
    nib = np.empty((n, -(-sigs.shape[1] // 16)), dtype=np.uint64)
    low = np.empty((n, -(-sigs.shape[1] // 8)), dtype=np.uint64)

    def chunk(lo: int) -> None:
        nib[lo : lo + _KEY_CHUNK] = _slot_bytes(sigs[lo : lo + _KEY_CHUNK], bits=4)
        low[lo : lo + _KEY_CHUNK] = _slot_bytes(sigs[lo : lo + _KEY_CHUNK])

    for _ in _in_threads(chunk, range(0, n, _KEY_CHUNK), threads):
        pass
    return nib, low


_FOLD = {8: ((4, 2, 1), _U64(0x0101010101010101)), 4: ((2, 1), _U64(0x1111111111111111))}


def _equal_slots(packed: np.ndarray, pairs: np.ndarray, slots: int, bits: int = 8) -> np.ndarray:
    """Count equal packed fields per pair, in reused buffers (fresh temporaries were twice as slow)."""
    shifts, mask = _FOLD[bits]
    out = np.empty(len(pairs), dtype=np.int64)
    step = 1 << 13
    x = np.empty((min(step, len(pairs)), packed.shape[1]), dtype=np.uint64)
    y = np.empty_like(x)
    for lo in range(0, len(pairs), step):
        p = pairs[lo : lo + step]
        a, b = x[: len(p)], y[: len(p)]
        np.take(packed, p[:, 0], axis=0, out=a, mode="clip")
        np.take(packed, p[:, 1], axis=0, out=b, mode="clip")
        np.bitwise_xor(a, b, out=a)
        for shift in shifts:
            np.right_shift(a, _U64(shift), out=b)
            np.bitwise_or(a, b, out=a)
        np.bitwise_and(a, mask, out=a)
        counts = np.bitwise_count(a)
        total = counts[:, 0].astype(np.uint16)  # <= 1024 slots: no overflow
        for col in range(1, counts.shape[1]):  # faster than .sum(axis=1) on a few columns
            total += counts[:, col]
        out[lo : lo + step] = total
    return slots - out


def slot_prefilter(sigs: np.ndarray, config: MinHashConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Return keep(pairs), which keeps pairs with enough equal low bits."""
    floor = prefilter_floor(float(config.threshold), config.num_perm)
    # a first look at 4 bits of 64 slots drops most pairs far below the threshold
    head_slots = min(config.num_perm, 64)
    head_floor = prefilter_floor(float(config.threshold), head_slots, miss=1e-6)
    packed: list[np.ndarray] = []
    packing = threading.Lock()  # keep() may run in several threads

    def keep(pairs: np.ndarray) -> np.ndarray:
        if len(pairs) * 4 <= sigs.shape[0] and not packed:
            return pairs[_equal_low_bits(sigs, pairs, head_slots, head_floor, floor)]
        with packing:
            if not packed:
                packed[:] = [_slot_bytes(sigs, head_slots, bits=4), _slot_bytes(sigs)]
        head, low = packed
        pairs = pairs[_equal_slots(head, pairs, head_slots, bits=4) >= head_floor]
        return pairs[_equal_slots(low, pairs, config.num_perm) >= floor]

    return keep


def _equal_low_bits(
    sigs: np.ndarray, pairs: np.ndarray, head_slots: int, head_floor: int, floor: int
) -> np.ndarray:
    out = np.empty(len(pairs), dtype=bool)
    step = 1 << 13
    for lo in range(0, len(pairs), step):
        p = pairs[lo : lo + step]
        x = sigs[p[:, 0]] ^ sigs[p[:, 1]]
        head = np.count_nonzero((x[:, :head_slots] & 15) == 0, axis=1)
        full = np.count_nonzero((x & 255) == 0, axis=1)
        out[lo : lo + step] = (head >= head_floor) & (full >= floor)
    return out


def slot_low_bytes(sigs: np.ndarray) -> np.ndarray:
    """Return the low byte of every slot, all the pre-filter needs."""
    return sigs.astype(np.uint8)


def bucket_pairs(keys: np.ndarray, members: np.ndarray, max_pairs: int) -> np.ndarray:
    return _bucket_pairs(keys, members, max_pairs)


def band_keys(sigs: np.ndarray, config: MinHashConfig) -> np.ndarray:
    return _band_keys(sigs, *recall_lsh_params(float(config.threshold), config.num_perm))


KERNEL_TEXTS = 500_000
"""Texts from which stage 1 in memory runs its compiled kernels (``minhash_kernels``, numba).

They give the same signatures and pairs as the numpy path in less CPU time, but numba's import
and the cached kernels' load cost about 1.8 CPU-seconds in every process that uses them, and
their compile 4.4 more once per numba cache (a machine's first use). Measured in one process,
numpy and kernels alternated (bench/RESULTS.md, bench_minhash.py): at 200,000 texts they save
0.55 CPU-s on templated text and 0.35-0.84 on zipf, less than the load; at 500,000 2.0-3.2 and
0.5-0.9, so templated text pays for the load in every run and for the compile by its second
or third (zipf text did not even at 1M). Below, the tests, the quick start and a fresh CI
worker never load numba."""


def use_kernels(texts: int) -> bool:
    """Return whether stage 1 on this many texts runs the compiled kernels (``KERNEL_TEXTS``).

    Args:
        texts: The texts signed, or whose signatures are verified, in one call.

    Returns:
        True from KERNEL_TEXTS texts (below 2**32).
    """
    return KERNEL_TEXTS <= texts < 1 << 32  # the kernels' pair codes hold a text in 32 bits


# Band pairs, past the pre-filter's first look in band_bucket_pairs, are pooled and made
# distinct before the rest of the pre-filter (templated text repeats them across bands).
_PENDING_PAIRS = 1 << 22


def verified_pairs(sigs: np.ndarray, features: FeatureSets, config: MinHashConfig, *,
                   compiled: bool | None = None) -> np.ndarray:
    """Return pairs with exact Jaccard >= threshold: bucketed, pre-filtered, then checked exactly.

    Args:
        sigs: The texts' signatures.
        features: The texts' feature sets, for the exact check.
        config: The stage's settings.
        compiled: Find the pairs with the compiled kernels (the same pairs); None decides by the
            number of texts (``use_kernels``).

    Returns:
        The verified (earlier, later) pairs, distinct and sorted.
    """
    if use_kernels(sigs.shape[0]) if compiled is None else compiled:
        return _compiled_verified_pairs(sigs, features, config)
    n = sigs.shape[0]
    bands, rows = recall_lsh_params(float(config.threshold), config.num_perm)
    members = np.flatnonzero(sigs[:, 0] != _EMPTY)
    used = sigs[members] if members.size < n else sigs
    keys, signature = _keys_by_band(used, bands, rows, config.thread_count)
    prefilter = slot_prefilter(sigs, config)
    head_slots = min(config.num_perm, 64)
    head = _slot_bytes(used, head_slots, bits=4)
    head_floor = prefilter_floor(float(config.threshold), head_slots, miss=1e-6)

    def band_pairs(band: int) -> np.ndarray:
        return band_bucket_pairs(keys[band], members, head, band, config, head_floor)

    band_found: list[np.ndarray] = []
    pending = 0
    for pairs in _in_threads(band_pairs, range(bands), config.thread_count):
        band_found.append(pairs)
        pending += len(pairs)
        if pending > _PENDING_PAIRS:
            band_found = [prefilter(_unique_pairs(band_found, n))]
            pending = len(band_found[0])
    found = [_bucket_pairs(signature, members, 1), prefilter(_unique_pairs(band_found, n))]
    pairs = _unique_pairs(found, n)
    if len(pairs):
        pairs = pairs[_exact_jaccard_in_threads(features, pairs, config.thread_count)
                      >= config.threshold]
    return pairs


def _compiled_verified_pairs(sigs: np.ndarray, features: FeatureSets, config: MinHashConfig
                             ) -> np.ndarray:
    """Return verified_pairs' pairs found by the compiled kernels, bands and checks in threads.

    Each band is sorted as band_bucket_pairs sorts it and walked once by ``band_candidates``,
    which pre-filters each pair as it is made; the exact check merges word sets sorted once.
    """
    from personahub.personas import minhash_kernels as kernels

    n = sigs.shape[0]
    bands, rows = recall_lsh_params(float(config.threshold), config.num_perm)
    members = np.flatnonzero(sigs[:, 0] != _EMPTY)
    used = sigs[members] if members.size < n else sigs
    keys, signature = _keys_by_band(used, bands, rows, config.thread_count)
    head_slots = min(config.num_perm, 64)
    head_floor = prefilter_floor(float(config.threshold), head_slots, miss=1e-6)
    nib, low = _slot_rows(sigs, config.thread_count)
    floor = prefilter_floor(float(config.threshold), config.num_perm)

    def band_codes(band: int) -> np.ndarray:
        if band == bands:  # texts whose whole banded signatures are equal
            return _sorted_pair_codes(_bucket_pairs(signature, members, 1))
        order = _group_order(keys[band])
        texts = members[order]
        return _sorted_pair_codes(kernels.band_candidates(
            keys[band][order], texts, nib[texts], low,
            split_slots(band, rows, head_slots).astype(np.int64), config.max_bucket_pairs,
            head_slots, head_floor, config.num_perm, floor))

    pairs = _pairs_of_sorted_codes(list(_in_threads(band_codes, range(bands + 1),
                                                    config.thread_count)))
    if len(pairs):
        sets = features.sorted_sets()
        values, offsets = sets.values, sets.offsets
        step = max(1 << 16, -(-len(pairs) // (4 * config.thread_count)))
        jaccard = np.concatenate(list(_in_threads(
            lambda lo: kernels.sorted_jaccard(values, offsets, pairs[lo : lo + step]),
            range(0, len(pairs), step), config.thread_count)))
        pairs = pairs[jaccard >= config.threshold]
    return pairs


def _exact_jaccard_in_threads(features: FeatureSets, pairs: np.ndarray, threads: int
                              ) -> np.ndarray:
    """Return exact_jaccard of pairs, their chunks checked in threads (its sorts free the GIL)."""
    step = max(1 << 16, -(-len(pairs) // (4 * threads)))
    if threads <= 1 or len(pairs) <= step:
        return exact_jaccard(features, pairs)
    return np.concatenate(list(_in_threads(lambda lo: exact_jaccard(features, pairs[lo : lo + step]),
                                           range(0, len(pairs), step), threads)))


def resolve_first_seen(n: int, pairs: np.ndarray) -> np.ndarray:
    """Return -1 for kept texts, else the earliest kept text each is paired with (no chains)."""
    if len(pairs) == 0:
        return np.full(n, -1, dtype=np.int64)
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))
    earlier = pairs[order, 0].tolist()
    later = pairs[order, 1].tolist()
    marks: dict[int, int] = {}
    for i, j in zip(earlier, later, strict=True):
        if j not in marks and i not in marks:
            marks[j] = i
    dup = np.full(n, -1, dtype=np.int64)
    if marks:
        dup[np.fromiter(marks.keys(), np.int64, len(marks))] = np.fromiter(
            marks.values(), np.int64, len(marks)
        )
    return dup


def duplicates_from_signatures(
    sigs: np.ndarray, config: MinHashConfig, features: FeatureSets | None = None
) -> np.ndarray:
    """Return duplicate marks from precomputed signatures; without features, by estimated Jaccard."""
    n = sigs.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if features is not None:
        return resolve_first_seen(n, verified_pairs(sigs, features, config))
    pairs = candidate_pairs(sigs, config)
    if len(pairs):
        pairs = pairs[_estimated_jaccard(sigs, pairs) >= config.threshold]
    return resolve_first_seen(n, pairs)


def minhash_duplicates(texts: Sequence[str], config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """Return near-duplicate marks: -1 kept, else the index of an earlier kept text."""
    if len(texts) == 0:
        return np.empty(0, dtype=np.int64)
    compiled = use_kernels(len(texts))
    sigs, features = sketch(texts, config, compiled=compiled)
    return resolve_first_seen(len(texts), verified_pairs(sigs, features, config,
                                                         compiled=compiled))

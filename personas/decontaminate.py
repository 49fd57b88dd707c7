"""Decontamination: flag synthesized items that overlap a benchmark.

As Persona Hub, GPT-3 and NeMo Curator do: an item sharing one word 13-gram with a benchmark
item, or whose MinHash Jaccard estimate with one reaches 0.8, is flagged once per benchmark.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from personahub.personas.minhash import (
    _EMPTY,
    MinHashConfig,
    _band_keys,
    _batch_ids,
    _fmix64,
    _signatures_of_ids,
    _Vocabulary,
    recall_lsh_params,
    tokenize,
)

__all__ = ["TEXT_COLUMNS", "Match", "decontaminate", "read_benchmark"]

TEXT_COLUMNS = ("text", "question", "problem", "prompt", "input", "content")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_BATCH = 50_000  # bounds the temporaries, not the result
_MAX_PER_BUCKET = 4  # benchmark rows an item is compared with per LSH band bucket


@dataclass(frozen=True)
class Match:
    """One flagged item.

    Attributes:
        item: Index of the item in the list checked.
        benchmark: The benchmark's name (its file path when read from a file).
        benchmark_row: Row of the matched benchmark item (0-based, in file order).
        kind: "ngram" or "minhash".
        detail: The shared n-gram, or the estimated Jaccard as "0.875".
    """

    item: int
    benchmark: str
    benchmark_row: int
    kind: Literal["ngram", "minhash"]
    detail: str


def read_benchmark(path: str | Path, text_column: str | None = None) -> list[str]:
    """Read the texts of a benchmark file: JSONL, Parquet or CSV, by extension.

    Args:
        path: The file.
        text_column: The column holding the text; None takes the first of TEXT_COLUMNS present.

    Returns:
        The texts in file order (a missing value reads as "", never matched).

    Raises:
        ValueError: No such column, or an unknown extension.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    rows: list[dict[str, object]]
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        columns = list(dict.fromkeys(k for r in rows for k in r))
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        columns = table.column_names
        column = _column(path, columns, text_column)
        return [v if isinstance(v, str) else "" for v in table.column(column).to_pylist()]
    else:
        raise ValueError(f"{path}: unknown benchmark format {suffix!r} (use .jsonl, .parquet or .csv)")
    column = _column(path, columns, text_column)
    return [v if isinstance(v := r.get(column), str) else "" for r in rows]


def _column(path: Path, columns: Sequence[str], wanted: str | None) -> str:
    """Return the text column of a benchmark file, or raise a one-line error naming its columns."""
    tried = (wanted,) if wanted else TEXT_COLUMNS
    for name in tried:
        if name in columns:
            return name
    raise ValueError(f"{path}: no text column {' / '.join(tried)}; its columns are "
                     f"{', '.join(columns) or '(none)'} (choose one with --text-column)")


class _Ngrams:
    """Word n-gram hashes over one vocabulary shared by the benchmark and the items."""

    def __init__(self, n: int, config: MinHashConfig) -> None:
        self.n = n
        self.vocab = _Vocabulary(config)

    def ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return token ids of a batch and each text's word count."""
        return _batch_ids(texts, self.vocab)

    def signatures(self, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Return MinHash signatures of a batch from its ids."""
        out = np.empty((counts.size, self.vocab.config.num_perm), dtype=np.uint32)
        _signatures_of_ids(self.vocab, ids, counts, out)
        return out

    def hashes(self, ids: np.ndarray, counts: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (hash, text index, start word) of every n-gram of a batch, by a rolling hash.

        A short text gives one hash of all its words, an empty one none.
        """
        with np.errstate(over="ignore"):
            word = _fmix64(ids.astype(np.uint64) * _GOLDEN + np.uint64(1))
        total = word.size
        starts = np.cumsum(counts) - counts
        short = np.flatnonzero((counts < self.n) & (counts > 0))
        padded = np.concatenate([word, np.zeros(self.n, dtype=np.uint64)])
        combined = np.zeros(total, dtype=np.uint64)
        short_hash = np.zeros(short.size, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(self.n):
                combined *= _GOLDEN
                combined += padded[k : k + total]
                done = counts[short] == k + 1
                short_hash[done] = combined[starts[short[done]]]
        full = counts >= self.n
        per_text = np.where(full, counts - self.n + 1, 0)
        text_of = np.repeat(np.arange(counts.size), per_text)
        pos = np.arange(text_of.size) - (np.cumsum(per_text) - per_text)[text_of]
        hashes = np.concatenate([combined[starts[text_of] + pos], short_hash])
        text_of = np.concatenate([text_of, short])
        pos = np.concatenate([pos, np.zeros(short.size, dtype=pos.dtype)])
        order = np.argsort(text_of, kind="stable")
        return _fmix64(hashes[order]), text_of[order], pos[order]


def decontaminate(
    items: Sequence[str],
    benchmarks: Mapping[str, Sequence[str]],
    *,
    ngram: int = 13,
    threshold: float = 0.8,
    minhash: bool = True,
) -> list[Match]:
    """Flag the items that share an n-gram with, or nearly duplicate, a benchmark item.

    Args:
        items: The synthesized texts.
        benchmarks: Benchmark name -> its texts.
        ngram: Words per n-gram (13, as GPT-3 and NeMo Curator).
        threshold: Estimated Jaccard at or above which an item is a near-duplicate.
        minhash: False runs the n-gram check only.

    Returns:
        One Match per flagged (item, benchmark), ordered by benchmark then item.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    config = MinHashConfig(threshold=threshold)
    bands, rows = recall_lsh_params(threshold, config.num_perm)
    out: list[Match] = []
    for name, texts in benchmarks.items():
        grams = _Ngrams(ngram, config)
        b_ids = grams.ids(list(texts))
        b_hash, b_row, _ = grams.hashes(*b_ids)
        order = np.argsort(b_hash, kind="stable")
        b_hash, b_row = b_hash[order], b_row[order]
        if minhash:
            b_sigs = grams.signatures(*b_ids)
            b_keys = _band_keys(b_sigs, bands, rows)
            b_order = np.argsort(b_keys, axis=0, kind="stable")
            b_sorted = np.take_along_axis(b_keys, b_order, axis=0)
        found: dict[int, Match] = {}
        for lo in range(0, len(items), _BATCH):
            batch = list(items[lo : lo + _BATCH])
            ids = grams.ids(batch)
            found.update(_ngram_matches(grams, ids, batch, lo, b_hash, b_row, name))
            if minhash:
                sigs = grams.signatures(*ids)
                found.update({m.item: m for m in _minhash_matches(
                    sigs, lo, config, b_sigs, b_sorted, b_order, (bands, rows), name)
                    if m.item not in found})
        out.extend(found[i] for i in sorted(found))
    return out


def _ngram_matches(grams: _Ngrams, ids: tuple[np.ndarray, np.ndarray], batch: list[str],
                   lo: int, b_hash: np.ndarray, b_row: np.ndarray, name: str
                   ) -> dict[int, Match]:
    hashes, text_of, pos = grams.hashes(*ids)
    if b_hash.size == 0 or hashes.size == 0:
        return {}
    order = np.argsort(hashes)  # sorted needles: searchsorted walks the table in order
    at = np.empty_like(order)
    at[order] = np.searchsorted(b_hash, hashes[order])
    hit = np.flatnonzero(b_hash[np.minimum(at, b_hash.size - 1)] == hashes)
    found: dict[int, Match] = {}
    for h in hit:  # first hit per item: text_of is ascending, pos ascending within a text
        item = int(text_of[h])
        if item in found:
            continue
        words = tokenize(batch[item])
        start = int(pos[h])
        found[item] = Match(lo + item, name, int(b_row[at[h]]), "ngram",
                            " ".join(words[start : start + grams.n]))
    return {lo + k: m for k, m in found.items()}


def _minhash_matches(sigs: np.ndarray, lo: int, config: MinHashConfig, b_sigs: np.ndarray,
                     b_sorted: np.ndarray, b_order: np.ndarray, params: tuple[int, int],
                     name: str) -> list[Match]:
    """Return each item whose best LSH candidate has estimated Jaccard >= threshold."""
    keys = _band_keys(sigs, *params)
    pairs: list[np.ndarray] = []
    n_bench = b_sorted.shape[0]
    if n_bench == 0:
        return []
    for band in range(params[0]):
        column = b_sorted[:, band]
        left = np.searchsorted(column, keys[:, band])
        item = np.arange(keys.shape[0])
        for k in range(_MAX_PER_BUCKET):  # the bucket's first rows, while they hold the key
            at = left[item] + k
            inside = at < n_bench
            item, at = item[inside], at[inside]
            same = column[at] == keys[item, band]
            item, at = item[same], at[same]
            if item.size == 0:
                break
            pairs.append(np.stack([item, b_order[at, band]], axis=1).astype(np.int64))
    if not pairs:
        return []
    code = np.unique(np.concatenate(pairs) @ np.array([n_bench, 1], dtype=np.int64))
    cand = np.stack([code // n_bench, code % n_bench], axis=1)
    cand = cand[sigs[cand[:, 0], 0] != _EMPTY]
    est = (sigs[cand[:, 0]] == b_sigs[cand[:, 1]]).mean(axis=1)
    ok = est >= config.threshold
    cand, est = cand[ok], est[ok]
    best: dict[int, tuple[float, int]] = {}
    for (item, row), j in zip(cand.tolist(), est.tolist(), strict=True):
        if item not in best or j > best[item][0]:
            best[item] = (j, row)
    return [Match(lo + i, name, r, "minhash", f"{j:.3f}") for i, (j, r) in sorted(best.items())]

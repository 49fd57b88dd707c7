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

from personahub.core.errors import InputFileError
from personahub.core.input_files import UnusableInputError, check_input_file, open_text_input
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

__all__ = ["TEXT_COLUMNS", "BenchmarkFileError", "BenchmarkUsageError", "Match", "decontaminate",
           "read_benchmark"]

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


class BenchmarkFileError(InputFileError, ValueError):
    """A benchmark file cannot be read: one line naming it (a ValueError, as before)."""


class BenchmarkUsageError(UnusableInputError, ValueError):
    """A benchmark path names no regular file within the size cap: a usage error (exit 2)."""


def read_benchmark(path: str | Path, text_column: str | None = None, *,
                   setting: str | None = None, column_flag: str | None = "--text-column"
                   ) -> list[str]:
    """Read the texts of a benchmark file: JSONL, Parquet or CSV, by extension.

    Args:
        path: The file: a regular file of at most MAX_TABLE_FILE_BYTES.
        text_column: The column holding the text; None takes the first of TEXT_COLUMNS present.
        setting: The flag that named the file (--against), for messages.
        column_flag: The flag that chooses the text column, named when none is found (None: the
            command has none, so the message says which names are looked for).

    Returns:
        The texts in file order (a missing value reads as "", never matched).

    Raises:
        ValueError: No such file, an empty, binary or damaged one, no such column, or an
            unknown extension (a BenchmarkFileError, one line naming the file); a path that is
            no regular file, or one too large, is a BenchmarkUsageError.
    """
    path = Path(path)
    name = f"{setting} {path}" if setting else str(path)
    suffix = path.suffix.lower()
    try:
        check_input_file(path, setting)
    except UnusableInputError as exc:
        raise BenchmarkUsageError(exc.path, None, exc.reason) from None
    except InputFileError as exc:
        raise BenchmarkFileError(exc.path, None, exc.reason) from None
    if suffix not in (".jsonl", ".json", ".csv", ".parquet"):
        raise BenchmarkUsageError(name, None, f"unknown benchmark format {suffix!r} (use .jsonl, "
                                              ".parquet or .csv)")
    if path.stat().st_size == 0:
        raise BenchmarkFileError(name, None, "is empty; give a benchmark file with a text column")
    if suffix == ".parquet":
        return _parquet_texts(path, name, text_column, column_flag)
    rows, columns = _text_rows(path, name, setting, suffix)
    column = _column(name, columns, text_column, column_flag)
    return [v if isinstance(v := r.get(column), str) else "" for r in rows]


def _text_rows(path: Path, name: str, setting: str | None,
               suffix: str) -> tuple[list[dict[str, object]], list[str]]:
    """Return the records of a JSONL or CSV benchmark and its column names (one line on any damage)."""
    rows: list[dict[str, object]] = []
    line = 0
    try:
        with open_text_input(path, setting, encoding="utf-8") as fh:
            if suffix == ".csv":
                reader = csv.DictReader(fh, strict=True)
                rows = list(reader)
                return rows, list(reader.fieldnames or [])
            for line, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                if "\x00" in text:
                    raise BenchmarkFileError(name, line, "is a binary file (a NUL byte), not text")
                value = json.loads(text)
                if not isinstance(value, dict):
                    raise BenchmarkFileError(name, line, "not a JSON object")
                rows.append(value)
    except UnusableInputError as exc:
        raise BenchmarkUsageError(exc.path, None, exc.reason) from None
    except UnicodeDecodeError:
        raise BenchmarkFileError(name, line + 1 if line else None,
                                 "not UTF-8 text (a binary file?)") from None
    except json.JSONDecodeError as exc:
        raise BenchmarkFileError(name, line, f"invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise BenchmarkFileError(name, line, "JSON nested too deeply") from None
    except csv.Error as exc:
        raise BenchmarkFileError(name, None, f"bad CSV ({exc})") from None
    return rows, list(dict.fromkeys(k for r in rows for k in r))


def _parquet_texts(path: Path, name: str, text_column: str | None,
                   column_flag: str | None) -> list[str]:
    import pyarrow.parquet as pq

    try:
        columns = pq.read_schema(path).names
        column = _column(name, columns, text_column, column_flag)
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    except BenchmarkFileError:
        raise
    except Exception as exc:  # pyarrow raises many kinds: all mean "not a readable Parquet"
        raise BenchmarkFileError(name, None, f"not a readable Parquet file "
                                             f"({type(exc).__name__})") from None
    return [v if isinstance(v, str) else "" for v in values]


def _column(name: str, columns: Sequence[str], wanted: str | None,
            column_flag: str | None = "--text-column") -> str:
    """Return the text column of a benchmark file, or raise a one-line error naming its columns."""
    tried = (wanted,) if wanted else TEXT_COLUMNS
    for column in tried:
        if column in columns:
            return column
    fix = (f"choose one with {column_flag}" if column_flag else
           f"name the column of its texts {' or '.join(TEXT_COLUMNS[:2])}")
    raise BenchmarkFileError(name, None, f"no text column {' / '.join(tried)}; its columns are "
                                         f"{', '.join(columns) or '(none)'} ({fix})")


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

"""Stage 1 of dedup out of core: MinHash signatures, band buckets, verified pairs and first-seen
marks, each stage spilling to files in a work folder, its memory bounded by a setting.

The stages follow datatrove's MinHash dedup (signatures, buckets, clusters, filter) and find
exactly the pairs the in-memory stage finds (``minhash.verified_pairs``), so the marks are equal
whatever the memory setting:

1. **sign** (per chunk of texts): signatures and feature sets; one row per (text, band) with the
   text's 4-bit head slots, written to partitions by a hash of (band, key); and each text's slot
   low bytes and feature set, for the check.
2. **buckets** (per partition): every bucket lies whole in one partition; each later text is
   paired with the earliest ``max_bucket_pairs`` of its bucket (identical signatures with the
   earliest one), band pairs through the head pre-filter; the pairs written in runs of about
   ``pair_batch``, so the step holds its rows and one run, not every pair its buckets make.
3. **verify** (per chunk of later texts): a pair's earlier text may be in any earlier chunk, so
   each earlier chunk's low bytes and features are read in turn (memory-mapped, only the rows the
   pairs name); the full low-byte pre-filter, then exact Jaccard.
4. **marks**: the verified pairs in order of the later text, each marked when neither it nor its
   partner is marked yet (one bit a text), with the persona ids of both.

Every file is written under a temporary name and renamed: the rename is the completion marker,
so a killed stage (even ``kill -9``) resumes from the last finished chunk or partition. The plan
(``plan.json``) fixes the layout; a resume whose hub or settings changed starts over.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from personahub.personas.minhash import (
    FeatureSets,
    MinHashConfig,
    _bucket_pairs,
    _equal_slots,
    _keys_by_band,
    _slot_bytes,
    band_bucket_pairs,
    exact_jaccard,
    prefilter_floor,
    recall_lsh_params,
    sketch,
)

__all__ = [
    "SpillPlan",
    "spill_workers",
    "BandRows",
    "band_row_dtype",
    "bucket_partition",
    "first_seen_marks",
    "run_spilled",
    "sign_chunk",
    "sign_file_task",
    "sign_written_chunks",
    "spilled_stages",
    "verify_chunk",
]

_EMPTY = np.iinfo(np.uint32).max
_U64 = np.uint64
_INDEX_BITS = 40  # a row's member packs its band above the text's index (up to 10^12 texts)
_INDEX_MASK = _U64((1 << _INDEX_BITS) - 1)
_SPREAD = _U64(0x9E3779B97F4A7C15)  # equal keys of different bands go to different partitions
# bytes a text costs at each stage, measured on persona-length texts (bench_hub_scale.py);
# the plan divides the memory setting by them
TEXT_BYTES_SIGN = 6_000  # texts, tokens, signatures, rows and their partition sort
TEXT_BYTES_VERIFY = 600  # a chunk's low bytes and features, read for its pairs
ROW_BYTES_BUCKET = 400  # a band row, its sort keys and the pairs it makes
PAIR_BYTES = 1_200  # a pair checked: both texts' low bytes and features gathered
# a batch of pairs (checked, or a partition's run) is at most this share of a process's memory:
# small enough that a chunk of a 1M templated hub already fills it, so the peak stays where it
# is as the hub grows (a templated hub's pairs a chunk grow with it)
PAIR_BATCH_SHARE = 8
IN_MEMORY_TEXT_BYTES = 1_100  # the in-memory stage's peak per text (bench_minhash: 1 GiB at 1M)
PLAN_VERSION = 3  # 2: over-full buckets split; 3: buckets in runs (an older folder starts over)


@dataclass(frozen=True)
class SpillPlan:
    """How stage 1 splits its work so that each step fits the memory setting.

    Attributes:
        texts: Survivors when the stage began, in hub order (their index is their position).
        chunk_rows: Texts signed (and later verified) per chunk.
        partitions: Band-row partitions; each is grouped into buckets in memory.
        pair_batch: Pairs checked at a time, and a partition's pairs written a run at a time.
        workers: Processes that sign, bucket and verify side by side.
        starts: Each chunk's first text and, last, the texts: chunks of unequal sizes (files
            written before the plan). Empty: chunks of chunk_rows.
    """

    texts: int
    chunk_rows: int
    partitions: int
    pair_batch: int
    workers: int = 1
    starts: tuple[int, ...] = ()

    @property
    def chunks(self) -> int:
        if self.starts:
            return len(self.starts) - 1
        return max(1, -(-self.texts // self.chunk_rows))

    def start(self, c: int) -> int:
        """Return the index of chunk c's first text."""
        return self.starts[c] if self.starts else c * self.chunk_rows

    def end(self, c: int) -> int:
        """Return the index after chunk c's last text."""
        return self.starts[c + 1] if self.starts else min(self.texts, (c + 1) * self.chunk_rows)

    def chunk_of(self, indexes: np.ndarray) -> np.ndarray:
        """Return the chunk of each text index."""
        if self.starts:
            return np.searchsorted(np.asarray(self.starts), indexes, side="right") - 1
        return indexes // self.chunk_rows

    def in_chunks(self, rows: list[int]) -> SpillPlan:
        """Return this plan over chunks of the given sizes (files already written), in order."""
        starts = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(rows, out=starts[1:])
        return replace(self, texts=int(starts[-1]), starts=tuple(int(s) for s in starts))

    @classmethod
    def for_memory(cls, texts: int, memory_mb: int, config: MinHashConfig,
                   workers: int = 1) -> SpillPlan:
        """Split a stage of texts so that each process's step fits its share of memory_mb."""
        share = memory_mb * (1 << 20) // max(1, workers)
        bands, _ = recall_lsh_params(float(config.threshold), config.num_perm)
        chunk = max(256, min(share // TEXT_BYTES_SIGN, share // TEXT_BYTES_VERIFY))
        rows = texts * (bands + 1)
        partitions = max(1, math.ceil(rows * ROW_BYTES_BUCKET / share))
        return cls(texts=texts, chunk_rows=int(chunk), partitions=partitions,
                   pair_batch=max(1024, share // PAIR_BYTES // PAIR_BATCH_SHARE), workers=workers)

    @staticmethod
    def fits_in_memory(texts: int, memory_mb: int) -> bool:
        """Whether the in-memory stage's peak for texts stays within memory_mb."""
        return texts * IN_MEMORY_TEXT_BYTES <= memory_mb * (1 << 20)


def spill_workers() -> int:
    """Return the processes the spilled stage runs side by side: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def band_row_dtype(config: MinHashConfig) -> np.dtype:
    """Return a band row: its bucket key, band and text index packed in member, the text's head slots."""
    head_words = -(-min(config.num_perm, 64) // 16)
    return np.dtype([("key", np.uint64), ("member", np.uint64), ("head", np.uint64, (head_words,))])


def _head_slots(config: MinHashConfig) -> int:
    return min(config.num_perm, 64)


@dataclass(frozen=True)
class Signed:
    """One chunk's output: its band rows by partition and each text's check data."""

    rows: np.ndarray  # band_row_dtype, sorted by partition (bands in order within each)
    offsets: np.ndarray  # row offsets of each (partition, band) cell, partition-major, + the end
    low: np.ndarray  # (n, num_perm) uint8: each slot's low byte
    features: FeatureSets


@dataclass(frozen=True)
class BandRows:
    """A partition's band rows as columns, each band's rows together and in text order, so a
    band is a slice of each column (no gathered copy) and no row is held twice.

    Attributes:
        key: Each row's bucket key.
        member: Each row's band above its text's index (``_INDEX_BITS``).
        head: Each row's text's packed 4-bit head slots.
        starts: Each band's first row and, last, the rows (band b: starts[b]:starts[b + 1]).
    """

    key: np.ndarray
    member: np.ndarray
    head: np.ndarray
    starts: np.ndarray


def sign_chunk(texts: list[str], start: int, config: MinHashConfig, partitions: int) -> Signed:
    """Sign a chunk of texts whose first has index start; wordless texts get no band rows."""
    # numpy, not the compiled kernels: numba adds about 150 MB a process, which the plan's
    # shares do not hold
    sigs, features = sketch(texts, config, compiled=False)
    bands, rows_per_band = recall_lsh_params(float(config.threshold), config.num_perm)
    words = np.flatnonzero(sigs[:, 0] != _EMPTY)
    dtype = band_row_dtype(config)
    low = sigs.astype(np.uint8)
    if words.size == 0:
        empty = np.empty(0, dtype=dtype)
        return Signed(empty, np.zeros(partitions * (bands + 1) + 1, dtype=np.int64), low,
                      features)
    used = sigs[words]
    keys, signature = _keys_by_band(used, bands, rows_per_band)
    head = _slot_bytes(used, _head_slots(config), bits=4)
    all_keys = np.concatenate([keys, signature[None, :]])  # (bands + 1, m), band-major
    m = words.size
    band = np.repeat(np.arange(bands + 1, dtype=np.uint64), m)
    index = np.tile(words.astype(np.uint64) + _U64(start), bands + 1)
    flat = all_keys.reshape(-1)
    rows = np.empty(flat.size, dtype=dtype)
    rows["key"] = flat
    rows["member"] = (band << _U64(_INDEX_BITS)) | index
    rows["head"] = np.tile(head, (bands + 1, 1))
    with np.errstate(over="ignore"):
        part = ((flat + band * _SPREAD) % _U64(partitions)).astype(np.int64)
    order = np.argsort(part, kind="stable")  # rows are band-major: each partition's stay so
    cell = part * (bands + 1) + band.astype(np.int64)
    offsets = np.zeros(partitions * (bands + 1) + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=partitions * (bands + 1)), out=offsets[1:])
    return Signed(rows[order], offsets, low, features)


def bucket_partition(rows: BandRows, config: MinHashConfig,
                     run_pairs: int = 1 << 62) -> Iterator[np.ndarray]:
    """Yield a partition's candidate pairs as (earlier, later, identical) rows, in runs.

    A run is closed once it holds run_pairs pairs (it may pass that by one band's pairs) and is
    sorted by (later, earlier), so the step holds the rows and one run: a templated hub's buckets
    make more pairs a row the larger it is, and they no longer raise the step's peak. identical
    is 1 for a pair of identical signatures (not pre-filtered, as in memory).
    """
    bands, _ = recall_lsh_params(float(config.threshold), config.num_perm)
    head_floor = prefilter_floor(float(config.threshold), _head_slots(config), miss=1e-6)
    held: list[tuple[np.ndarray, int]] = []  # a band's pairs as row positions, and identical
    count = 0
    for b in range(rows.starts.size - 1):
        lo, hi = int(rows.starts[b]), int(rows.starts[b + 1])
        if hi == lo:
            continue
        signature_band = b == bands
        positions = np.arange(lo, hi)
        keys = rows.key[lo:hi]
        pairs = (_bucket_pairs(keys, positions, 1) if signature_band else
                 band_bucket_pairs(keys, positions, rows.head[lo:hi], b, config, head_floor))
        del positions
        if len(pairs):
            held.append((pairs, int(signature_band)))
            count += len(pairs)
        if count >= run_pairs:
            yield _run_of(held, rows.member)
            count = 0
    if held:
        yield _run_of(held, rows.member)


def _run_of(held: list[tuple[np.ndarray, int]], member: np.ndarray) -> np.ndarray:
    """Return held pairs of row positions as (earlier, later, identical) texts, sorted by
    (later, earlier); held is emptied as it is read."""
    out = np.empty((sum(len(pairs) for pairs, _ in held), 3), dtype=np.int64)
    at = 0
    while held:
        pairs, identical = held.pop(0)
        k = len(pairs)
        out[at:at + k, 0] = (member[pairs[:, 0]] & _INDEX_MASK).astype(np.int64)
        out[at:at + k, 1] = (member[pairs[:, 1]] & _INDEX_MASK).astype(np.int64)
        out[at:at + k, 2] = identical
        at += k
    return out[np.lexsort((out[:, 0], out[:, 1]))]


def _distinct(pairs: np.ndarray) -> np.ndarray:
    """Collapse repeats of a pair (it meets in several bands), identical if any repeat is."""
    if len(pairs) == 0:
        return pairs
    order = np.lexsort((-pairs[:, 2], pairs[:, 0], pairs[:, 1]))
    pairs = pairs[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = (pairs[1:, 0] != pairs[:-1, 0]) | (pairs[1:, 1] != pairs[:-1, 1])
    return pairs[first]


def verify_pairs(pairs: np.ndarray, later_low: np.ndarray, later_features: FeatureSets,
                 later_start: int, earlier: Callable[[np.ndarray], tuple[np.ndarray, FeatureSets]],
                 config: MinHashConfig) -> np.ndarray:
    """Return the pairs (earlier, later) that pass the low-byte pre-filter and exact Jaccard.

    earlier(indexes) returns the low bytes and features of the given (sorted, distinct) texts.
    """
    if len(pairs) == 0:
        return np.empty((0, 2), dtype=np.int64)
    need, at = np.unique(pairs[:, 0], return_inverse=True)
    e_low, e_features = earlier(need)
    low = np.concatenate([e_low, later_low])
    local = np.stack([at.ravel(), need.size + pairs[:, 1] - later_start], axis=1)
    floor = prefilter_floor(float(config.threshold), config.num_perm)
    packed = _slot_bytes(low.view(np.uint8))  # low bytes are their own low bytes
    passed = (pairs[:, 2] == 1) | (_equal_slots(packed, local, config.num_perm) >= floor)
    local, pairs = local[passed], pairs[passed]
    if len(pairs) == 0:
        return np.empty((0, 2), dtype=np.int64)
    features = FeatureSets.concat([e_features, later_features])
    kept = exact_jaccard(features, local) >= config.threshold
    return pairs[kept, :2]


def first_seen_marks(pairs: np.ndarray, marked: bytearray) -> np.ndarray:
    """Mark, in order of (later, earlier), each later text whose earlier partner and itself are
    unmarked; return the (later, earlier) marks. marked holds one bit a text, updated.
    """
    out: list[tuple[int, int]] = []
    for e, later in zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True):
        if marked[later >> 3] & (1 << (later & 7)) or marked[e >> 3] & (1 << (e & 7)):
            continue
        marked[later >> 3] |= 1 << (later & 7)
        out.append((later, e))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


# -- the work folder --------------------------------------------------------------------------

def _atomic_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _atomic_parquet(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.part")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _atomic_json(path: Path, value: object) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)


def plan_record(plan: SpillPlan, config: MinHashConfig, fingerprint: str) -> dict[str, Any]:
    """Return what plan.json holds for a plan, as JSON reads it back (tuples as lists)."""
    record = {"version": PLAN_VERSION, "plan": asdict(plan) | {"workers": 0},
              "config": asdict(config), "hub": fingerprint}
    loaded: dict[str, Any] = json.loads(json.dumps(record))
    return loaded


class WorkFolder:
    """Where stage 1 spills: each stage's files, named by chunk or partition."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def chunk(self, c: int, what: str) -> Path:
        return self.root / "sign" / f"{c:06d}.{what}"

    def partition_run(self, p: int, r: int) -> Path:
        return self.root / "buckets" / f"{p:06d}.{r:04d}.npy"

    def partition_done(self, p: int) -> Path:
        return self.root / "buckets" / f"{p:06d}.done"

    def pair_runs(self) -> list[Path]:
        """Every partition's runs of pairs, read once every partition is done (a partition's
        task clears its runs before it writes, so a killed attempt's are gone by then)."""
        return sorted(self.root.joinpath("buckets").glob("*.npy"))

    def verified(self, c: int) -> Path:
        return self.root / "verify" / f"{c:06d}.npy"

    @property
    def marks(self) -> Path:
        return self.root / "marks"

    @property
    def ids(self) -> Path:
        return self.root / "sign"

    def prepare(self, plan: SpillPlan, config: MinHashConfig, fingerprint: str) -> bool:
        """Lay the folder out for plan; return whether a matching earlier attempt is resumed."""
        stored = self.root / "plan.json"
        want = plan_record(plan, config, fingerprint)
        if stored.exists():
            try:
                if json.loads(stored.read_text(encoding="utf-8")) == want:
                    return True
            except (OSError, ValueError):
                pass
            shutil.rmtree(self.root, ignore_errors=True)
        for sub in ("sign", "buckets", "verify", "marks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        _atomic_json(stored, want)
        return False

    def chunk_done(self, c: int) -> bool:
        return self.chunk(c, "done").exists()

    def write_chunk(self, c: int, ids: list[str], start: int, signed: Signed) -> None:
        """Write a signed chunk's files, the marker last."""
        _atomic_parquet(self.chunk(c, "ids.parquet"), pa.table({
            "index": pa.array(np.arange(start, start + len(ids), dtype=np.int64)),
            "persona_id": pa.array(ids, pa.string())}))
        self.write_signed(c, ids, signed)

    def write_signed(self, c: int, ids: list[str], signed: Signed) -> None:
        """Write a signed chunk's band rows and check data, the marker last (its ids are
        written)."""
        _atomic_npy(self.chunk(c, "rows.npy"), signed.rows)
        _atomic_npy(self.chunk(c, "offsets.npy"), signed.offsets)
        _atomic_npy(self.chunk(c, "low.npy"), signed.low)
        _atomic_npy(self.chunk(c, "fcounts.npy"), np.diff(signed.features.offsets))
        _atomic_npy(self.chunk(c, "fvalues.npy"), signed.features.values)
        _atomic_json(self.chunk(c, "done"), {"first": ids[0] if ids else None,
                                             "last": ids[-1] if ids else None,
                                             "rows": len(ids)})

    def partition_rows(self, p: int, chunks: int, config: MinHashConfig) -> BandRows:
        """Read partition p's rows from every chunk into columns, each band's rows together in
        chunk order. Each chunk's offsets name where its (partition, band) cells lie, so every
        row is read once and held once."""
        bands = recall_lsh_params(float(config.threshold), config.num_perm)[0] + 1
        cells = [np.array(np.load(self.chunk(c, "offsets.npy"), mmap_mode="r")
                          [p * bands:(p + 1) * bands + 1]) for c in range(chunks)]
        counts = np.array([np.diff(cell) for cell in cells]).reshape(chunks, bands)
        starts = np.zeros(bands + 1, dtype=np.int64)
        np.cumsum(counts.sum(axis=0), out=starts[1:])
        total = int(starts[-1])
        head = band_row_dtype(config)["head"]
        out = BandRows(np.empty(total, dtype=np.uint64), np.empty(total, dtype=np.uint64),
                       np.empty((total, *head.shape), dtype=head.base), starts)
        at = starts[:-1].copy()  # where each band's next rows go
        for c, cell in enumerate(cells):
            if cell[-1] == cell[0]:
                continue
            rows = np.load(self.chunk(c, "rows.npy"), mmap_mode="r")
            for b in np.flatnonzero(counts[c]).tolist():
                k = int(counts[c, b])
                piece = rows[cell[b]:cell[b + 1]]
                out.key[at[b]:at[b] + k] = piece["key"]
                out.member[at[b]:at[b] + k] = piece["member"]
                out.head[at[b]:at[b] + k] = piece["head"]
                at[b] += k
            del rows, piece
        return out

    def check_data(self, c: int) -> tuple[np.ndarray, FeatureSets]:
        """Read a chunk's low bytes and feature sets whole."""
        counts = np.load(self.chunk(c, "fcounts.npy"))
        return (np.load(self.chunk(c, "low.npy")),
                FeatureSets.from_counts(np.load(self.chunk(c, "fvalues.npy")), counts))

    def check_rows(self, c: int, local: np.ndarray) -> tuple[np.ndarray, FeatureSets]:
        """Read some rows (sorted positions in the chunk) of its low bytes and feature sets."""
        low = np.load(self.chunk(c, "low.npy"), mmap_mode="r")
        picked_low = np.array(low[local])
        del low
        counts = np.load(self.chunk(c, "fcounts.npy"))
        offsets = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        values = np.load(self.chunk(c, "fvalues.npy"), mmap_mode="r")
        picked_counts = counts[local]
        starts = np.repeat(offsets[local] - (np.cumsum(picked_counts) - picked_counts),
                           picked_counts)
        picked = np.array(values[starts + np.arange(int(picked_counts.sum()))])
        del values
        return picked_low, FeatureSets.from_counts(picked, picked_counts)


# -- the stages, each a function a worker process can run ------------------------------------

def _sign_task(root: str, c: int, ids: list[str], texts: list[str], start: int,
               config: MinHashConfig, partitions: int) -> int:
    one_thread = replace(config, threads=1)  # the pool already runs one process per core
    WorkFolder(Path(root)).write_chunk(c, ids, start,
                                       sign_chunk(texts, start, one_thread, partitions))
    return c


def sign_file_task(root: str, c: int, start: int, config: MinHashConfig, partitions: int) -> int:
    """Sign chunk c from its ids file (index, persona_id, text, written before the stage)."""
    folder = WorkFolder(Path(root))
    table = pq.read_table(folder.chunk(c, "ids.parquet"), columns=["persona_id", "text"])
    ids = table.column("persona_id").to_pylist()
    texts = table.column("text").to_pylist()
    del table
    one_thread = replace(config, threads=1)
    folder.write_signed(c, ids, sign_chunk(texts, start, one_thread, partitions))
    return c


def sign_written_chunks(folder: WorkFolder, plan: SpillPlan, config: MinHashConfig,
                        pool: Executor | None, progress: Progress | None = None) -> None:
    """Sign every chunk from its ids file (written before the stage) through pool, skipping
    those a resumed attempt signed; progress counts the texts of the chunks signed."""
    signed = 0

    def finished(c: int) -> None:
        nonlocal signed
        signed += plan.end(c) - plan.start(c)
        if progress:
            progress("minhash", signed, plan.texts)

    todo = []
    for c in range(plan.chunks):
        if folder.chunk_done(c):
            finished(c)
        else:
            todo.append((str(folder.root), c, plan.start(c), config, plan.partitions))
    _run_all(pool, sign_file_task, todo, finished)


def _bucket_task(root: str, p: int, chunks: int, config: MinHashConfig,
                 run_pairs: int = 1 << 62) -> int:
    folder = WorkFolder(Path(root))
    for old in folder.root.joinpath("buckets").glob(f"{p:06d}.*.npy"):
        old.unlink()  # a killed attempt's runs
    rows = folder.partition_rows(p, chunks, config)
    runs = 0
    for run in bucket_partition(rows, config, run_pairs):
        _atomic_npy(folder.partition_run(p, runs), run)
        runs += 1
        del run  # not held while the next run is made
    _atomic_json(folder.partition_done(p), {"runs": runs})
    return p


def _verify_task(root: str, c: int, plan: SpillPlan, config: MinHashConfig) -> int:
    folder = WorkFolder(Path(root))
    _atomic_npy(folder.verified(c), verify_chunk(folder, c, plan, config))
    return c


def verify_chunk(folder: WorkFolder, c: int, plan: SpillPlan, config: MinHashConfig) -> np.ndarray:
    """Return the verified pairs whose later text is in chunk c, sorted by (later, earlier)."""
    lo, hi = plan.start(c), plan.end(c)
    pieces = []
    for path in folder.pair_runs():
        pairs = np.load(path, mmap_mode="r")
        later = pairs[:, 1]
        a, b = np.searchsorted(later, lo), np.searchsorted(later, hi)
        pieces.append(np.array(pairs[a:b]))
        del pairs, later
    pairs = _distinct(np.concatenate(pieces)) if pieces else np.empty((0, 3), dtype=np.int64)
    later_low, later_features = folder.check_data(c)

    def earlier(need: np.ndarray) -> tuple[np.ndarray, FeatureSets]:
        lows, sets = [], []
        chunk_of = plan.chunk_of(need)
        for e in np.unique(chunk_of).tolist():
            local = need[chunk_of == e] - plan.start(e)
            low, features = folder.check_rows(e, local)
            lows.append(low)
            sets.append(features)
        return np.concatenate(lows), FeatureSets.concat(sets)

    verified = []
    order = np.argsort(pairs[:, 0], kind="stable")  # earlier rows read in file order
    for s in range(0, len(pairs), plan.pair_batch):
        batch = pairs[order[s:s + plan.pair_batch]]
        verified.append(verify_pairs(batch, later_low, later_features, lo, earlier, config))
    if not verified:
        return np.empty((0, 2), dtype=np.int64)
    out = np.concatenate(verified)
    return out[np.lexsort((out[:, 0], out[:, 1]))]


def _die_with_parent(parent: int) -> None:
    """Exit this worker when the stage's process is gone (a kill -9 leaves no one to stop it)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _pool(workers: int) -> ProcessPoolExecutor | None:
    if workers <= 1:
        return None
    return ProcessPoolExecutor(workers, initializer=_die_with_parent, initargs=(os.getpid(),))


def _run_all(pool: Executor | None, fn: Callable[..., int], jobs: Iterable[tuple[object, ...]],
             done: Callable[[int], None]) -> None:
    if pool is None:
        for args in jobs:
            done(fn(*args))
        return
    futures = [pool.submit(fn, *args) for args in jobs]
    for future in futures:
        done(future.result())


Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Spilled:
    """Stage 1's outcome in the work folder: its marks as Parquet files, ready to write."""

    texts: int
    marks: int
    folder: Path

    @property
    def marks_files(self) -> list[str]:
        """The marks' Parquet files, as paths (a glob pattern would read a ``[`` or ``*`` in
        the database's own path as a wildcard)."""
        return [str(path) for path in sorted((self.folder / "marks").glob("*.parquet"))]

    @property
    def ids_files(self) -> list[str]:
        """The text indexes' ids, one Parquet file per signing shard, as paths."""
        return [str(path) for path in sorted((self.folder / "sign").glob("*.ids.parquet"))]


def run_spilled(chunks: Iterator[tuple[list[str], list[str]]], plan: SpillPlan,
                config: MinHashConfig, root: Path, fingerprint: str,
                progress: Progress | None = None) -> Spilled:
    """Run stage 1 through the work folder root and return its marks there.

    chunks yields (ids, texts) of plan.chunk_rows survivors at a time, in hub order; the chunks a
    resumed stage finished are read and skipped.
    """
    folder = WorkFolder(root)
    folder.prepare(plan, config, fingerprint)
    pool = _pool(plan.workers)
    try:
        _sign(folder, chunks, plan, config, pool, progress)
        return spilled_stages(folder, plan, config, pool, progress)
    finally:
        if pool is not None:
            pool.shutdown()


def spilled_stages(folder: WorkFolder, plan: SpillPlan, config: MinHashConfig,
                   pool: Executor | None, progress: Progress | None = None) -> Spilled:
    """Run the stages after signing (buckets, verify, marks) through pool and return the marks.

    Args:
        folder: The work folder, every chunk signed.
        plan: The stage's plan.
        config: Stage 1's settings.
        pool: Runs the partitions' and chunks' tasks (a process pool, Ray's tasks); None: here.
        progress: Told when the marks are written.

    Returns:
        The marks, in the folder; the partitions and chunks a resumed stage finished are kept.
    """
    root = str(folder.root)
    todo = [p for p in range(plan.partitions) if not folder.partition_done(p).exists()]
    _run_all(pool, _bucket_task, ((root, p, plan.chunks, config, plan.pair_batch) for p in todo),
             lambda p: None)
    for c in range(plan.chunks):  # the sign files' band rows are no longer needed
        for what in ("rows.npy", "offsets.npy"):
            folder.chunk(c, what).unlink(missing_ok=True)
    todo = [c for c in range(plan.chunks) if not folder.verified(c).exists()]
    _run_all(pool, _verify_task, ((root, c, plan, config) for c in todo), lambda c: None)
    marks = _write_marks(folder, plan)
    if progress:
        progress("minhash", plan.texts, plan.texts)
    return Spilled(plan.texts, marks, folder.root)


def _sign(folder: WorkFolder, chunks: Iterator[tuple[list[str], list[str]]], plan: SpillPlan,
          config: MinHashConfig, pool: Executor | None, progress: Progress | None) -> None:
    signed = 0
    root = str(folder.root)
    pending: list[Any] = []

    def finished(_: int) -> None:
        nonlocal signed
        signed += 1
        if progress:
            progress("minhash", plan.end(min(plan.chunks, signed) - 1), plan.texts)

    for c, (ids, texts) in enumerate(chunks):
        if folder.chunk_done(c):
            stored = json.loads(folder.chunk(c, "done").read_text(encoding="utf-8"))
            if stored["rows"] != len(ids) or (ids and (stored["first"], stored["last"]) !=
                                              (ids[0], ids[-1])):
                raise RuntimeError(f"minhash: chunk {c} of the work folder is not the hub's")
            finished(c)
            continue
        args = (root, c, ids, texts, plan.start(c), config, plan.partitions)
        if pool is None:
            finished(_sign_task(*args))
            continue
        pending.append(pool.submit(_sign_task, *args))
        while len(pending) >= plan.workers:  # at most one chunk in flight a worker
            finished(pending.pop(0).result())
    for future in pending:
        finished(future.result())


def _write_marks(folder: WorkFolder, plan: SpillPlan) -> int:
    """Resolve the first-seen marks chunk by chunk into Parquet files of text indexes."""
    for old in folder.marks.glob("*.parquet"):
        old.unlink()
    marked = bytearray((plan.texts + 7) // 8)
    total = 0
    for c in range(plan.chunks):
        pairs = np.load(folder.verified(c))
        marks = first_seen_marks(pairs, marked)
        total += len(marks)
        if len(marks):
            _atomic_parquet(folder.marks / f"{c:06d}.parquet", pa.table({
                "later": pa.array(marks[:, 0]), "earlier": pa.array(marks[:, 1])}))
    return total


def spill_chunks(batches: Iterator[tuple[list[str], list[str]]],
                 rows: int) -> Iterator[tuple[list[str], list[str]]]:
    """Re-cut streamed (ids, texts) batches into chunks of exactly rows (the last may be short)."""
    ids: list[str] = []
    texts: list[str] = []
    for batch_ids, batch_texts in batches:
        ids.extend(batch_ids)
        texts.extend(batch_texts)
        while len(ids) >= rows:
            yield ids[:rows], texts[:rows]
            ids, texts = ids[rows:], texts[rows:]
    if ids:
        yield ids, texts

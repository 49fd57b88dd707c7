"""Stage 1 of ``personas dedup --executor ray``: MinHash band buckets through a Ray shuffle.

At a billion personas the signatures (``4 * num_perm`` bytes each) cannot all come to one
machine, so only verified pairs do. Ray Data ``map_batches`` signs each block of texts (the local
stage's ``sketch``: bit-identical) and emits one row per (text, band): ``part, band, key, index,
slots, features``, plus one more "band" whose key is the text's ``signature_keys`` (identical
signatures share it). ``slots`` is the low byte of every signature slot (``slot_low_bytes``, all
the pre-filter reads). ``groupby("part").map_groups`` brings every row of a partition together,
``part`` being a hash of (band, key), so each bucket lies whole in one partition; there the
local stage's own functions run on the partition's rows at once: per band ``bucket_pairs``
(each later text with the earliest ``max_bucket_pairs`` of its bucket; the signature band with
its group's first), the band pairs through ``slot_prefilter``, then ``exact_jaccard``. Every
function is a function of the pair alone (or of a whole bucket), so the verified pairs are
exactly the local stage's. The driver gets them, deduplicates them (a pair can share several
bands) and resolves the marks with ``resolve_first_seen``: the flags are the local stage's.

Grouping by a partition hash, not by (band, key), is what makes this fast: Ray Data calls a
``map_groups`` function once per group, and most (band, key) buckets are singletons, so
grouping by bucket made nearly a Python call per row (100k texts: 1.7M rows). A partition
is sized to ~200k rows, so the work is a few numpy passes per partition.

What crosses the shuffle: each row carries its text's feature set and slot bytes (~230 bytes
for a persona), once per band, singleton buckets included. Neither cut the issue suggests is
done: shipping features once per text would need a second shuffle (the pairs joined to the
texts' data), and a counting pre-pass that emits rows only for repeated keys would need a second
signing pass or a global count structure; on bench_ray's templated 100k, 60% of the rows sit in
repeated buckets, so it would save at most 40% of the rows.

Texts without words (all-max signature) get no band rows, as ``verified_pairs`` skips them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from personahub.core.optional import ray
from personahub.executors.ray_batches import _quiet_data, ray_session
from personahub.personas.dedup import PairFinder
from personahub.personas.minhash import (
    FeatureSets,
    MinHashConfig,
    band_keys,
    bucket_pairs,
    exact_jaccard,
    recall_lsh_params,
    signature_keys,
    sketch,
    slot_low_bytes,
    slot_prefilter,
)

_EMPTY = np.iinfo(np.uint32).max  # the signature slot of a text without words
_PAIR_SCHEMA = pa.schema([("earlier", pa.int64()), ("later", pa.int64())])
_ROWS_PER_PARTITION = 200_000
_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # separates equal keys of different bands


def _band_schema(num_perm: int) -> pa.Schema:
    return pa.schema([("part", pa.int32()), ("band", pa.int32()), ("key", pa.uint64()),
                      ("index", pa.int64()), ("slots", pa.binary(num_perm)),
                      ("features", pa.large_list(pa.uint32()))])


def band_rows(block: pa.Table, config: MinHashConfig, partitions: int) -> pa.Table:
    """One row per (text with words, band) of a block, and one for its signature key: the
    bucket's partition, band and key, the text's index, slot low bytes and feature set."""
    sigs, features = sketch(block.column("text").to_pylist(), config)
    index = block.column("index").to_numpy().astype(np.int64)
    kept = np.flatnonzero(sigs[:, 0] != _EMPTY)
    schema = _band_schema(config.num_perm)
    if kept.size == 0:
        return schema.empty_table()
    keys = band_keys(sigs[kept], config)
    keys = np.concatenate([keys, signature_keys(keys)[:, None]], axis=1)  # (kept, bands + 1)
    bands = keys.shape[1]
    band = np.tile(np.arange(bands, dtype=np.int32), kept.size)
    flat = keys.reshape(-1)  # row-major: text by text
    with np.errstate(over="ignore"):
        part = ((flat + band.astype(np.uint64) * _SPREAD) % np.uint64(partitions)).astype(np.int32)
    by_row = np.repeat(kept, bands)
    low = slot_low_bytes(sigs[kept])
    slots = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(config.num_perm), kept.size, [None, pa.py_buffer(np.ascontiguousarray(low))])
    sets = pa.LargeListArray.from_arrays(pa.array(features.offsets, pa.int64()),
                                         pa.array(features.values, pa.uint32()))
    return pa.table({
        "part": pa.array(part),
        "band": pa.array(band),
        "key": pa.array(flat),
        "index": pa.array(index[by_row]),
        "slots": slots.take(pa.array(np.repeat(np.arange(kept.size), bands))),
        "features": sets.take(pa.array(by_row)),
    }, schema=schema)


def _slot_array(column: pa.ChunkedArray, width: int) -> np.ndarray:
    """(rows, width) uint8 view of a fixed-size binary column."""
    arr = column.combine_chunks()
    return np.frombuffer(arr.buffers()[1], dtype=np.uint8, count=len(arr) * width,
                         offset=arr.offset * width).reshape(-1, width)


def partition_verified_pairs(rows: pa.Table, config: MinHashConfig) -> pa.Table:
    """The verified (earlier, later) pairs of every bucket of one partition, found as
    ``verified_pairs`` finds them (band pairs pre-filtered, signature-key pairs not)."""
    if rows.num_rows < 2:
        return _PAIR_SCHEMA.empty_table()
    rows = rows.take(pa.array(np.argsort(rows.column("index").to_numpy(), kind="stable")))
    index = rows.column("index").to_numpy()
    band = rows.column("band").to_numpy()
    keys = rows.column("key").to_numpy()
    prefilter = slot_prefilter(_slot_array(rows.column("slots"), config.num_perm), config)
    signature_band, _ = recall_lsh_params(float(config.threshold), config.num_perm)
    found = []
    for b in np.unique(band):
        members = np.flatnonzero(band == b)  # ascending, so by text index within each bucket
        if b == signature_band:  # identical signatures: each with its group's first, as is
            found.append(bucket_pairs(keys[members], members, 1))
        else:
            found.append(prefilter(bucket_pairs(keys[members], members, config.max_bucket_pairs)))
    pairs = np.concatenate(found)
    if len(pairs) == 0:
        return _PAIR_SCHEMA.empty_table()
    # a text pair may meet in several bands of this partition: check it once (indices < 2^32)
    code = (index[pairs[:, 0]].astype(np.uint64) << np.uint64(32)) | index[pairs[:, 1]].astype(np.uint64)
    pairs = pairs[np.unique(code, return_index=True)[1]]
    sets = rows.column("features").combine_chunks()
    features = FeatureSets.from_counts(sets.flatten().to_numpy(zero_copy_only=False),
                                       sets.value_lengths().to_numpy(zero_copy_only=False))
    kept = pairs[exact_jaccard(features, pairs) >= config.threshold]
    return pa.table({"earlier": index[kept[:, 0]], "later": index[kept[:, 1]]}, schema=_PAIR_SCHEMA)


def minhash_pair_finder(address: str | None = None, workers: int | None = None) -> PairFinder:
    """Stage 1 on Ray up to its verified pairs: signing and banding in ``map_batches`` tasks,
    buckets through a ``groupby`` shuffle of bucket partitions; only the pairs come back to the
    driver."""

    def find(texts: Iterator[list[str]], config: MinHashConfig) -> tuple[int, np.ndarray]:
        flat = [text for batch in texts for text in batch]
        n = len(flat)
        if n == 0:
            return 0, np.empty((0, 2), dtype=np.int64)
        bands, _ = recall_lsh_params(float(config.threshold), config.num_perm)
        parts: list[np.ndarray] = []
        with ray_session(address):
            _quiet_data()
            size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            partitions = max(size * 4, -(-n * (bands + 1) // _ROWS_PER_PARTITION))
            table = pa.table({"index": pa.array(np.arange(n, dtype=np.int64)), "text": flat})
            blocks = max(1, min(n // 1000, size * 4))
            step = -(-n // blocks)
            items = ray.data.from_arrow([table.slice(lo, step) for lo in range(0, n, step)])
            banded = items.map_batches(band_rows, batch_size=None, batch_format="pyarrow",
                                       fn_kwargs={"config": config, "partitions": partitions},
                                       compute=ray.data.TaskPoolStrategy(size=size))
            pairs = banded.groupby("part", num_partitions=partitions).map_groups(
                partition_verified_pairs, batch_format="pyarrow", fn_kwargs={"config": config})
            for piece in pairs.iter_batches(batch_size=None, batch_format="numpy"):
                if len(piece["earlier"]):
                    parts.append(np.stack([piece["earlier"], piece["later"]], axis=1))
        if not parts:
            return n, np.empty((0, 2), dtype=np.int64)
        found = np.concatenate(parts).astype(np.int64)
        code = np.unique(found[:, 0] * n + found[:, 1])  # a pair shares one or more bands
        return n, np.stack([code // n, code % n], axis=1)

    return PairFinder(find)

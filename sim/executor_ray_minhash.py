"""Stage 1 of ``personas dedup --executor ray``: MinHash band buckets through a Ray shuffle.

At a billion personas the signatures (``4 * num_perm`` bytes each) cannot all come to one
machine, so only verified pairs do. Ray Data ``map_batches`` signs each block of texts (the local
stage's ``sketch``: bit-identical) and emits one row per (text, band): ``band, key, index,
features``; ``groupby(["band", "key"]).map_groups`` then pairs, inside each bucket, each later
text with the earliest ``max_bucket_pairs`` texts of the bucket (``_bucket_pairs``' rule) and keeps
the pairs whose exact Jaccard reaches the threshold (``exact_jaccard``). The driver gets the
pairs, deduplicates them (a pair can share several bands) and resolves the marks with
``resolve_first_seen``, as the local stage does: the flags are the local stage's.

Texts without words (all-max signature) get no band rows, as ``candidate_pairs`` skips them.
A singleton bucket (most of them) emits nothing; its rows still cross the shuffle once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import ray
from personahub.personas.dedup import PairFinder
from personahub.personas.minhash import (
    FeatureSets,
    MinHashConfig,
    _band_keys,
    exact_jaccard,
    recall_lsh_params,
    sketch,
)
from personahub.sim.executor_ray import _quiet_data, ray_session

_EMPTY = np.iinfo(np.uint32).max  # the signature slot of a text without words
_BAND_SCHEMA = pa.schema([("band", pa.int32()), ("key", pa.uint64()), ("index", pa.int64()),
                          ("features", pa.large_list(pa.uint32()))])
_PAIR_SCHEMA = pa.schema([("earlier", pa.int64()), ("later", pa.int64())])


def band_rows(block: pa.Table, config: MinHashConfig) -> pa.Table:
    """One row per (text with words, band) of a block: its band key and its feature set."""
    bands, rows = recall_lsh_params(float(config.threshold), config.num_perm)
    sigs, features = sketch(block.column("text").to_pylist(), config)
    index = block.column("index").to_numpy().astype(np.int64)
    kept = np.flatnonzero(sigs[:, 0] != _EMPTY)
    if kept.size == 0:
        return _BAND_SCHEMA.empty_table()
    keys = _band_keys(sigs[kept], bands, rows)  # (kept, bands): row-major, text by text
    sets = pa.LargeListArray.from_arrays(pa.array(features.offsets, pa.int64()),
                                         pa.array(features.values, pa.uint32()))
    by_row = np.repeat(kept, bands)
    return pa.table({
        "band": pa.array(np.tile(np.arange(bands, dtype=np.int32), kept.size)),
        "key": pa.array(keys.reshape(-1)),
        "index": pa.array(index[by_row]),
        "features": sets.take(pa.array(by_row)),
    }, schema=_BAND_SCHEMA)


def bucket_verified_pairs(bucket: pa.Table, config: MinHashConfig) -> pa.Table:
    """The verified (earlier, later) pairs of one band bucket: each later text with the earliest
    ``max_bucket_pairs`` of the bucket, kept at exact Jaccard >= threshold."""
    size = bucket.num_rows
    if size < 2:
        return _PAIR_SCHEMA.empty_table()
    index = bucket.column("index").to_numpy()
    order = np.argsort(index, kind="stable")
    index = index[order]
    sets = bucket.column("features").combine_chunks().take(pa.array(order))
    features = FeatureSets.from_counts(sets.flatten().to_numpy(zero_copy_only=False),
                                       sets.value_lengths().to_numpy(zero_copy_only=False))
    take = np.minimum(np.arange(size), config.max_bucket_pairs)
    later = np.repeat(np.arange(size), take)
    earlier = np.arange(later.size) - np.repeat(np.cumsum(take) - take, take)
    pairs = np.stack([earlier, later], axis=1)
    kept = pairs[exact_jaccard(features, pairs) >= config.threshold]
    return pa.table({"earlier": index[kept[:, 0]], "later": index[kept[:, 1]]}, schema=_PAIR_SCHEMA)


def minhash_pair_finder(address: str | None = None, workers: int | None = None) -> PairFinder:
    """Stage 1 on Ray up to its verified pairs: signing and banding in ``map_batches`` tasks,
    buckets through a ``groupby`` shuffle; only the pairs come back to the driver."""

    def find(texts: Iterator[list[str]], config: MinHashConfig) -> tuple[int, np.ndarray]:
        flat = [text for batch in texts for text in batch]
        n = len(flat)
        if n == 0:
            return 0, np.empty((0, 2), dtype=np.int64)
        parts: list[np.ndarray] = []
        with ray_session(address):
            _quiet_data()
            size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            table = pa.table({"index": pa.array(np.arange(n, dtype=np.int64)), "text": flat})
            blocks = max(1, min(n // 1000, size * 4))
            step = -(-n // blocks)
            items = ray.data.from_arrow([table.slice(lo, step) for lo in range(0, n, step)])
            banded = items.map_batches(band_rows, batch_size=None, batch_format="pyarrow",
                                       fn_kwargs={"config": config}, concurrency=size)
            pairs = banded.groupby(["band", "key"], num_partitions=size * 4).map_groups(
                bucket_verified_pairs, batch_format="pyarrow", fn_kwargs={"config": config})
            for piece in pairs.iter_batches(batch_size=None, batch_format="numpy"):
                if len(piece["earlier"]):
                    parts.append(np.stack([piece["earlier"], piece["later"]], axis=1))
        if not parts:
            return n, np.empty((0, 2), dtype=np.int64)
        found = np.concatenate(parts).astype(np.int64)
        code = np.unique(found[:, 0] * n + found[:, 1])  # a pair shares one or more bands
        return n, np.stack([code // n, code % n], axis=1)

    return PairFinder(find)

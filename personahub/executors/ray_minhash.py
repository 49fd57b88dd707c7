"""Stage 1 of ``personas dedup --executor ray``: its band buckets found and verified on Ray.

At a billion personas the signatures cannot all come to one machine, so nothing per text does.

The command's stage (``spill``) runs the local out-of-core stage's steps (``minhash_spill``) as
Ray tasks over the job's work folder, as datatrove's MinHash runs over shared storage: the
driver writes the survivors' texts as Parquet files there (DuckDB's COPY, no row a Python
object), a task a file signs its texts and writes their band rows by partition, a task a
partition groups its buckets, and a task a chunk verifies its pairs. The flags are the local
stage's; the driver holds a reference a running task, where a Ray Data sort held one per map
block and partition (the square of the hub), and the folder holds each text's band rows and
check data once, where the sort's spill carried its features once per band. On a cluster of
several machines the folder (beside the database) must be on storage every node mounts at the
same path.

``find`` (the in-memory stage's, whose caller holds every id anyway) needs no storage shared by
the nodes: it shuffles band rows through Ray Data's pull-based sort shuffle on a partition hash
of (band, key). Ray Data's settings are those a Dataset was made under, so the pass makes its
input Dataset after it sets them: before, Ray 2.60's default shuffle v2 ran instead, whose map
task merged a node's inputs up to 1 GiB.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from personahub.core.errors import PersonahubError
from personahub.core.optional import ray
from personahub.executors.ray_batches import _quiet_data, ray_session
from personahub.personas.dedup import DedupConfig, PairFinder
from personahub.personas.hub_memory import SAMPLE_MEMORY_MB, held_memory
from personahub.personas.minhash import (
    FeatureSets,
    MinHashConfig,
    _slot_bytes,
    band_bucket_pairs,
    band_keys,
    bucket_pairs,
    exact_jaccard,
    recall_lsh_params,
    signature_keys,
    sketch,
    slot_low_bytes,
    slot_prefilter,
)
from personahub.personas.minhash_spill import (
    Progress,
    Spilled,
    SpillPlan,
    WorkFolder,
    plan_record,
    sign_written_chunks,
    spilled_stages,
)
from personahub.personas.store import copy_survivor_ranges, survivor_count, survivor_fingerprint

_EMPTY = np.iinfo(np.uint32).max  # a text without words; it gets no band rows
_PAIR_SCHEMA = pa.schema([("earlier", pa.int64()), ("later", pa.int64())])
_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # separates equal keys of different bands
SHUFFLE = "sort_shuffle_pull_based"  # a ray.data ShuffleStrategy value (below)
DEFAULT_MEMORY_MB = 1024  # a task's working memory when the caller gives none (dedup's default)
# A band row's bytes in a Ray task at its largest: its Arrow row (the slots' low bytes, its text's
# feature list, key, index), the sort's sorted and partitioned copies and the reduce's merge, and
# the pairs its bucket makes. A text's signing (its tokens and signature) is beside its rows.
ROW_BYTES = 4_000
TEXT_BYTES_SIGN = 6_000
BLOCK_SHARE = 8  # a block of band rows is at most this share of a task's memory (the sort's map)


@dataclass(frozen=True)
class RayPlan:
    """How stage 1 splits over Ray so each task works within the memory setting, whatever n.

    Attributes:
        texts_per_task: Texts a map task signs and bands at a time.
        partitions: Reduce tasks of the shuffle, each one partition's band rows.
        block_bytes: Ray Data's largest block of band rows (``target_max_block_size``).
    """

    texts_per_task: int
    partitions: int
    block_bytes: int

    @classmethod
    def for_memory(cls, texts: int, memory_mb: int, config: MinHashConfig,
                   workers: int = 1) -> RayPlan:
        """Split n texts so that a map or reduce task holds about memory_mb MiB.

        Args:
            texts: Texts in the stage.
            memory_mb: Each task's working memory in MiB (``--memory-mb``).
            config: Stage 1's settings (its bands).
            workers: Ray workers; there are at least this many partitions.

        Returns:
            The plan: texts per map task and partitions both follow memory_mb, and the number of
            partitions grows with the texts.
        """
        if memory_mb < 1:
            raise ValueError(f"memory_mb must be >= 1, got {memory_mb}")
        share = memory_mb * (1 << 20)
        rows = recall_lsh_params(float(config.threshold), config.num_perm)[0] + 1  # per text
        per_task = max(256, share // (TEXT_BYTES_SIGN + rows * ROW_BYTES))
        partitions = max(1, workers, math.ceil(texts * rows * ROW_BYTES / share))
        return cls(texts_per_task=int(per_task), partitions=int(partitions),
                   block_bytes=max(1 << 20, share // BLOCK_SHARE))


def _band_schema(num_perm: int) -> pa.Schema:
    return pa.schema([("part", pa.int32()), ("band", pa.int32()), ("key", pa.uint64()),
                      ("index", pa.int64()), ("slots", pa.binary(num_perm)),
                      ("features", pa.large_list(pa.uint32()))])


def band_rows(block: pa.Table, config: MinHashConfig, partitions: int) -> pa.Table:
    """One row per (text, band) of a block and one for its signature key, with the text's
    slot low bytes and feature set."""
    # numpy, not the compiled kernels: numba adds about 150 MB to each worker
    sigs, features = sketch(block.column("text").to_pylist(), config, compiled=False)
    index = block.column("index").to_numpy().astype(np.int64)
    kept = np.flatnonzero(sigs[:, 0] != _EMPTY)
    schema = _band_schema(config.num_perm)
    if kept.size == 0:
        return schema.empty_table()
    keys = band_keys(sigs[kept], config)
    keys = np.concatenate([keys, signature_keys(keys)[:, None]], axis=1)  # (kept, bands + 1)
    bands = keys.shape[1]
    band = np.tile(np.arange(bands, dtype=np.int32), kept.size)
    flat = keys.reshape(-1)
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
    """Return the verified (earlier, later) pairs of one partition's buckets, as the local stage finds
    them."""
    if rows.num_rows < 2:
        return _PAIR_SCHEMA.empty_table()
    rows = rows.take(pa.array(np.argsort(rows.column("index").to_numpy(), kind="stable")))
    index = rows.column("index").to_numpy()
    band = rows.column("band").to_numpy()
    keys = rows.column("key").to_numpy()
    slots = _slot_array(rows.column("slots"), config.num_perm)
    prefilter = slot_prefilter(slots, config)
    signature_band, _ = recall_lsh_params(float(config.threshold), config.num_perm)
    head = _slot_bytes(slots, min(config.num_perm, 64), bits=4)
    found = []
    for b in np.unique(band):
        members = np.flatnonzero(band == b)  # ascending, so by text index within each bucket
        if b == signature_band:  # identical signatures need no verifying
            found.append(bucket_pairs(keys[members], members, 1))
        else:
            found.append(prefilter(band_bucket_pairs(keys[members], members, head[members],
                                                      int(b), config)))
    pairs = np.concatenate(found)
    if len(pairs) == 0:
        return _PAIR_SCHEMA.empty_table()
    # a pair may meet in several bands: check it once
    code = (index[pairs[:, 0]].astype(np.uint64) << np.uint64(32)) | index[pairs[:, 1]].astype(np.uint64)
    pairs = pairs[np.unique(code, return_index=True)[1]]
    sets = rows.column("features").combine_chunks()
    features = FeatureSets.from_counts(sets.flatten().to_numpy(zero_copy_only=False),
                                       sets.value_lengths().to_numpy(zero_copy_only=False))
    kept = pairs[exact_jaccard(features, pairs) >= config.threshold]
    return pa.table({"earlier": index[kept[:, 0]], "later": index[kept[:, 1]]}, schema=_PAIR_SCHEMA)


def _node_reaches(path: str) -> bool:
    return os.access(path, os.R_OK | os.W_OK)


def check_nodes_reach(path: Path) -> None:
    """Refuse to start the pass unless every Ray node with CPUs can read and write the folder
    path (the job's folder must be on storage every node mounts at the same path)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check = ray.remote(num_cpus=0)(_node_reaches)
    nodes = [node for node in ray.nodes()
             if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0]
    answers = ray.get([check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote(str(path)) for node in nodes])
    blind = [node.get("NodeManagerAddress", node["NodeID"])
             for node, reads in zip(nodes, answers, strict=True) if not reads]
    if blind:
        raise PersonahubError(f"dedup --executor ray: Ray node(s) {', '.join(blind)} cannot "
                              f"read and write {path}; put the database on storage every node "
                              "mounts at the same path")


def _shuffled_pairs(texts: Callable[[], Any], sign: Callable[..., Iterator[pa.Table]],
                    sign_kwargs: dict[str, object], n: int, config: MinHashConfig,
                    workers: int | None, memory_mb: int) -> np.ndarray:
    """Return the verified (earlier, later) pairs of n texts, each once.

    texts makes the pass's input (a Ray Dataset) once the pass's Ray Data settings are in place:
    a Dataset keeps a copy of the settings it was made under, and every Dataset made from it
    keeps that copy. sign maps each of its blocks to band rows, with the plan's texts per task
    and partitions given as ``texts_per_task`` and ``partitions`` beside sign_kwargs.
    """
    size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    plan = RayPlan.for_memory(n, memory_mb, config, size)
    # Ray Data's older hash shuffle gathers each aggregator's share of every partition in that
    # actor's memory until the last block is in: a share of the whole shuffle, growing with the
    # hub. The sort shuffle leaves map outputs in the object store (spilled past its size) and
    # reduces one partition a task. Its partitions are given (one per value of ``part``): left
    # to itself, it makes as many as there are blocks. Set for this pass only.
    # Ray Data's shuffle v2 (its default from 2.5x) merges a node's map inputs into one task of
    # up to shuffle_input_batch_bytes (1 GiB) before it sorts them: held to a block too.
    context = ray.data.DataContext.get_current()
    settings = {"shuffle_strategy": SHUFFLE, "target_max_block_size": plan.block_bytes,
                "shuffle_input_batch_bytes": plan.block_bytes}
    before = {name: getattr(context, name) for name in settings if hasattr(context, name)}
    for name in before:
        setattr(context, name, settings[name])
    parts: list[np.ndarray] = []
    try:
        banded = texts().map_batches(sign, batch_size=None, batch_format="pyarrow",
                                     fn_kwargs={**sign_kwargs, "config": config,
                                                "texts_per_task": plan.texts_per_task,
                                                "partitions": plan.partitions},
                                     compute=ray.data.TaskPoolStrategy(size=size))
        # each reduce task merges one partition's rows (all its buckets) into one block
        ordered = banded.sort("part", boundaries=list(range(1, plan.partitions)))
        pairs = ordered.map_batches(partition_verified_pairs, batch_size=None,
                                    batch_format="pyarrow", fn_kwargs={"config": config},
                                    compute=ray.data.TaskPoolStrategy(size=size))
        for piece in pairs.iter_batches(batch_size=None, batch_format="numpy"):
            if len(piece["earlier"]):
                parts.append(np.stack([piece["earlier"], piece["later"]], axis=1))
    finally:
        for name, value in before.items():
            setattr(context, name, value)
    if not parts:
        return np.empty((0, 2), dtype=np.int64)
    found = np.concatenate(parts).astype(np.int64)
    code = np.unique(found[:, 0] * n + found[:, 1])  # a pair shares one or more bands
    return np.stack([code // n, code % n], axis=1)


def _sign_blocks(batch: pa.Table, config: MinHashConfig, texts_per_task: int,
                 partitions: int) -> Iterator[pa.Table]:
    """Band rows of a block of (index, text), texts_per_task at a time."""
    for start in range(0, batch.num_rows, texts_per_task):
        yield band_rows(batch.slice(start, texts_per_task), config, partitions)


def _put_block(texts: list[str], start: int) -> object:
    """Put one batch of texts, numbered from start, in Ray's object store."""
    table = pa.table({"index": pa.array(np.arange(start, start + len(texts), dtype=np.int64)),
                      "text": pa.array(texts, pa.string())})
    return ray.put(table)


def spill_folder(folder: Path) -> tuple[Path, Path]:
    """Empty folder and return its id and mark subfolders, laid out as the local spill's."""
    if folder.exists():
        shutil.rmtree(folder)
    sign, marks = folder / "sign", folder / "marks"
    sign.mkdir(parents=True)
    marks.mkdir()
    return sign, marks


def _write_survivors(con: duckdb.DuckDBPyConnection, batch_rows: int,
                     folder: Path) -> list[int]:
    """Write the survivors' ids and texts to Parquet files in folder a range at a time; return
    the texts in each file.

    DuckDB is held to ``SAMPLE_MEMORY_MB`` while it writes: with the command's quarter of
    ``--memory-mb`` its pool kept the blocks of the hub the scan read, up to that limit, on the
    driver all through the shuffle.
    """
    with held_memory(con, SAMPLE_MEMORY_MB):
        return [rows for _, rows in copy_survivor_ranges(con, batch_rows, folder)]


class RayTasks(Executor):
    """Runs functions as Ray tasks of one CPU each, at most ``workers`` at a time.

    A submit waits while ``workers`` tasks run, so the driver holds a reference a running task
    and a future a submitted one, never one per piece of data.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._tasks: dict[Callable[..., Any], Any] = {}
        self._running: list[Any] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        task = self._tasks.get(fn)
        if task is None:  # named by the step, as a worker's title shows it: ray::bucket_task
            name = getattr(fn, "__name__", "task").strip("_")
            task = self._tasks[fn] = ray.remote(num_cpus=1)(fn).options(name=name)
        while len(self._running) >= self.workers:
            _, self._running = ray.wait(self._running, num_returns=1)
        ref = task.remote(*args, **kwargs)
        self._running.append(ref)
        future: Future[Any] = ref.future()
        return future


def _resumable(folder: WorkFolder, plan: SpillPlan, config: MinHashConfig,
               fingerprint: str) -> SpillPlan | None:
    """Return plan over the chunks an earlier attempt wrote to folder, if that attempt ran the
    same plan over the same hub (its survivors' files are then reused); else None."""
    stored = folder.root / "plan.json"
    try:
        record = json.loads(stored.read_text(encoding="utf-8"))
        starts = record["plan"]["starts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    earlier = plan.in_chunks(np.diff(np.asarray(starts, dtype=np.int64)).tolist())
    if record != plan_record(earlier, config, fingerprint):
        return None
    if not all(folder.chunk(c, "ids.parquet").exists() for c in range(earlier.chunks)):
        return None
    return earlier


def minhash_pair_finder(address: str | None = None, workers: int | None = None) -> PairFinder:
    """Stage 1 on Ray up to its verified pairs or marks; no signature comes to the driver.

    ``find`` (the in-memory stage's, whose caller holds every id) puts each batch of texts in
    the object store as it is read and shuffles band rows through Ray Data, each task within
    ``DEFAULT_MEMORY_MB``: no storage shared by the nodes is needed.

    ``spill`` (the command's) runs the local out-of-core stage's steps as Ray tasks over its
    work folder: the driver writes the survivors' files, and tasks sign them, group each
    partition's buckets and verify each chunk's pairs from the folder's files, each within the
    command's memory_mb. The driver holds neither texts nor ids, and a reference a
    running task; every Ray node must read and write the folder. A killed attempt over the same
    hub and plan resumes from the chunks and partitions it finished.
    """

    def find(texts: Iterator[list[str]], config: MinHashConfig) -> tuple[int, np.ndarray]:
        with ray_session(address):
            _quiet_data()
            blocks: list[object] = []
            n = 0
            for batch in texts:
                if batch:
                    blocks.append(_put_block(batch, n))
                    n += len(batch)
            if n == 0:
                return 0, np.empty((0, 2), dtype=np.int64)
            return n, _shuffled_pairs(lambda: ray.data.from_arrow_refs(blocks), _sign_blocks,
                                      {}, n, config, workers, DEFAULT_MEMORY_MB)

    def spill(con: duckdb.DuckDBPyConnection, config: DedupConfig, folder: Path,
              memory_mb: int = DEFAULT_MEMORY_MB, progress: Progress | None = None) -> Spilled:
        # memory_mb is each task's: the local plan's share of one process
        plan = SpillPlan.for_memory(max(1, survivor_count(con)), memory_mb, config.minhash)
        work = WorkFolder(folder)
        fingerprint = survivor_fingerprint(con)
        resumed = _resumable(work, plan, config.minhash, fingerprint)
        if resumed is None:
            sign, _ = spill_folder(folder)
            plan = plan.in_chunks(_write_survivors(con, min(config.batch_rows, plan.chunk_rows),
                                                   sign))
            work.prepare(plan, config.minhash, fingerprint)
        else:
            plan = resumed
        if plan.texts == 0:
            if progress:
                progress("minhash", 0, 0)
            return Spilled(texts=0, marks=0, folder=folder)
        with ray_session(address):
            check_nodes_reach(folder)
            pool = RayTasks(workers or max(1, int(ray.cluster_resources().get("CPU", 1))))
            sign_written_chunks(work, plan, config.minhash, pool, progress)
            return spilled_stages(work, plan, config.minhash, pool, progress)

    return PairFinder(find, spill)

"""Ray Data passes (the ``[ray]`` extra): a job's batches of model calls, and MinHash signatures.

Only WHERE the calls run changes. The driver keeps the job kernel: it plans the batches, opens
the job, and commits each batch in batch order (``core/kernel.py``; ``ray_executor.RayExecutor``
drives this module). The work items go to Ray Data ``map_batches`` with an actor class; each
actor builds its own model client from the driver client's ``LLMSettings`` and runs a batch's
calls on its own event loop, bounded by the same ``--concurrency`` (so ``--concurrency`` and
``--rps`` hold per worker).

Every job whose batches are planned ahead takes the one path ``_stream``: a job spec with
independent batches (synthesis, from-text) ships its items to ``_BatchActor``, which runs the
spec's own asker (``run_batch``; a persona's item and solution are asked on the same worker).
A job whose next batch depends on the last commit (a run, an expansion) asks each batch of a
job-long actor pool instead (``ray_actors``): a round trip, not a Ray Data pass.

Answers come back as Parquet shards under a job folder next to the database (``<db>.jobs/<job>/``,
``personahub/executors/shards.py``), not through the driver's memory. Each worker writes each finished
Ray Data batch as one shard (a temporary name, then a rename: the completion marker) and returns
only the shard's name; the driver reads each job batch's answers from the shards once it and
every batch before it are answered, commits it, and deletes a shard once every answer in it is
committed. So a driver that dies loses no paid answer: a resume commits the answers the shards
hold without asking the model (a temporary or unreadable file is ignored: its answers are asked
again), and what waits for its turn waits on disk. The batch commit stays the resume's record of
what is done: an answer is in the database or in a shard, and a shard row whose item is
committed is never read again, so nothing is lost or doubled. On a cluster the database's folder
must be on a filesystem every worker mounts at the same path (a worker that cannot see the job
folder refuses to start).

Answers come back in any order; the driver (``in_batch_order``, ``shards.batches_from_shards``)
holds each batch until it is complete and the batches before it are committed, so the same seed
gives the same rows whatever the number of workers or the order they finish in. Every answer
carries its calls' records and new cache entries (a shard's ``calls`` column), which the batch
commit writes.

``minhash_signer`` computes stage 1's MinHash signatures (the same function as the local
stage, so bit-identical) in Ray Data ``map_batches`` tasks over blocks of texts; they come back
to the driver, which bands, verifies and marks. ``personas dedup --executor ray`` goes further
(``ray_minhash``: band buckets through a shuffle, only verified pairs come back).

No secret travels through Ray: a spec carrying one (``user:password@`` or a query value other
than ``model``) is refused; keys are read on the worker from its environment
(``OPENAI_API_KEY``, or the variable ``?api_key_env=NAME`` names), as on the driver.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa

from personahub.core.call_spill import WorkerSpill
from personahub.core.contracts import StructuredCaller
from personahub.core.errors import PersonahubError
from personahub.core.optional import ray
from personahub.executors.order import in_batch_order
from personahub.executors.shards import (
    ShardStore,
    batches_from_shards,
    calls_json,
    check_folder,
    write_shard,
)
from personahub.models.client import LLMSettings, make_client, redact_spec
from personahub.personas.dedup import Signer
from personahub.personas.minhash import FeatureSets, MinHashConfig, sketch

# blocks of work items per worker: a block's batches run concurrently on its actor (Ray Data
# runs up to 4 of an async actor's batches at once), and more blocks balance the workers
BLOCKS_PER_WORKER = 4


def check_ray_client(client: StructuredCaller) -> LLMSettings:
    """The settings a worker rebuilds ``client`` from; refuses a client that has none (a test
    double) or whose spec carries a secret (it would sit in Ray's object store and logs)."""
    settings = getattr(client, "settings", None)
    if not isinstance(settings, LLMSettings):
        raise PersonahubError("--executor ray: the model client must be built from --llm "
                              "(a worker rebuilds it from the same settings)")
    if redact_spec(settings.spec) != settings.spec:
        raise PersonahubError(f"--executor ray: --llm {redact_spec(settings.spec)} carries a "
                              "credential; name the variable holding it (?api_key_env=NAME) and "
                              "set it on the workers, so no secret passes through Ray")
    return settings


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Use the Ray this process is connected to, else connect to ``address`` (None: the
    ``RAY_ADDRESS`` variable, else a local Ray for this job, shut down after it)."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
             log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _quiet_data() -> None:
    """No Ray Data progress bars: the command draws its own."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


class _BatchActor:
    """One Ray worker running a job spec's asker: a model client rebuilt from the driver's
    ``LLMSettings`` (None for a job that calls no model) answering Ray Data batches of the
    job's items. ``__call__`` is an async generator, so Ray Data runs several batches at once
    on the actor's one event loop (the client's ``--concurrency`` bounds the calls in flight),
    as a model endpoint's latency wants. Each batch's answers are written to the job ``folder``
    as one shard (the asker is its ``ShardCodec``) and only the shard's name comes back."""

    def __init__(self, context: bytes, folder: str | None = None,
                 spill: WorkerSpill | None = None) -> None:
        settings, asker = pickle.loads(context)
        if folder is None:
            raise RuntimeError("a job spec's batches travel as shards: give the job folder")
        check_folder(folder)
        self.folder = folder
        self.asker = asker
        self.client = make_client(settings) if settings is not None else None
        if self.client is not None and spill is not None:  # attempts outlive a killed driver
            self.client.spill_to(spill.open())

    async def __call__(self, rows: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        items = [pickle.loads(blob) for blob in rows["item"]]
        answers = await self.asker.run_batch(items, self.client)
        shard = write_shard(self.folder, [str(k) for k in rows["key"]],
                            [self.asker.dump(a) for a in answers],
                            [calls_json(self.asker.calls(a)) for a in answers])
        yield {"index": np.asarray(rows["index"]), "answer": _names(shard, len(answers))}


def _names(shard: str, count: int) -> np.ndarray:
    names = np.empty(count, dtype=object)
    names[:] = [shard] * count
    return names


def _stream(actor: type, context: bytes, items: Sequence[object], sizes: Sequence[int], *,
            batch_size: int, address: str | None, workers: int | None,
            store: ShardStore | None = None, keys: Sequence[str] = (),
            spill: WorkerSpill | None = None) -> Iterator[list[Any]]:
    """The answers to ``items`` (the job's batches of ``sizes``, flattened), asked by a pool of
    ``actor(context)`` through Ray Data ``map_batches`` and yielded batch by batch, in batch
    order: the one path every job's model calls take on Ray.

    With a ``store`` (the job folder; ``keys``: each item's stable key) the workers write their
    answers as shards and what is yielded are the shards' rows: an item an earlier pass left an
    answer for is not asked again, and each batch's shards go once the caller has committed it
    (it asks for the next batch). ``spill``: where the workers spill their attempts (for an
    actor that takes it: ``_BatchActor``)."""
    if not items:
        return
    send = list(range(len(items)))
    if store is not None:
        store.open(keys)
        send = [i for i, key in enumerate(keys) if key not in store.ready]
        if not send:  # every answer is in a shard already: no Ray pass
            yield from batches_from_shards((), sizes, store, keys)
            return
    rows = [{"index": i, "key": keys[i] if store is not None else "", "item": pickle.dumps(items[i])}
            for i in send]
    with ray_session(address):
        _quiet_data()
        size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        blocks = min(max(len(sizes), -(-len(rows) // batch_size)), size * BLOCKS_PER_WORKER)
        kwargs: dict[str, Any] = {"context": context,
                                  "folder": None if store is None else str(store.folder)}
        if spill is not None:
            kwargs["spill"] = spill
        answered = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            actor, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=size),
            fn_constructor_kwargs=kwargs)
        pieces = iter(answered.iter_batches(batch_size=None, batch_format="numpy"))
        try:
            if store is None:
                yield from in_batch_order(pieces, sizes)
            else:
                yield from batches_from_shards(pieces, sizes, store, keys)
        finally:  # a job stopped mid-stream releases its actors now, not when garbage is collected
            close = getattr(pieces, "close", None)
            if close is not None:
                close()


def _blobs(values: Sequence[object]) -> np.ndarray:
    blobs = np.empty(len(values), dtype=object)
    blobs[:] = [pickle.dumps(v) for v in values]
    return blobs


def _sign(rows: Mapping[str, Any], config: MinHashConfig) -> dict[str, Any]:
    """One block's signatures and feature sets (the same function as the local stage:
    bit-identical); each row's features travel as a variable-length column."""
    sigs, features = sketch(list(rows["text"]), config)
    bounds = features.offsets
    feats = np.empty(len(features), dtype=object)
    for i in range(len(features)):
        feats[i] = features.values[bounds[i]:bounds[i + 1]]
    return {"index": np.asarray(rows["index"]), "sig": sigs, "feat": feats}


def minhash_signer(address: str | None = None, workers: int | None = None) -> Signer:
    """Stage 1's ``Signer`` on Ray: the texts go to Ray Data ``map_batches`` tasks in blocks,
    their signatures come back to the driver, which does the banding and verification
    (``personas.minhash.duplicates_from_signatures``): the flags are the local stage's."""

    def sign(texts: Iterator[list[str]], config: MinHashConfig
             ) -> Iterator[tuple[np.ndarray, FeatureSets]]:
        batches = list(texts)
        flat = [text for batch in batches for text in batch]
        if not flat:
            return
        out = np.empty((len(flat), config.num_perm), dtype=np.uint32)
        feats: list[np.ndarray] = [np.empty(0, dtype=np.uint32)] * len(flat)
        seen = np.zeros(len(flat), dtype=bool)
        with ray_session(address):
            _quiet_data()
            size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            table = pa.table({"index": pa.array(np.arange(len(flat))), "text": flat})
            blocks = max(1, min(len(flat) // 1000, size * 4))
            step = -(-len(flat) // blocks)
            items = ray.data.from_arrow([table.slice(lo, step) for lo in range(0, len(flat), step)])
            signed = items.map_batches(_sign, batch_size=None, fn_kwargs={"config": config},
                                       compute=ray.data.TaskPoolStrategy(size=size))
            for piece in signed.iter_batches(batch_size=None, batch_format="numpy"):
                out[piece["index"]] = piece["sig"]
                seen[piece["index"]] = True
                for index, values in zip(piece["index"], piece["feat"], strict=True):
                    feats[int(index)] = np.asarray(values, dtype=np.uint32)
        if not seen.all():
            raise PersonahubError(f"minhash on Ray: {int((~seen).sum())} texts came back unsigned")
        start = 0
        for batch in batches:
            part = feats[start:start + len(batch)]
            counts = np.array([len(v) for v in part], dtype=np.int64)
            values = np.concatenate(part) if part else np.empty(0, dtype=np.uint32)
            yield out[start:start + len(batch)], FeatureSets.from_counts(values, counts)
            start += len(batch)

    return sign

"""Ray Data passes (the ``[ray]`` extra): a job's batches of model calls, and MinHash signatures.

Only where the calls run changes: the driver plans the batches and commits each in batch order,
while actors rebuild the model client from its settings and answer the items (concurrency and
rate limits hold per worker). Jobs whose next batch depends on the last commit use the actor
pool instead.

Workers write answers as Parquet shards next to the database and return only the shard's name,
so a driver that dies loses no paid answer: a resume commits what the shards hold without
asking again. Answers arrive in any order; the driver holds each batch until it and those
before it are complete, so a seed gives the same rows whatever the number of workers. On a
cluster every worker must mount the database's folder at the same path. No secret travels
through Ray: keys are read from the worker's environment.
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

# several blocks per worker: an async actor runs up to 4 batches at once, and more blocks
# balance the workers
BLOCKS_PER_WORKER = 4


def check_ray_client(client: StructuredCaller) -> LLMSettings:
    """Return the settings a worker rebuilds the client from; refuse a secret in the spec, which
    would sit in Ray's object store and logs."""
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
    """Use the connected Ray, else connect to address (or ``RAY_ADDRESS``), else start a local
    Ray for this job.

    Without an address the local Ray is a new one (``address="local"``): Ray's own default
    attaches to the last cluster ``ray start`` began on this machine, which may be another
    user's or job's. ``--ray-address auto`` joins that cluster on purpose."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
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
    """One Ray worker answering batches of a job's items with the job spec's asker.

    An async generator, so Ray Data runs several batches at once on one event loop, as model
    latency wants. Each batch's answers go to one shard; only its name comes back."""

    def __init__(self, context: bytes, folder: str | None = None,
                 spill: WorkerSpill | None = None) -> None:
        settings, asker = pickle.loads(context)
        if folder is None:
            raise RuntimeError("a job spec's batches travel as shards: give the job folder")
        check_folder(folder)
        self.folder = folder
        self.asker = asker
        self.client = make_client(settings) if settings is not None else None
        if self.client is not None and spill is not None:  # so attempts outlive a killed driver
            self.client.spill_to(spill.open())

    async def __call__(self, rows: Mapping[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
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
    """Return the answers to a job's items, asked by a pool of actors and yielded batch by batch.

    With a shard store, an item answered by an earlier pass is not asked again, and a batch's
    shards are deleted once the caller has committed it."""
    if not items:
        return
    send = list(range(len(items)))
    if store is not None:
        store.open(keys)
        send = [i for i, key in enumerate(keys) if key not in store.ready]
        if not send:  # every answer is in a shard already
            yield from batches_from_shards((), sizes, store, keys)
            return
    rows = [{"index": i, "key": keys[i] if store is not None else "", "item": pickle.dumps(items[i])}
            for i in send]
    with ray_session(address):
        _quiet_data()
        size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        blocks = min(max(len(sizes), -(-len(rows) // batch_size)), size * BLOCKS_PER_WORKER)
        kwargs: dict[str, bytes | str | WorkerSpill | None] = {"context": context,
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
        finally:  # release the actors now, not when garbage is collected
            close = getattr(pieces, "close", None)
            if close is not None:
                close()


def _blobs(values: Sequence[object]) -> np.ndarray:
    blobs = np.empty(len(values), dtype=object)
    blobs[:] = [pickle.dumps(v) for v in values]
    return blobs


def _sign(rows: Mapping[str, np.ndarray], config: MinHashConfig) -> dict[str, np.ndarray]:
    """One block's signatures and feature sets, computed as the local stage does."""
    # numpy, not the compiled kernels: numba adds about 150 MB to each worker
    sigs, features = sketch(list(rows["text"]), config, compiled=False)
    bounds = features.offsets
    feats = np.empty(len(features), dtype=object)
    for i in range(len(features)):
        feats[i] = features.values[bounds[i]:bounds[i + 1]]
    return {"index": np.asarray(rows["index"]), "sig": sigs, "feat": feats}


def minhash_signer(address: str | None = None, workers: int | None = None) -> Signer:
    """MinHash signing on Ray; banding and verification stay on the driver, so the flags
    equal the local stage's."""

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

"""The Ray executor (the ``[ray]`` extra): any spec's batches run on Ray; the driver commits them.

A spec with independent batches is shipped whole in one Ray Data pass, answers coming back as
shards so a dead driver loses no paid answer. A job calling no model runs on the driver. Any
other spec, whose next batch depends on the last commit, keeps its batches on the driver and
asks a job-long actor pool. Workers spill each final attempt so no billed call is lost. No spec
imports Ray; the rows are the same either way.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar, cast

from personahub.core.call_spill import WorkerSpill
from personahub.core.contracts import StructuredCaller
from personahub.core.kernel import Asker, JobContext, JobSpec, ShardCodec
from personahub.executors.ray_actors import RayCaller, ray_caller
from personahub.executors.ray_batches import (
    _BatchActor,
    _stream,
    check_ray_client,
    ray_session,
)
from personahub.executors.shards import ShardStore, calls_of, clear_job_folder, job_folder

C = TypeVar("C")
B = TypeVar("B")
R = TypeVar("R")
S = TypeVar("S")


class RayExecutor:
    """Batches on a Ray cluster (default: RAY_ADDRESS, else a local Ray) with a pool of actors."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers
        # a child job asks through its parent's pool: a second pool would wait forever for
        # the CPUs the first holds
        self._pool: RayCaller | None = None

    def check(self, spec: JobSpec[C, B, R, S], ctx: JobContext[C]) -> None:
        """Refuse a client the workers cannot rebuild."""
        if ctx.client is not None:
            check_ray_client(ctx.client)

    def session(self, ctx: JobContext[C]) -> AbstractContextManager[None]:
        """One Ray connection for the whole job (its children too)."""
        return ray_session(self.address)

    def batches(self, spec: JobSpec[C, B, R, S], ctx: JobContext[C], asker: Asker[B, R],
                plan: Iterator[B]) -> Iterator[tuple[B, R]]:
        if ctx.client is None and not spec.independent_batches:  # no model: run here
            for batch in plan:
                yield batch, ctx.run(asker.run_batch(batch, cast(StructuredCaller, None)))
            return
        if spec.independent_batches:
            planned = list(plan)
            yield from zip(planned, self._shipped(ctx, asker, planned), strict=True)
            return
        if self._pool is not None and self._pool.inner is ctx.caller:  # a child job
            for batch in plan:
                yield batch, ctx.run(asker.run_batch(batch, self._pool))
            return
        lost = (f"the {spec.noun} {ctx.job_id} stopped after its last committed batch: resume "
                f"with {spec.resume_hint(ctx.job_id, ctx.db)}")
        with ray_caller(ctx.caller, address=self.address, workers=self.workers,
                        run_id=ctx.job_id, lost=lost, spill=_worker_spill(ctx)) as caller:
            self._pool = caller
            try:
                for batch in plan:
                    yield batch, ctx.run(asker.run_batch(batch, caller))
            finally:
                self._pool = None

    def _shipped(self, ctx: JobContext[C], asker: Asker[B, R],
                 batches: Sequence[B]) -> Iterator[R]:
        """Each batch's answers from one Ray Data pass, in batch order."""
        codec = cast(ShardCodec[object, object], asker)
        items = [item for batch in batches for item in cast(Sequence[object], batch)]
        sizes = [len(cast(Sequence[object], batch)) for batch in batches]
        keys = [codec.key(item) for item in items]
        client = cast(StructuredCaller, ctx.client)
        context = pickle.dumps((check_ray_client(client) if client is not None else None, asker))
        store = ShardStore(job_folder(ctx.db, ctx.job_id))
        rows = _stream(_BatchActor, context, items, sizes, batch_size=max(sizes, default=1),
                       address=self.address, workers=self.workers, store=store, keys=keys,
                       spill=_worker_spill(ctx))
        start = 0
        for answered in rows:
            mine = items[start:start + len(answered)]
            yield cast(R, [codec.load(item, row["value"], calls_of(row["calls"]))
                           for item, row in zip(mine, answered, strict=True)])
            start += len(answered)

    def finish(self, ctx: JobContext[C]) -> None:
        """Remove the job's shard folder once every answer is committed."""
        clear_job_folder(ctx.db, ctx.job_id)


def _worker_spill(ctx: JobContext[C]) -> WorkerSpill | None:
    """Where the workers spill their attempts; None when the job does not spill (a child job)."""
    if ctx.spill is None:
        return None
    return WorkerSpill.beside(ctx.db, ctx.job_id, ctx.spill.tags)

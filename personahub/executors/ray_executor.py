"""The Ray executor (the ``[ray]`` extra, imported on first use): where any spec's batches run
on Ray, while the kernel on the driver commits them in batch order.

- A spec with ``independent_batches`` (its batches planned ahead, e.g. synthesis) is shipped
  whole: one Ray Data ``map_batches`` pass over every item of its batches, on a pool of actors
  (``ray_batches._BatchActor``) that rebuild the model client from the driver client's
  ``LLMSettings`` and run ``asker.run_batch``. Answers come back as Parquet shards with
  completion markers under the job's folder (``personahub/executors/shards.py``, the spec's asker is
  the ``ShardCodec``), so a driver that dies loses no paid answer: the resume commits them.
- A job that calls no model (dedup with an offline embedder) runs its batches on the driver;
  the spec may still send whole stages to Ray (``minhash_source``).
- Any other spec (its next batch depends on the last commit: a run's steps, an expansion's
  levels) keeps ``run_batch`` on the driver and hands it a remote caller: the job-long actor
  pool of ``ray_actors.RayCaller``, a round trip per set of calls. A child job run from one
  of those batches (a run's setup expansion) asks through the same pool.

Either way each worker spills every attempt as it is final into the job's worker folder
(``core.call_spill.WorkerSpill``), which the kernel collects when the job ends or resumes: a
driver killed mid-batch loses no billed attempt its workers made.

No spec imports Ray or knows where it runs; the rows are the same either way.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar, cast

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

B = TypeVar("B")
R = TypeVar("R")


class RayExecutor:
    """Batches on a Ray cluster at ``address`` (None: ``RAY_ADDRESS``, else a local Ray for the
    job) with ``workers`` actors (None: one per cluster CPU)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers
        # the actor pool a job holds while its batches run: a child job (a run's setup
        # expansion, run from the run's first batch) asks through it, since a second pool would
        # wait for the CPUs the first one holds (with one worker per CPU, forever)
        self._pool: RayCaller | None = None

    def check(self, spec: JobSpec[Any, Any, Any, Any], ctx: JobContext[Any]) -> None:
        """A worker must be able to rebuild the client (built from --llm, no credential in it)."""
        if ctx.client is not None:
            check_ray_client(ctx.client)

    def session(self, ctx: JobContext[Any]) -> AbstractContextManager[None]:
        """One Ray connection for the whole job (its children too)."""
        return ray_session(self.address)

    def batches(self, spec: JobSpec[Any, B, R, Any], ctx: JobContext[Any], asker: Asker[B, R],
                plan: Iterator[B]) -> Iterator[tuple[B, R]]:
        if ctx.client is None and not spec.independent_batches:  # no model, no remote caller:
            for batch in plan:  # its batches run here (dedup with an offline embedder)
                yield batch, ctx.run(asker.run_batch(batch, cast(StructuredCaller, None)))
            return
        if spec.independent_batches:
            planned = list(plan)
            yield from zip(planned, self._shipped(ctx, asker, planned), strict=True)
            return
        if self._pool is not None and self._pool.inner is ctx.caller:  # a child of that job
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

    def _shipped(self, ctx: JobContext[Any], asker: Asker[B, R],
                 batches: Sequence[B]) -> Iterator[R]:
        """Each batch's answers from one ``map_batches`` pass, in batch order, through shards."""
        codec = cast(ShardCodec[Any, Any], asker)
        items = [item for batch in batches for item in cast(Sequence[Any], batch)]
        sizes = [len(cast(Sequence[Any], batch)) for batch in batches]
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

    def finish(self, ctx: JobContext[Any]) -> None:
        """Every answer is committed: the job's shard folder goes."""
        clear_job_folder(ctx.db, ctx.job_id)


def _worker_spill(ctx: JobContext[Any]) -> WorkerSpill | None:
    """Where the job's workers spill their attempts, when the job spills (the kernel collects
    the workers' files with its own: ``core.call_spill``); None for a job that does not (a child
    job, whose parent spills, or a client without ``spill_to``)."""
    if ctx.spill is None:
        return None
    return WorkerSpill.beside(ctx.db, ctx.job_id, ctx.spill.tags)

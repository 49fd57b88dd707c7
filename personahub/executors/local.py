"""The local executor: a job's batches asked on the job's own event loop, one after another."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar, cast

from personahub.core.contracts import StructuredCaller
from personahub.core.kernel import Asker, JobContext, JobSpec
from personahub.executors.shards import clear_job_folder

C = TypeVar("C")
B = TypeVar("B")
R = TypeVar("R")
S = TypeVar("S")


class LocalExecutor:
    """Runs batches on the job's loop; the next is planned only after the last is committed."""

    name = "local"

    def check(self, spec: JobSpec[C, B, R, S], ctx: JobContext[C]) -> None:
        """Nothing to refuse: any spec runs here."""

    def session(self, ctx: JobContext[C]) -> AbstractContextManager[None]:
        return nullcontext()

    def batches(self, spec: JobSpec[C, B, R, S], ctx: JobContext[C], asker: Asker[B, R],
                plan: Iterator[B]) -> Iterator[tuple[B, R]]:
        caller = cast(StructuredCaller, ctx.client)  # None when the job calls no model
        for batch in plan:
            yield batch, ctx.run(asker.run_batch(batch, ctx.counting(caller, batch)))

    def finish(self, ctx: JobContext[C]) -> None:
        """Remove what an earlier Ray attempt left on disk."""
        clear_job_folder(ctx.db, ctx.job_id)

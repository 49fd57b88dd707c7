"""--provider-batch for a job spec: the config's batch fields, and an asker wrapper that sends a batch's
model calls as provider batches.

The committed rows are the same as an online job's. Batch handles are stored as they change, so a
resume polls a batch created before a stop instead of creating it again; once a batch's answers
are committed, its provider files are deleted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from personahub.core.call_log import committed_requests
from personahub.core.contracts import StructuredCaller
from personahub.core.engine_options import check_fields, default
from personahub.core.errors import UsageError
from personahub.core.kernel import Asker, JobContext, engine
from personahub.core.provider_batch_records import load_handles, save_handle
from personahub.models.provider_batch_caller import BatchBook, BatchingCaller, check_fallback

B = TypeVar("B")
R = TypeVar("R")
_WINDOW = re.compile(r"^[1-9][0-9]*h$")
#: requests in one provider batch at most, for a job without a batch size (the OpenAI cap)
MAX_REQUESTS = 50_000


@dataclass(frozen=True, kw_only=True)
class BatchFields:
    """How a job sends its calls: online, as provider batches, or to a batch file. Engine settings
    only, so a resume may switch them.
    """

    provider_batch: bool = engine(default("provider_batch"))
    # the provider's completion window (--provider-batch-window)
    provider_batch_window: str = engine(default("provider_batch_window"))
    # where failed requests go again: batch | online
    provider_batch_fallback: str = engine(default("provider_batch_fallback"))
    # write the requests here and wait (--provider-batch-file)
    provider_batch_file: str | None = engine(default("provider_batch_file"))
    # the first wait between polls (growing to 60 s)
    provider_batch_poll_s: float = engine(default("provider_batch_poll_s"))

    def check_batch(self, *, executor: str, cache: str) -> None:
        """Refuse batch settings that cannot work, in one line naming the option."""
        check_fallback(self.provider_batch_fallback)
        check_fields(self, "provider_batch_poll_s")
        if not _WINDOW.match(self.provider_batch_window):
            raise UsageError(f"--provider-batch-window {self.provider_batch_window!r}: hours, "
                             "e.g. 24h")
        if not (self.provider_batch or self.provider_batch_file):
            return
        if executor != "local":
            raise UsageError("--provider-batch runs on the local executor: a provider batch "
                             "needs no workers (drop --executor ray)")
        if cache != "off":
            raise UsageError("--provider-batch with --cache: provider batch answers are not "
                             "cached; use --cache off")

    @property
    def batching(self) -> bool:
        """True when the job's calls go as batches (to a provider or to a file)."""
        return bool(self.provider_batch or self.provider_batch_file)


def job_book(ctx: JobContext[object]) -> BatchBook:
    """Return the job's stored batches and their committed requests, which a resume collects from."""
    book = BatchBook()
    for handle in load_handles(ctx.con, ctx.spec.kind, ctx.job_id).values():
        book.add(handle)
    book.committed = committed_requests(ctx.con, ctx.job_id)
    return book


def batch_status(ctx: JobContext[Any]) -> Callable[[str], None]:
    """Where a job's batches report their states: the job's progress hook."""
    return lambda text: ctx.report(text, ctx.done_before, ctx.total)


def batching_caller(ctx: JobContext[Any], client: Any, prefix: str = "") -> BatchingCaller:
    """Return a BatchingCaller for the client, with the job's batch settings and stored handles; make one
    per client. The prefix starts every custom_id, so two clients never share an id.
    """
    config = ctx.config
    return BatchingCaller(
        client, job_book(ctx), job_kind=ctx.spec.kind, job_id=ctx.job_id,
        size=int(getattr(config, "batch_size", MAX_REQUESTS)),
        window=config.provider_batch_window, fallback=config.provider_batch_fallback,
        batch_file=config.provider_batch_file, poll_s=config.provider_batch_poll_s,
        max_poll_s=max(60.0, config.provider_batch_poll_s),
        on_handle=lambda handle: save_handle(ctx.con, handle), on_status=batch_status(ctx),
        prefix=prefix)


class BatchedAsker(Generic[B, R]):
    """An inner asker whose calls are sent as batches through one BatchingCaller per job."""

    def __init__(self, inner: Asker[B, R], ctx: JobContext[object]) -> None:
        self.inner, self.ctx = inner, ctx
        self.caller: BatchingCaller | None = None

    def make(self, client: object) -> BatchingCaller:
        """Build the job's batching caller (the stored handles loaded once)."""
        if self.caller is None:
            self.caller = batching_caller(self.ctx, client)
        return self.caller

    async def committed(self) -> None:
        """Delete the provider files the last batch's answers came from: they are committed."""
        if self.caller is not None:
            await self.caller.forget_spent()

    async def run_batch(self, batch: B, caller: StructuredCaller) -> R:
        """Return the inner asker's batch, its calls sent as provider batches."""
        batching = self.make(caller)
        work = asyncio.ensure_future(self.inner.run_batch(batch, batching))
        await batching.drive(work)
        return work.result()


def batched_asker(ctx: JobContext[Any], asker: Asker[B, R]) -> Asker[B, R]:
    """Return the asker, wrapped to send batches when the job's config asks for them."""
    if getattr(ctx.config, "batching", False):
        return BatchedAsker(asker, ctx)
    return asker


def batch_line(asker: object) -> str | None:
    """Return what the job's batches did in this run, in one line; None for an online job."""
    caller = getattr(asker, "caller", None) or asker
    tally = getattr(caller, "tally", None)
    if tally is None:
        return None
    outcomes = ", ".join(f"{k}={v}" for k, v in sorted(tally.outcomes.items())) or "none"
    return (f"batches: {tally.created} created, {tally.polled} picked up again; requests: "
            f"{outcomes}; {tally.online} answered online")

"""The parts every shipped job kind's spec shares: label, model settings, resume command, and
the asker sent as provider batches when the config asks. A spec overrides only where its kind
differs. Also what kinds over items share: their items() and sample() from v_items, and the
counts their summaries report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from personahub.core.jobs_store import find_job
from personahub.core.kernel import Asker, JobContext, SpecBase
from personahub.core.store import DEFAULT_DB, connect
from personahub.models.settings import LLMSettings
from personahub.pipelines.labels import SHIPPED, ShippedKind
from personahub.pipelines.provider_batch_jobs import batch_line, batched_asker

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = ["ItemJobSummary", "ItemsInView", "NamedFromRow", "ShippedSpec", "stored_job_id"]

C = TypeVar("C")
B = TypeVar("B")
R = TypeVar("R")
S = TypeVar("S")


class NamedFromRow:
    """A spec whose kind, noun, unit and id prefix are its row's: the subclass names its kind in
    its class line (kind="judge"); a kind that is not shipped passes its row too (row=...)."""

    kind: ClassVar[str]
    noun: ClassVar[str]
    unit: ClassVar[str]
    id_prefix: ClassVar[str]
    row: ClassVar[ShippedKind]

    def __init_subclass__(cls, kind: str | None = None, row: ShippedKind | None = None,
                          **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls.row = SHIPPED[kind] if row is None else row
            cls.kind, cls.noun, cls.unit, cls.id_prefix = (kind, cls.row.noun, cls.row.unit,
                                                           cls.row.id_prefix)


class ShippedSpec(NamedFromRow, SpecBase[C, B, R, S]):
    """SpecBase with a shipped kind's defaults: its names from its row, model settings, label
    and resume command."""

    #: the command that resumes a stopped job (followed by --resume ID --db DB); None means
    #: personahub resume
    resume_command: ClassVar[str | None] = None

    def __init_subclass__(cls, kind: str | None = None, row: ShippedKind | None = None,
                          **kwargs: object) -> None:
        super().__init_subclass__(kind=kind, row=row, **kwargs)
        if kind is not None:
            cls.resume_command = cls.row.resume_command

    def model_settings(self, config: C) -> object | None:
        """Return the model the job asks, from its config's model fields."""
        return LLMSettings.of_job(config)

    def asker(self, ctx: JobContext[C]) -> Asker[B, R]:
        """Return the kind's asker; with --provider-batch its calls go as provider batches."""
        return batched_asker(ctx, self.plain_asker(ctx))

    def plain_asker(self, ctx: JobContext[C]) -> Asker[B, R]:
        """Return the kind's own asker, which sends each call as it comes."""
        raise NotImplementedError(f"{type(self).__name__} defines neither asker nor plain_asker")

    def batches_line(self, ctx: JobContext[C]) -> str | None:
        """Return what this run's provider batches did, in one line; None for an online job."""
        return batch_line(ctx.asker)

    def resume_hint(self, job_id: str, db: Path) -> str:
        """Return the command that resumes the job."""
        if self.resume_command is None:
            return super().resume_hint(job_id, db)
        return f"{self.resume_command} --resume {job_id} --db {db}"

    def label(self, config: Mapping[str, object]) -> str:
        """Return a few words on what a job makes, from its stored config (shown by personahub jobs)."""
        return self.row.label(config)


class ItemsInView:
    """items() and sample() for a kind whose items are rows of the v_items view (a run's
    emissions, a synthesis job's items): the export's column layout, and a sample picked by a
    hash of each item's id. The spec names its source and the sample's columns."""

    #: v_items.source of the kind's items, also items_frame's keyword
    item_source: ClassVar[Literal["run", "job"]]
    #: the columns of v_items a job's sample shows
    sample_columns: ClassVar[str]

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
        """Return the job's items in the export's column layout."""
        from personahub.analysis.export import items_frame

        return items_frame(con, **{self.item_source: job_id})

    def sample(self, con: duckdb.DuckDBPyConnection, job_id: str, n: int) -> pd.DataFrame:
        """Return a few of the job's items, picked by a hash of their id."""
        return con.execute(f"SELECT {self.sample_columns} FROM v_items WHERE source = ? AND "
                           "source_id = ? ORDER BY hash(item_id) LIMIT ?",
                           [self.item_source, job_id, n]).df()


@dataclass(kw_only=True)
class ItemJobSummary:
    """What a job over drawn items (a synthesis, a judge) reports, whatever its kind: the
    engine that answered, and how many items it selected, found done before and failed."""

    engine: str
    offline: bool
    selected: int = 0
    skipped_done: int = 0
    failed: int = 0
    calls: dict[str, int] = field(default_factory=dict)  # calls per purpose
    db: str = DEFAULT_DB
    batches: str | None = None  # --provider-batch: what the job's provider batches did in this run


def stored_job_id(db: str | Path, job_id: str) -> str | None:
    """Return the job id if the database holds that job, else None. For kinds whose id comes from their
    settings (judge, evaluation), a second start with the same settings resumes the job.

    Args:
        db: the database file; a missing one holds no job (and is not created).
        job_id: the id the kind derives from a config.

    Returns:
        The job id, or None when the database does not hold it.
    """
    if not Path(db).exists():
        return None
    con = connect(db, read_only=True)
    try:
        return job_id if find_job(con, job_id) is not None else None
    finally:
        con.close()

"""A job kind made as a shipped one is, outside the package: what its files would hold.

Each part below stands for the file a new shipped kind adds or edits: its table
(``core/schema.sql``; here created by the spec, as a test cannot change the package's schema),
its prompt (``pipelines/prompts/``), its spec (``pipelines/<kind>.py``), its command
(``personahub/cli/``) and its job function (``personahub/api.py``). Its row, the one place the
tests read it from, is ``DEMO`` in ``tests/pipelines/test_a_new_kind.py``, standing for a row of
``pipelines/labels.py``; ``personahub.runtime.register_kinds([DEMO])`` imports this module,
which registers the spec.

The kind counts the words of each text, one structured call a text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import duckdb
import pandas as pd
import typer
from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import BaseModel, Field

from personahub import runtime
from personahub.core.contracts import CallRecord, StructuredCaller, StructuredResult
from personahub.core.errors import UsageError
from personahub.core.kernel import BatchOutcome, JobContext, engine, iter_batches, register
from personahub.core.store import transaction
from personahub.job_calls import async_twin, job_function
from personahub.models.failures import call_error
from personahub.pipelines.model_fields import EngineFields, check_model_fields
from personahub.pipelines.shipped_spec import ShippedSpec
from personahub.results import Job
from tests.pipelines.test_a_new_kind import DEMO, KIND

# --- its table (core/schema.sql) ---------------------------------------------------------------

TABLE = """CREATE TABLE IF NOT EXISTS demo_counts (
    job_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    text VARCHAR NOT NULL,
    words INTEGER NOT NULL,
    PRIMARY KEY (job_id, position)
)"""

# --- its prompt (pipelines/prompts/) ------------------------------------------------------------


class WordCount(BaseModel):
    """How many words a text has."""

    words: int = Field(ge=0, le=10_000)


def count_prompt(text: str) -> list[BaseMessage]:
    """Ask how many words a text has."""
    return [HumanMessage(f"How many words does this text have? {text}")]


# --- its spec (pipelines/<kind>.py) -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DemoConfig(EngineFields):
    """A word count: the texts, the seed, and (engine) how many texts a batch commits."""

    texts: tuple[str, ...]
    seed: int = 0
    batch_size: int = engine(2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", tuple(self.texts))
        if not self.texts:
            raise UsageError("demo: give at least one text")
        check_model_fields(self)


class Counted(NamedTuple):
    """One text's answer: its place, its count (None when the call failed) and the call."""

    position: int
    words: int | None
    call: StructuredResult[Any]

    @property
    def records(self) -> list[CallRecord]:
        return self.call.records

    @property
    def cache_entries(self) -> list[Any]:
        return self.call.cache_entries


class CountAsker:
    """Ask one call per text; also how an answer travels from a Ray worker (a ShardCodec)."""

    async def _one(self, item: tuple[int, str], caller: StructuredCaller) -> Counted:
        position, text = item
        result = await caller.structured(WordCount, count_prompt(text), purpose=f"{KIND}:count")
        return Counted(position, None if result.value is None else result.value.words, result)

    async def run_batch(self, batch: Sequence[tuple[int, str]],
                        caller: StructuredCaller) -> list[Counted]:
        return list(await asyncio.gather(*(self._one(item, caller) for item in batch)))

    def key(self, item: tuple[int, str]) -> str:
        return str(item[0])

    def dump(self, answer: Counted) -> str:
        return json.dumps(answer.words)

    def calls(self, answer: Counted) -> Sequence[StructuredResult[Any]]:
        return (answer.call,)

    def load(self, item: tuple[int, str], value: str,
             calls: list[StructuredResult[Any]]) -> Counted:
        return Counted(item[0], json.loads(value), calls[0])


class DemoSpec(ShippedSpec[DemoConfig, Sequence[tuple[int, str]], list[Counted], int],
               kind=KIND, row=DEMO):
    """Count the words of each text: its names, label and resume command from its row."""

    config_type = DemoConfig
    independent_batches = True

    def prepare(self, ctx: JobContext[DemoConfig]) -> None:
        with transaction(ctx.con):
            ctx.con.execute(TABLE)
        ctx.total = len(ctx.config.texts)

    def plan(self, ctx: JobContext[DemoConfig]) -> Iterator[Sequence[tuple[int, str]]]:
        done = {r[0] for r in ctx.con.execute(
            "SELECT position FROM demo_counts WHERE job_id = ?", [ctx.job_id]).fetchall()}
        ctx.done_before = len(done)
        todo = [(i, t) for i, t in enumerate(ctx.config.texts) if i not in done]
        return iter(list(iter_batches(todo, ctx.config.batch_size)))

    def plain_asker(self, ctx: JobContext[DemoConfig]) -> CountAsker:
        return CountAsker()

    def commit(self, ctx: JobContext[DemoConfig], batch: Sequence[tuple[int, str]],
               result: list[Counted]) -> BatchOutcome:
        texts = dict(batch)
        rows = [{"job_id": ctx.job_id, "position": c.position, "text": texts[c.position],
                 "words": c.words} for c in result if c.words is not None]
        return BatchOutcome(rows={"demo_counts": rows}, calls=result, asked=len(batch),
                            kept=len(rows), errors=[call_error(c.call) for c in result
                                                    if c.words is None])

    def summary(self, ctx: JobContext[DemoConfig]) -> int:
        return int(ctx.con.execute("SELECT count(*) FROM demo_counts WHERE job_id = ?",
                                   [ctx.job_id]).fetchall()[0][0])

    def report(self, summary: int, db: Path) -> list[str]:
        return [f"{summary} texts counted"]

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
        return con.execute("SELECT position, text, words FROM demo_counts WHERE job_id = ? "
                           "ORDER BY position", [job_id]).df()


SPEC = register(DemoSpec())

# --- its command (personahub/cli/) --------------------------------------------------------------


def count_command(texts: Annotated[list[str], typer.Argument(help="The texts to count.")],
                  db: Annotated[Path, typer.Option(help="The DuckDB file.")] = Path("hub.duckdb"),
                  batch_size: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Count the words of each text."""
    result = runtime.run(SPEC, DemoConfig(texts=tuple(texts), batch_size=batch_size), db)
    for line in SPEC.report(result.summary, db):
        print(line)


# --- its job function (personahub/api.py) -------------------------------------------------------


@job_function
def count_words(texts: Sequence[str], *, db: str | Path = "hub.duckdb", **options: Any) -> Job:
    """Count the words of each text.

    Args:
        texts: The texts.
        db: The DuckDB file.
        **options: Further DemoConfig fields.

    Returns:
        The job's handle.
    """
    known = {f.name for f in dataclasses.fields(DemoConfig)}
    if unknown := sorted(set(options) - known):
        raise UsageError(f"count_words: no option {unknown[0]}")
    result = runtime.run(SPEC, DemoConfig(texts=tuple(texts), **options), db)
    return Job(kind=KIND, job_id=result.job_id, db=Path(db), summary=result.summary)


count_words_async = async_twin(count_words)

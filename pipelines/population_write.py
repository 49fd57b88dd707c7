"""personas sample-population --llm: a model writes the persona texts of a drawn population.

The written people form a population of their own (the drawn id plus a hash of the job id), so
template texts and model texts of one draw never mix. Persona ids come from that population id
and each person's place, so a resume writes only the missing people. A resume whose input files
have changed is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.kernel import (
    BatchOutcome,
    JobContext,
    engine,
    register,
)
from personahub.core.validate import check_int
from personahub.personas.population import SOURCE, Population, draw_population, person_id
from personahub.personas.population_files import read_joint, read_marginals
from personahub.personas.record import Persona
from personahub.personas.store import personas_frame, population_persona_ids, upsert_personas
from personahub.pipelines.batches import answered, remaining
from personahub.pipelines.model_fields import (
    ExecutorFields,
    GenerationFields,
    ModelFields,
    check_model_fields,
)
from personahub.pipelines.shipped_spec import ShippedSpec
from personahub.pipelines.write_persona import Written, write_persona

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

TEXT_ORIGIN = "model"


@dataclass(frozen=True, kw_only=True)
class WriteConfig(GenerationFields, ModelFields, ExecutorFields):
    """What a population-writing job makes and, in the engine fields, how this invocation asks."""

    marginals: str | None = None
    joint: str | None = None
    n: int = 1000
    seed: int = 0
    batch_size: int = engine(64)

    def __post_init__(self) -> None:
        if self.marginals is None and self.joint is None:
            raise UsageError("give --marginals FILE, --joint FILE or both")
        check_int(self.n, "--n", low=1)
        check_model_fields(self)
        check_int(self.batch_size, "batch size", low=1)

    def draw(self) -> Population:
        """Draw the people; the same inputs and seed always draw the same people."""
        return draw_population(self.n, seed=self.seed,
                               marginals=read_marginals(self.marginals) if self.marginals else None,
                               joint=read_joint(self.joint) if self.joint else None)


def written_population_id(drawn_id: str, job_id: str) -> str:
    """Return the population id of the people a job writes."""
    return f"{drawn_id}-{hashlib.sha1(job_id.encode()).hexdigest()[:6]}"


class Person(NamedTuple):
    """One person to write: place in the population, persona id, attributes."""

    place: int
    persona_id: str
    attributes: tuple[tuple[str, str], ...]


class Wrote(NamedTuple):
    """What writing one person gave (no text when the answer was rejected or failed)."""

    person: Person
    written: Written

    @property
    def records(self) -> list[CallRecord]:
        return self.written.records

    @property
    def cache_entries(self) -> list[CacheEntry]:
        return self.written.cache_entries


class WriteAsker:
    """One write_persona call per person; also encodes answers for Ray workers (a ShardCodec)."""

    async def run_batch(self, batch: Sequence[Person], caller: StructuredCaller) -> list[Wrote]:
        async def one(person: Person) -> Wrote:
            written = await write_persona(dict(person.attributes), caller,
                                          persona_id=person.persona_id)
            return Wrote(person, written)

        return list(await asyncio.gather(*(one(p) for p in batch)))

    def key(self, person: Person) -> str:
        return person.persona_id

    def dump(self, answer: Wrote) -> str:
        return json.dumps([answer.written.text, answer.written.rejected])

    def calls(self, answer: Wrote) -> Sequence[StructuredResult[Any]]:
        return (StructuredResult(None, answer.written.records,
                                 cache_entries=answer.written.cache_entries),)

    def load(self, person: Person, value: str, calls: list[StructuredResult[Any]]) -> Wrote:
        text, rejected = json.loads(value)
        return Wrote(person, Written(text, rejected, calls[0].records, calls[0].cache_entries))


@dataclass
class WriteSummary:
    """What a population-writing job did."""

    job_id: str
    population_id: str
    drawn_id: str
    n: int
    population: Population  # the drawn people the job writes texts for
    written: int = 0
    skipped_done: int = 0
    engine: str = ""
    offline: bool = False

    @property
    def failed(self) -> int:
        return self.n - self.written


def _state(ctx: JobContext[WriteConfig]) -> WriteSummary:
    """Return the job's running summary, which is all its state: the written population's id and the
    drawn people."""
    state: WriteSummary = ctx.state
    return state


class WriteSpec(ShippedSpec[WriteConfig, Sequence[Person], list[Wrote], WriteSummary],
                kind="population_write"):
    """The job spec behind personas sample-population --llm."""

    config_type = WriteConfig
    independent_batches = True

    def prepare(self, ctx: JobContext[WriteConfig]) -> None:
        population = ctx.config.draw()
        if ctx.resumed and ctx.stored.get("drawn_id") not in (None, population.population_id):
            raise PersonahubError(f"--resume {ctx.job_id}: the --marginals/--joint files changed "
                                  "since the job started (they draw other people now)")
        ctx.stored["drawn_id"] = population.population_id
        written_id = written_population_id(population.population_id, ctx.job_id)
        ctx.state = WriteSummary(ctx.job_id, written_id, population.population_id, ctx.config.n,
                                 population)
        ctx.total = ctx.config.n

    def start(self, ctx: JobContext[WriteConfig]) -> BatchOutcome:
        state = _state(ctx)
        return BatchOutcome(rows={"population_jobs": [{
            "job_id": ctx.job_id, "population_id": state.population_id,
            "drawn_id": state.population.population_id, "n": ctx.config.n,
            "llm": ctx.caller.label}]})

    def _people(self, ctx: JobContext[WriteConfig]) -> list[Person]:
        state = _state(ctx)
        return [Person(i, person_id(state.population_id, i), tuple(sorted(attrs.items())))
                for i, attrs in enumerate(state.population.people)]

    def plan(self, ctx: JobContext[WriteConfig]) -> Iterator[Sequence[Person]]:
        done = population_persona_ids(ctx.con, _state(ctx).population_id)
        batches = remaining(ctx, self._people(ctx), done, lambda p: p.persona_id,
                            ctx.config.batch_size)
        _state(ctx).skipped_done = ctx.done_before
        return batches

    def asker(self, ctx: JobContext[WriteConfig]) -> WriteAsker:
        return WriteAsker()

    def commit(self, ctx: JobContext[WriteConfig], batch: Sequence[Person],
               result: list[Wrote]) -> BatchOutcome:
        state = _state(ctx)

        def persona(wrote: Wrote) -> Persona | None:
            person, written = wrote
            if written.text is None:
                return None
            return Persona(
                text=written.text, source=SOURCE, persona_id=person.persona_id,
                source_ref=f"{state.population_id} person {person.place + 1}",
                attributes={**dict(person.attributes), "population": state.population_id,
                            "drawn_population": state.population.population_id,
                            "text_origin": TEXT_ORIGIN})

        return answered(batch, result, persona,
                        lambda w: w.written.rejected or "no valid answer",
                        then=lambda personas: upsert_personas(ctx.con, personas, ctx.caller))

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
        """Return the personas written for the job's population."""
        row = con.execute("SELECT population_id FROM population_jobs WHERE job_id = ?",
                          [job_id]).fetchone()
        ids = population_persona_ids(con, row[0]) if row is not None else set()
        return personas_frame(con, sorted(ids))

    def summary(self, ctx: JobContext[WriteConfig]) -> WriteSummary:
        summary = _state(ctx)
        summary.engine, summary.offline = ctx.caller.label, ctx.caller.is_offline
        summary.written = len(population_persona_ids(ctx.con, summary.population_id))
        return summary

    def report(self, summary: WriteSummary, db: Path) -> list[str]:
        lines = [f"population {summary.population_id}: {summary.written} of {summary.n} people "
                 f"written by {summary.engine} (drawn population {summary.drawn_id}; "
                 f"text_origin=model; {summary.skipped_done} already done) in {db}"]
        if summary.offline:
            lines.append("the offline engine wrote the texts: placeholders, not a model's writing")
        if summary.failed:
            lines.append(f"{summary.failed} people without text (rejected or failed); resume "
                         f"to ask again: {self.resume_hint(summary.job_id, db)}")
        return lines



POPULATION_WRITE = register(WriteSpec())

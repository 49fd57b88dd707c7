"""A job added from outside the package is one spec module plus its registration.

This module is that spec: "count the words of N texts, one structured model call each". It
runs locally and on Ray to the same rows, an interrupted job resumed (by ``personahub resume
ID``) ends with the uninterrupted job's rows and calls, and it shows in ``personahub jobs``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field

from personahub import runtime
from personahub.core.contracts import CallRecord, StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.core.interrupts import Stopped
from personahub.core.kernel import BatchOutcome, JobContext, SpecBase, engine, iter_batches, register
from personahub.core.store import transaction
from personahub.models.failures import call_error
from personahub.models.settings import LLMSettings
from personahub.results import Job
from tests.cli_helpers import invoke
from tests.optional import need_ray

# --- the spec: everything a new kind needs ---------------------------------------------------


class WordCount(BaseModel):
    words: int = Field(ge=0, le=10_000)


@dataclass(frozen=True, kw_only=True)
class CountConfig:
    texts: tuple[str, ...]
    seed: int = 0
    llm: str = engine("offline", identity=True, secret=True)
    batch_size: int = engine(2)
    executor: str = engine("local")
    ray_workers: int | None = engine(None)

    def __post_init__(self) -> None:
        if not self.texts:
            raise PersonahubError("word count: give at least one text")


class Counted(NamedTuple):
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
    """One call per text; also how an answer travels from a Ray worker (a ShardCodec)."""

    async def _one(self, item: tuple[int, str], caller: StructuredCaller) -> Counted:
        position, text = item
        result = await caller.structured(WordCount, [HumanMessage(f"How many words: {text}")],
                                         purpose="toy:count")
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

    def load(self, item: tuple[int, str], value: str, calls: list[StructuredResult[Any]]) -> Counted:
        return Counted(item[0], json.loads(value), calls[0])


class CountSpec(SpecBase[CountConfig, Sequence[tuple[int, str]], list[Counted], int]):
    kind = "toy_word_count"
    config_type = CountConfig
    independent_batches = True
    noun = "word count"
    unit = "texts"

    def model_settings(self, config: CountConfig) -> LLMSettings:
        return LLMSettings(spec=config.llm, seed=config.seed)

    def prepare(self, ctx: JobContext[CountConfig]) -> None:
        with transaction(ctx.con):  # the kind's own detail table
            ctx.con.execute("CREATE TABLE IF NOT EXISTS toy_word_counts (job_id VARCHAR, "
                            "position INTEGER, words INTEGER, PRIMARY KEY (job_id, position))")
        ctx.total = len(ctx.config.texts)

    def plan(self, ctx: JobContext[CountConfig]) -> Iterator[Sequence[tuple[int, str]]]:
        done = {r[0] for r in ctx.con.execute(
            "SELECT position FROM toy_word_counts WHERE job_id = ?", [ctx.job_id]).fetchall()}
        todo = [(i, t) for i, t in enumerate(ctx.config.texts) if i not in done]
        ctx.done_before = len(done)
        return iter(list(iter_batches(todo, ctx.config.batch_size)))

    def asker(self, ctx: JobContext[CountConfig]) -> CountAsker:
        return CountAsker()

    def commit(self, ctx: JobContext[CountConfig], batch: Sequence[tuple[int, str]],
               result: list[Counted]) -> BatchOutcome:
        rows = [{"job_id": ctx.job_id, "position": c.position, "words": c.words}
                for c in result if c.words is not None]
        return BatchOutcome(rows={"toy_word_counts": rows}, calls=result, asked=len(batch),
                            kept=len(rows), errors=[call_error(c.call) for c in result
                                                    if c.words is None])

    def summary(self, ctx: JobContext[CountConfig]) -> int:
        return int(ctx.con.execute("SELECT count(*) FROM toy_word_counts WHERE job_id = ?",
                                   [ctx.job_id]).fetchall()[0][0])

    def report(self, summary: int, db: Path) -> list[str]:
        return [f"{summary} texts counted"]

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> Any:
        return con.execute("SELECT position, words FROM toy_word_counts WHERE job_id = ? "
                           "ORDER BY position", [job_id]).df()


TOY = register(CountSpec())

# --- the tests --------------------------------------------------------------------------------

TEXTS = tuple(f"text {i}: " + " ".join(["word"] * (i + 1)) for i in range(7))


def counts(db: Path, job_id: str) -> dict[str, list[tuple]]:
    """The job's rows and its calls' accounting (ids that name the job left out)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {"rows": con.execute("SELECT position, words FROM toy_word_counts WHERE job_id = ? "
                                    "ORDER BY position", [job_id]).fetchall(),
                # answers an interrupted batch got and never committed are ``discarded``
                "calls": con.execute("SELECT purpose, status, attempt, model_name, tokens_in, "
                                     "tokens_out FROM llm_calls WHERE job_kind = 'toy_word_count' "
                                     "AND job_id = ? AND status <> 'discarded' ORDER BY ALL",
                                     [job_id]).fetchall()}
    finally:
        con.close()


def test_a_toy_job_runs_resumes_and_shows_in_personahub_jobs(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    whole = runtime.run(TOY, CountConfig(texts=TEXTS, seed=4), tmp_path / "whole.duckdb")
    assert (whole.status, whole.summary) == ("finished", 7)
    expected = counts(tmp_path / "whole.duckdb", whole.job_id)
    assert len(expected["rows"]) == 7 and len(expected["calls"]) == 7

    db = tmp_path / "cut.duckdb"
    real, seen = CountSpec.commit, []

    def stops_at_the_third(self: CountSpec, ctx: Any, batch: Any, result: Any) -> BatchOutcome:
        seen.append(1)
        if len(seen) == 3:  # Ctrl-C as the third batch is committed: two are written
            raise KeyboardInterrupt
        return real(self, ctx, batch, result)

    monkeypatch.setattr(CountSpec, "commit", stops_at_the_third)
    with pytest.raises(Stopped, match=r"word count .* interrupted by Ctrl-C; resume with "
                                      r"personahub resume "):
        runtime.run(TOY, CountConfig(texts=TEXTS, seed=4), db)
    monkeypatch.setattr(CountSpec, "commit", real)
    listed = invoke("jobs", "--db", db, "--json")
    assert listed.exit_code == 0, listed.output
    (job,) = json.loads(listed.stdout)
    assert (job["kind"], job["status"]) == ("toy_word_count", "interrupted")
    assert len(counts(db, job["job_id"])["rows"]) == 4

    resumed = invoke("resume", job["job_id"], "--db", db)  # the seed is the job's, not asked
    assert resumed.exit_code == 0, resumed.output
    assert "7 texts counted" in resumed.stdout
    assert counts(db, job["job_id"]) == expected
    table = invoke("jobs", "--db", db, "--kind", "toy_word_count", "--status", "finished")
    assert job["job_id"] in table.stdout and "finished" in table.stdout
    again = invoke("resume", job["job_id"], "--db", db)
    assert again.exit_code == 0 and "already finished" in again.stderr


def test_a_toy_twin_is_refused_unless_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "t.duckdb"
    monkeypatch.setattr(CountSpec, "commit", lambda *_: (_ for _ in ()).throw(RuntimeError("disk")))
    with pytest.raises(PersonahubError, match="word count .* failed: RuntimeError: disk; resume"):
        runtime.run(TOY, CountConfig(texts=TEXTS), db)
    monkeypatch.undo()
    with pytest.raises(PersonahubError, match="with the same settings is unfinished"):
        runtime.run(TOY, CountConfig(texts=TEXTS, batch_size=3), db)  # batch size: not identity
    fresh = runtime.run(TOY, CountConfig(texts=TEXTS), db, fresh=True)
    statuses = sorted(json.loads(invoke("jobs", "--db", db, "--json").stdout),
                      key=lambda j: j["job_id"] != fresh.job_id)
    assert [j["status"] for j in statuses] == ["finished", "superseded"]


@pytest.mark.slow
def test_a_toy_job_on_ray_makes_the_local_rows(tmp_path: Path) -> None:
    need_ray()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False)
    try:
        local = runtime.run(TOY, CountConfig(texts=TEXTS, seed=2), tmp_path / "local.duckdb")
        remote = runtime.run(TOY, CountConfig(texts=TEXTS, seed=2, executor="ray", ray_workers=2),
                             tmp_path / "ray.duckdb")
    finally:
        ray.shutdown()
    assert remote.summary == local.summary == 7
    assert counts(tmp_path / "ray.duckdb", remote.job_id) == counts(tmp_path / "local.duckdb",
                                                                    local.job_id)
    assert not (tmp_path / "ray.duckdb.jobs").exists()  # the shards are committed and gone


class TwoCountsSpec(CountSpec):
    """A job that runs a word count of its own texts as a child job (as a run's setup runs its
    expansion), then counts again itself."""

    kind = "toy_two_counts"

    def plan(self, ctx: JobContext[CountConfig]) -> Iterator[Sequence[tuple[int, str]]]:
        child = ctx.run_child(TOY, CountConfig(texts=ctx.config.texts[:3], seed=ctx.config.seed))
        ctx.state = child.job_id
        return super().plan(ctx)


TWO = register(TwoCountsSpec())


def test_a_child_job_runs_under_its_parent(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    parent = runtime.run(TWO, CountConfig(texts=TEXTS, seed=1), db)
    jobs = {j["kind"]: j for j in json.loads(invoke("jobs", "--db", db, "--json").stdout)}
    assert jobs["toy_two_counts"]["job_id"] == parent.job_id
    assert jobs["toy_word_count"]["parent_id"] == parent.job_id
    assert jobs["toy_word_count"]["status"] == jobs["toy_two_counts"]["status"] == "finished"
    child = jobs["toy_word_count"]["job_id"]
    assert len(counts(db, child)["rows"]) == 3 and len(counts(db, parent.job_id)["rows"]) == 7


def test_a_handle_lists_what_its_kinds_spec_reads(tmp_path: Path) -> None:
    db = tmp_path / "items.duckdb"
    done = runtime.run(TOY, CountConfig(texts=TEXTS[:3]), db)
    handle = Job(kind="toy_word_count", job_id=done.job_id, db=db)
    rows = counts(db, done.job_id)["rows"]
    assert len(rows) == 3
    assert list(handle.items().itertuples(index=False, name=None)) == rows
    # a spec without its own sample: the card's rows are the first of its items
    assert list(handle.sample(2).itertuples(index=False, name=None)) == rows[:2]
    with pytest.raises(KeyError, match="no_such_kind"):
        Job(kind="no_such_kind", job_id=done.job_id, db=db).items()

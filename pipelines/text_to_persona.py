"""personahub personas from-text as a job spec: text-to-persona on the kernel.

The corpus is read end to end first, so a binary, damaged or empty corpus is refused before
anything is recorded. There is one job per corpus name, which a re-run or resume continues. The
file path and limit come from each invocation; every other setting is the job's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from personahub.core.commit import JobRef
from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.failures import call_error
from personahub.core.kernel import BatchOutcome, JobContext, engine, register
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import check_int
from personahub.personas.asks import Ask, ask_one
from personahub.personas.hub_memory import TEXT_MEMORY_MB, held_memory
from personahub.personas.importers import ImportStats, container_of
from personahub.personas.quality import gate_answer, language_scripts, rejection_line, tally
from personahub.personas.record import Persona
from personahub.personas.store import personas_frame, upsert_personas
from personahub.personas.text_jobs import find_text_job
from personahub.personas.text_to_persona import (
    MAX_CHARS,
    RELATIONS,
    SPLITS,
    TEXT_TO_PERSONA_MAX_TOKENS,
    SourceText,
    TextToPersonaSummary,
    done_pairs,
    iter_texts,
    parse_relations,
    screen,
    text_job_persona_ids,
    text_personas_schema,
)
from personahub.pipelines.model_fields import EngineFields, check_model_fields
from personahub.pipelines.prompts.personas import text_to_persona_messages
from personahub.pipelines.shipped_spec import ShippedSpec

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


@dataclass(frozen=True, kw_only=True)
class TextConfig(EngineFields):
    """A text-to-persona job: what it makes (stored, model spec redacted) and, in the engine fields,
    how this invocation reads and asks.
    """

    corpus: str  # the corpus name: provenance and the job's key (default: the file's name)
    relations: tuple[str, ...] = RELATIONS
    per_text: int = 1
    text_column: str | None = None
    id_column: str | None = None
    split: str = "paragraph"
    skip_bad: bool = False
    language: str | None = None
    seed: int = 0
    path: str = engine("")  # the corpus file (resolved): where it is now
    limit: int | None = engine(None)  # the first N texts of the corpus
    db: str = engine(DEFAULT_DB)
    batch_size: int = engine(64)  # texts per transaction

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "relations", parse_relations(self.relations))
            text_personas_schema(self.per_text)
            if self.language is not None:
                language_scripts(self.language)
        except ValueError as exc:  # a flag's value (--relations, --per-text, --language)
            raise UsageError(str(exc)) from None
        if not self.corpus:
            raise UsageError("--corpus: give the corpus a name")
        if self.split not in SPLITS:
            raise UsageError(f"--split {self.split!r}: choose one of {', '.join(SPLITS)}")
        check_int(self.per_text, "--per-text", low=1, high=10)
        if self.limit is not None:
            check_int(self.limit, "--limit", low=1)
        check_int(self.batch_size, "batch size", low=1)
        check_model_fields(self)


class TextAsk(NamedTuple):
    """One pair asked: a text and a relation."""

    text_id: str
    relation: str
    text: str

    @property
    def key(self) -> str:
        return f"{self.text_id}\0{self.relation}"


class TextBatch(list[TextAsk]):
    """A batch's pairs, and how many texts were read when it was planned (the progress it reports).
    """

    def __init__(self, asks: Sequence[TextAsk], texts_read: int) -> None:
        super().__init__(asks)
        self.texts_read = texts_read


class TextAsker:
    """Asks who reads, writes, likes or dislikes each text of a batch. It holds nothing of the
    database (a Ray worker rebuilds it) and also encodes answers for Ray workers (a ShardCodec).
    """

    def __init__(self, per_text: int, language: str | None, max_chars: int = MAX_CHARS) -> None:
        self.per_text = per_text
        self.language = language
        self.max_chars = max_chars

    def ask_of(self, pair: TextAsk) -> Ask:
        """Return the call for one pair (its schema by factory, so it pickles)."""
        return Ask(text_personas_schema, (self.per_text,),
                   text_to_persona_messages(pair.text[:self.max_chars], pair.relation,
                                            self.per_text, language=self.language),
                   purpose=f"text-to-persona:{pair.relation}", key=pair.key,
                   max_tokens=TEXT_TO_PERSONA_MAX_TOKENS,
                   check=partial(gate_answer, "personas", self.language))

    async def run_batch(self, batch: Sequence[TextAsk],
                        caller: StructuredCaller) -> list[StructuredResult[Any]]:
        """Every pair of the batch concurrently (the client bounds calls in flight)."""
        import asyncio

        return list(await asyncio.gather(*(ask_one(caller, self.ask_of(p)) for p in batch)))

    # ShardCodec: how an answer travels from a Ray worker
    def key(self, pair: TextAsk) -> str:
        return pair.key

    def dump(self, answer: StructuredResult[Any]) -> str:
        value = answer.value
        return json.dumps(None if value is None else value.model_dump())

    def calls(self, answer: StructuredResult[Any]) -> Sequence[StructuredResult[Any]]:
        return [answer]

    def load(self, pair: TextAsk, value: str, calls: list[StructuredResult[Any]]) -> StructuredResult[Any]:
        data = json.loads(value)
        call = calls[0]
        model = None if data is None else text_personas_schema(self.per_text).model_validate(data)
        return StructuredResult(model, call.records, cache_entries=call.cache_entries)


@dataclass
class TextState:
    """One job's own state: the corpus texts still to read, import stats and the summary."""

    texts: Iterator[SourceText] | None
    stats: ImportStats
    summary: TextToPersonaSummary = field(default_factory=TextToPersonaSummary)


def _state(ctx: JobContext[TextConfig]) -> TextState:
    state: TextState = ctx.state
    return state


def text_job_of(db: str | Path, corpus: str) -> str | None:
    """Return the id of the database's text job over this corpus (what a re-run resumes); None if none."""
    from personahub.core.store import connect

    if not Path(db).exists():
        return None
    con = connect(db, read_only=True)
    try:
        job = find_text_job(con, corpus)
    finally:
        con.close()
    return job.job_id if job is not None else None


class TextToPersonaSpec(ShippedSpec[TextConfig, TextBatch, list[StructuredResult[Any]],
                                 TextToPersonaSummary], kind="text_to_persona"):
    """The job spec behind personahub personas from-text."""

    config_type = TextConfig
    independent_batches = True
    refuses_twins = False  # one job per corpus name: prepare refuses a second
    progress_per_answer = False  # its progress counts its own stages, not batch items

    def running(self, ctx: JobContext[TextConfig]) -> AbstractContextManager[None]:
        """Hold DuckDB to TEXT_MEMORY_MB while the batches run, and give the connection its own
        limit back after: each batch's write checks its ids against the whole hub's
        (``upsert_personas``), and DuckDB's default pool kept every block of ids it read."""
        return held_memory(ctx.con, TEXT_MEMORY_MB)

    def prepare(self, ctx: JobContext[TextConfig]) -> None:
        """Prepare the corpus, read end to end and found to hold a text (nothing is recorded before)."""
        config = ctx.config
        if not ctx.resumed:
            known = find_text_job(ctx.con, config.corpus)
            if known is not None:
                raise PersonahubError(f"a text-to-persona job over corpus {config.corpus!r} "
                                      f"exists ({known.job_id}): resume it with "
                                      f"{self.resume_hint(known.job_id, ctx.db)}")
        if not config.path:
            raise PersonahubError(f"text-to-persona job {ctx.job_id}: no corpus file; give it: "
                                  f"personahub personas from-text FILE --corpus {config.corpus}")
        stats = ImportStats()
        texts = _checked_corpus(Path(config.path), config, stats)
        ctx.state = TextState(texts, stats)
        summary = ctx.state.summary
        summary.corpus, summary.path, summary.relations = (config.corpus, config.path,
                                                           len(config.relations))
        ctx.total = config.limit

    def start(self, ctx: JobContext[TextConfig]) -> BatchOutcome:
        return BatchOutcome(rows={"text_jobs": [{"job_id": ctx.job_id,
                                                 "corpus": ctx.config.corpus}]})

    def plan(self, ctx: JobContext[TextConfig]) -> Iterator[TextBatch]:
        """Plan the (text, relation) pairs not yet done, in batches of texts; for a finished job, only
        the counts (nothing is asked).
        """
        batches = self._batches(ctx)
        if ctx.status == "finished":
            for _ in batches:  # counted, not asked
                pass
            return iter(())
        return batches

    def _batches(self, ctx: JobContext[TextConfig]) -> Iterator[TextBatch]:
        config, state = ctx.config, _state(ctx)
        summary = state.summary
        planned: set[tuple[str, str]] = set()
        texts = itertools.islice(state.texts or iter(()), config.limit)
        while chunk := list(itertools.islice(texts, config.batch_size)):
            done = done_pairs(ctx.con, config.corpus, list(dict.fromkeys(t.text_id for t in chunk)))
            asks = []
            for text in chunk:
                for relation in config.relations:
                    key = (text.text_id, relation)
                    if key not in done and key not in planned:
                        planned.add(key)
                        asks.append(TextAsk(text.text_id, relation, text.text))
            summary.texts += len(chunk)
            summary.already_done += len(chunk) * len(config.relations) - len(asks)
            ctx.done_before = summary.already_done
            if asks:
                yield TextBatch(asks, summary.texts)

    def plain_asker(self, ctx: JobContext[TextConfig]) -> TextAsker:
        """Return the asker of each text's personas."""
        return TextAsker(ctx.config.per_text, ctx.config.language)

    def commit(self, ctx: JobContext[TextConfig], batch: TextBatch,
               result: list[StructuredResult[Any]]) -> BatchOutcome:
        """Return the batch's personas, rejected personas and done-pair rows with its calls; one error per
        pair that kept no persona.
        """
        config, summary = ctx.config, _state(ctx).summary
        job = JobRef(self.kind, ctx.job_id)
        errors: list[str | None] = []
        created: list[Persona] = []
        rejected: list[dict[str, Any]] = []
        done_rows: list[dict[str, object]] = []
        for pair, answer in zip(batch, result, strict=True):
            summary.asked += 1
            if answer.value is None:
                summary.failed_calls += 1
                errors.append(call_error(answer))
                continue
            personas, refused = screen(answer.value.personas, config.corpus, pair.text_id,
                                       pair.relation, config.language, job)
            if not personas:
                summary.rejected_answers += 1
                errors.append(f"quality gate: {refused[0]['reason']}" if refused else "no persona")
            created += personas
            rejected += refused
            done_rows.append({"corpus": config.corpus, "text_id": pair.text_id,
                              "relation": pair.relation,
                              "persona_ids": [p.persona_id for p in personas]})
        summary.personas += len(created)
        summary.rejected = tally(summary.rejected, (r["reason"] for r in rejected))
        summary.batches += 1

        def upsert() -> None:
            summary.new_personas += upsert_personas(ctx.con, created, ctx.caller) or 0

        kept = len(batch) - len(errors)
        return BatchOutcome(rows={"rejected": rejected, "text_done": done_rows}, calls=result,
                            asked=len(batch), kept=kept, errors=errors, then=upsert,
                            progress=("texts", batch.texts_read, config.limit))

    def stop_note(self, ctx: JobContext[TextConfig]) -> str:
        summary = _state(ctx).summary if isinstance(ctx.state, TextState) else None
        return "" if summary is None else f" ({summary.asked} answers asked)"

    def items(self, con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
        """Return the personas the job's corpus produced."""
        return personas_frame(con, text_job_persona_ids(con, job_id))

    def summary(self, ctx: JobContext[TextConfig]) -> TextToPersonaSummary:
        state = _state(ctx)
        state.summary.bad_records = state.stats.bad
        state.summary.bad_examples = [str(e) for e in state.stats.bad_examples]
        state.summary.provider_batches = self.batches_line(ctx)
        return state.summary

    def report(self, summary: TextToPersonaSummary, db: Path) -> list[str]:
        """Report what the job did, in lines for the console."""
        lines = [text_line(summary, summary.relations, db), rejection_line(summary.rejected, "personas")]
        return lines + ([summary.provider_batches] if summary.provider_batches else [])


def text_line(summary: TextToPersonaSummary, relations: int, db: Path) -> str:
    """Return the one line a text job's end prints."""
    return (f"{summary.texts} texts × {relations} relation(s): {summary.already_done} already done, "
            f"asked {summary.asked}, {summary.failed_calls} failed (re-run to retry); "
            f"{summary.personas} personas, {summary.new_personas} new in {db}")


def _checked_corpus(corpus: Path, config: TextConfig, stats: ImportStats) -> Iterator[SourceText]:
    """Return the corpus's texts, after reading it end to end (so a bad file fails before its first batches
    commit) and taking its first text (so an empty corpus fails before a job is recorded).
    """
    from personahub.core.validate import check_text_file

    try:
        texts = iter_texts(corpus, text_column=config.text_column, id_column=config.id_column,
                           split=config.split, name=config.corpus, skip_bad=config.skip_bad,
                           stats=stats)
        if container_of(corpus) != "parquet":
            check_text_file(corpus, "corpus", strict_utf8=not config.skip_bad)
        first = next(texts, None)
    except ValueError as exc:
        raise PersonahubError(str(exc)) from None
    if first is None:
        why = (f"every record was bad ({stats.bad} skipped)" if stats.bad
               else "it is empty or every text is blank")
        raise PersonahubError(f"corpus {corpus}: no text to ask about ({why})")
    return itertools.chain([first], texts)


TEXT_TO_PERSONA = register(TextToPersonaSpec())

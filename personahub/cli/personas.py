"""The personas commands that call a model: expand (persona-to-persona) and from-text
(text-to-persona).

Both are resumable jobs: re-run the same command, or pass --resume with the expansion id
(from-text: the corpus name or id). from-text adapts the job spec
pipelines/text_to_persona.py, building the same TextConfig as personahub.persona_jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from personahub.cli.common import (
    console,
    emit_job_json,
    given_on_command_line,
    missing_argument,
    note_job,
    one_line_errors,
    out,
    say,
)
from personahub.cli.engine import DEFAULT_ONLINE_SIZE, Engine, engine_options
from personahub.cli.job_running import (
    awaiting_results,
    banner,
    batch_progress,
    job_progress,
    print_preview,
    read_after_job,
    started,
    unreachable,
)
from personahub.cli.options import DbOption, FreshOption, LanguageOption, Shown, output_options, resume_option
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.jobs_store import UNFINISHED
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED
from personahub.executors import check_executor
from personahub.personas.link_nearest import DEFAULT_LINK_CANDIDATES, DEFAULT_LINK_EMBEDDER

# What a resumed job takes from its stored configuration (giving them with --resume is an error).
EXPANSION_FIXED = ("hops", "fanout", "limit", "language", "seed", "fresh")
TEXT_JOB_FIXED = ("relations", "text_column", "id_column", "limit", "per_text", "split",
                  "corpus_name", "skip_bad", "language", "seed")
# The same, in the words of each --resume's help.
EXPANSION_KEEPS = ("its frontier, hops, fanout, limit, language, seed and generation settings, and "
                   "the model it recorded unless --llm")
TEXT_JOB_KEEPS = "its corpus file, relations, reading options, seed and generation settings"


def _refuse_fixed(ctx: typer.Context, job: str, resume: str, names: tuple[str, ...]) -> None:
    """Refuse options that would change a resume: a resume answers as its job started."""
    fixed = given_on_command_line(ctx, names)
    if fixed:
        raise UsageError(f"--resume {resume} takes {', '.join(n for n in names if n != 'fresh')}"
                              f" from the {job}; leave out {', '.join(fixed)}")


def _check_language(language: str | None) -> None:
    """Check --language: an unknown one is one error line before the database is opened."""
    from personahub.personas.quality import language_scripts

    try:
        if language is not None:
            language_scripts(language)
    except ValueError as exc:
        raise PersonahubError(str(exc)) from None


def _open_hub(db: Path) -> Any:
    """Return the hub's connection (the database must exist: no empty database is left behind)."""
    from personahub.core.store import connect

    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database; run 'personahub personas import' first")
    return connect(db)


def unfinished_expansion(db: Path, *, hops: int, fanout: int, limit: int | None,
                         fresh: bool, language: str | None = None,
                         resume: str | None = None) -> str | None:
    """Return the expansion personas expand should continue, or None to start a new one.

    `resume` names it. Otherwise an unfinished CLI expansion with the same hops, fanout,
    limit and language is picked up, keeping its own start personas even if the hub has
    grown; `fresh` marks that one superseded instead. The database must exist.
    """
    from personahub.personas.expand import find_expansion, find_unfinished, supersede_expansion

    con = _open_hub(db)
    try:
        if resume is not None:
            info = find_expansion(con, resume)
            if info is None:
                raise PersonahubError(f"--resume {resume}: no such expansion in {db}")
            if info.status not in UNFINISHED:
                raise PersonahubError(f"--resume {resume}: the expansion is {info.status}; "
                                      "there is nothing to resume")
        else:
            info = find_unfinished(con, hops=hops, fanout=fanout, limit=limit, origin="cli",
                                   language=language)
            if info is not None and fresh:
                supersede_expansion(con, info.expansion_id)
                info = None
        if info is None:
            return None
        total = info.config.get("hops", hops)
        console.print(f"resuming expansion {info.expansion_id}: {info.hops_done} of {total} hop(s) "
                      f"done, {info.pending} frontier persona(s) pending (--fresh starts anew)",
                      soft_wrap=True)
        return info.expansion_id
    finally:
        con.close()


@one_line_errors
@engine_options("model", "batch", "executor")
@output_options(preview=True)
def personas_expand(
    ctx: typer.Context,
    db: DbOption = Path(DEFAULT_DB),
    hops: Annotated[int, typer.Option(min=0, max=6, help="Rounds of persona-to-persona.")] = 1,
    fanout: Annotated[int, typer.Option(min=1, max=20, help="Related people per persona.")] = 2,
    limit: Annotated[int | None, typer.Option(min=1, help="Start from the first N personas.")] = None,
    language: LanguageOption = None,
    seed: Annotated[int | None, typer.Option(min=0, max=MAX_SEED,
        help="Seed (offline engine; default: a resumed expansion's own seed, else 0).")] = None,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Frontier personas per transaction (a resumed expansion keeps its own); "
                    "with --provider-batch also the most requests in one provider batch.")] = 256,
    link_candidates: Annotated[int, typer.Option(
        min=0, max=20, help="Close triangles: ask whether each new persona knows up to this many "
                            "people near its source (0: grow trees, no link calls).")
    ] = DEFAULT_LINK_CANDIDATES,
    link_embedder: Annotated[str, typer.Option(
        help="Offline embedder (hash, lexical; or local[:model]) proposing the nearest people "
             "of the whole expansion as link candidates and merging a new persona at cosine "
             ">= 0.9 with its nearest; 'none' turns both off.")] = DEFAULT_LINK_EMBEDDER,
    fresh: FreshOption = False,
    resume: Annotated[str | None, resume_option("EXPANSION_ID", EXPANSION_KEEPS)] = None,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Grow the hub: ask who is in close relationship with each persona, hop by hop.

    An interrupted expansion is resumed automatically: when an unfinished one with the same
    --hops, --fanout and --limit exists, it goes on from its stored frontier (--fresh starts anew).
    --resume EXPANSION_ID resumes that expansion by its id.
    """
    from personahub.analysis.kept import kept_lines
    from personahub.cli.progress import LateCounts
    from personahub.core.kernel import check_cache_mode
    from personahub.models.client import resolve_spec
    from personahub.persona_jobs import run_expansion
    from personahub.personas.expand import link_embedder_of
    from personahub.pipelines.expand import ExpandConfig, expansion_lines
    from personahub.runtime import recorded_llm

    if resume is not None:
        _refuse_fixed(ctx, "expansion", resume, EXPANSION_FIXED)
    check_cache_mode(engine.cache)
    check_executor(engine.executor, cache=engine.cache)
    _check_language(language)
    embedder = None if link_embedder.lower() == "none" else link_embedder
    link_embedder_of(embedder)  # a bad spec fails before the database is touched
    # how this invocation asks (a resume keeps what the expansion makes)
    # (--batch-size is part of what the expansion makes)
    settings = {"db": str(db), **engine.settings(),
                **{k: v for k, v in engine.batching(batch_size).items() if k != "batch_size"}}
    made = {"link_candidates": link_candidates, "link_embedder": embedder,
            "batch_size": batch_size, **engine.flags.settings()}
    config: ExpandConfig | dict[str, object]
    job_id = unfinished_expansion(db, hops=hops, fanout=fanout, limit=limit, fresh=fresh,
                                  language=language, resume=resume)
    if job_id is not None:
        # what the expansion makes is its own: of those, only flags given are compared
        named = {k: v for k, v in made.items() if given_on_command_line(ctx, [k])}
        config = {**settings, **named, "llm": resolve_spec(engine.llm) if engine.llm is not None
                  else recorded_llm(db, job_id)}
    else:
        config = ExpandConfig(hops=hops, fanout=fanout, limit=limit, language=language,
                              seed=seed if seed is not None else 0, origin="cli",
                              llm=resolve_spec(engine.llm), **made, **settings)
    counts = LateCounts()

    def on_ready(client: Any) -> None:
        counts.follow(client.stats)
        banner(client)

    def on_start(job: str, resumed: bool) -> None:
        if resumed:  # announced by unfinished_expansion
            note_job("expansion", job, db)
        else:
            started("expansion", job, db)

    with job_progress(counts=counts) as bar, awaiting_results():
        task = bar.add_task("expanding (hops)", total=hops)

        def progress(phase: str, done: int, total: int | None) -> None:
            if phase.startswith("batch "):  # a provider batch's state (--provider-batch)
                bar.update(task, description=f"expanding (hops) · {phase}")
            elif phase == "expand":
                bar.update(task, completed=done, total=total, description="expanding (hops)")

        result = run_expansion(config, db=db, resume=job_id, progress=progress,
                               on_ready=on_ready, on_start=on_start, warn=unreachable)
    summary = result.summary
    kept: list[str] = []
    if result.job_id:  # else no hop was asked for: nothing was recorded
        con = read_after_job(db)
        try:
            kept = kept_lines(con, job_kind="expansion", job_id=result.job_id)
        finally:
            con.close()
    for line in expansion_lines(summary) + kept:
        out.print(line, highlight=False, soft_wrap=True)
    if result.job_id:
        print_preview("expansion", summary.expansion_id, shown.preview, db=db)
    if shown.json:
        emit_job_json("personas expand", db, job_id=summary.expansion_id, id_key="expansion_id",
                      counts={"hops": summary.hops, "asked": summary.asked,
                              "new_personas": summary.new_personas,
                              "merged_into_existing": summary.merged_into_existing,
                              "relations": summary.edges, "linked": summary.linked,
                              "failed_calls": summary.failed_calls})


def _text_job(db: Path, resume: str) -> str:
    """Return the id of the text job resume names (its corpus name, or its job id)."""
    from personahub.personas.text_jobs import find_text_job, text_job_by_id

    con = _open_hub(db)
    try:
        job = find_text_job(con, resume) or text_job_by_id(con, resume)
    finally:
        con.close()
    if job is None:
        raise PersonahubError(f"--resume {resume}: no text-to-persona job over corpus {resume!r} "
                              f"in {db}")
    return job.job_id


@one_line_errors
@engine_options("model", "batch", "executor", without=("offline_latency_s",),
                batch_size=("Texts", DEFAULT_ONLINE_SIZE))
@output_options(preview=True)
def personas_from_text(
    ctx: typer.Context,
    corpus: Annotated[Path | None, typer.Argument(
        help="Corpus: JSONL, CSV or Parquet (one text per record), or plain text (one text per "
             "paragraph); omit with --resume.")] = None,
    db: DbOption = Path(DEFAULT_DB),
    relations: Annotated[str, typer.Option(help="Comma-separated: who is likely to read, write, "
                                                "like, dislike the text.")] = "read,write,like,dislike",
    text_column: Annotated[str | None, typer.Option(help="Field holding the text (default: text, "
                                                         "content, body, document).")] = None,
    id_column: Annotated[str | None, typer.Option(help="Field holding the text id "
                                                       "(default: FILE:LINE).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N texts only.")] = None,
    per_text: Annotated[int, typer.Option(min=1, max=10, help="Personas per text and relation, "
                                                              "at most.")] = 1,
    split: Annotated[Literal["paragraph", "line"], typer.Option(
        help="Plain text: one text per paragraph (blank-line separated) or per line.")
    ] = "paragraph",
    corpus_name: Annotated[str | None, typer.Option("--corpus", help="Corpus name for provenance and "
                                                    "resume (default: the file name).")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip malformed records and count them.")] = False,
    language: LanguageOption = None,
    seed: Annotated[int | None, typer.Option(min=0, max=MAX_SEED,
        help="Seed (offline engine; default: the seed the corpus's job was started with, else 0).")] = None,
    resume: Annotated[str | None, resume_option("CORPUS", TEXT_JOB_KEEPS)] = None,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Text-to-persona: ask who is likely to read / write / like / dislike each text.

    One job per corpus, resumable: re-run the same command after an interruption (texts
    already answered for a relation are skipped; the job keeps its seed, relations and
    generation settings), or give --resume CORPUS (or the job id), or personahub resume ID.
    """
    from personahub.cli.progress import LateCounts
    from personahub.models.client import resolve_spec
    from personahub.persona_jobs import run_text_job
    from personahub.personas.quality import rejection_line
    from personahub.pipelines.text_to_persona import TextConfig, text_line
    from personahub.runtime import recorded_llm

    if resume is not None:
        _refuse_fixed(ctx, "job", resume, TEXT_JOB_FIXED)
    elif corpus is None:
        missing_argument(ctx, "corpus")
    # how this invocation reads and asks (a resume keeps what the job makes)
    settings: dict[str, Any] = {"db": str(db), **engine.settings(),
                                **engine.batching()}
    if corpus is not None:
        settings["path"] = str(corpus.resolve())
    config: TextConfig | dict[str, object]
    if resume is not None:
        found = _text_job(db, resume)
        job_id: str | None = found
        # --llm replaces the job's recorded (redacted) model spec; without it, the recorded one
        config = {**settings, "llm": resolve_spec(engine.llm) if engine.llm is not None
                  else recorded_llm(db, found)}
    else:
        assert corpus is not None
        job_id = None
        config = TextConfig(
            corpus=corpus_name or corpus.name, relations=tuple(relations.split(",")), per_text=per_text,
            text_column=text_column, id_column=id_column, split=split, skip_bad=skip_bad,
            language=language, seed=seed if seed is not None else 0, limit=limit,
            llm=resolve_spec(engine.llm), **engine.flags.settings(), **settings)
    counts = LateCounts()

    def on_ready(client: Any) -> None:
        counts.follow(client.stats)
        banner(client)

    def on_start(job: str, resumed: bool) -> None:
        note_job("text_to_persona", job, db)  # if it stops, --json still names it

    given = [name for name in TEXT_JOB_FIXED + ("structured", "max_tokens", "temperature", "top_p")
             if given_on_command_line(ctx, [name])]
    label = f"text-to-persona {corpus_name or resume or getattr(corpus, 'name', '')} (texts)"
    with job_progress(counts=counts) as bar, awaiting_results():
        task = bar.add_task(label, total=limit)
        result = run_text_job(config, db=db, resume=job_id, given=given, on_ready=on_ready,
                              on_start=on_start, warn=unreachable,
                              progress=batch_progress(bar, task, label))
    summary = result.summary
    if not result.ran:
        say("text-to-persona job ", (result.job_id, "bold"), " already finished; nothing to ask")
    out.print(text_line(summary, summary.relations, db), soft_wrap=True)
    for line in _kept(db, result.job_id):
        out.print(line, highlight=False, soft_wrap=True)
    out.print(rejection_line(summary.rejected, "personas"), highlight=False, soft_wrap=True)
    if summary.provider_batches:
        out.print(summary.provider_batches, highlight=False, soft_wrap=True)
    if summary.bad_records:
        out.print(f"{summary.bad_records} bad records skipped", soft_wrap=True)
        for example in summary.bad_examples:
            out.print(f"  skipped {example}", highlight=False, soft_wrap=True)
    print_preview("corpus", summary.corpus, shown.preview, db=db)
    if shown.json:
        emit_job_json("personas from-text", db, job_id=result.job_id,
                      paths={"corpus": corpus or summary.path},
                      counts={"texts": summary.texts, "already_done": summary.already_done,
                              "asked": summary.asked, "failed_calls": summary.failed_calls,
                              "personas": summary.personas, "new_personas": summary.new_personas,
                              "bad_records": summary.bad_records}, corpus=summary.corpus)


def _kept(db: Path, job_id: str) -> list[str]:
    """Return the kept share per kind of a text job (read-only: the job closed its connection)."""
    from personahub.analysis.kept import kept_lines

    con = read_after_job(db)
    try:
        return kept_lines(con, job_kind="text_to_persona", job_id=job_id)
    finally:
        con.close()



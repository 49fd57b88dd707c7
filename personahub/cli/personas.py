"""``personahub personas`` commands that call a model: ``expand`` (persona-to-persona) and
``from-text`` (text-to-persona). Both are resumable jobs: by re-running the same command, or
explicitly with ``--resume`` and the job's id (an expansion id; a text job's corpus name or id).
``from-text`` is a thin adapter over the job spec ``pipelines/text_to_persona.py`` (the API builds
the same ``TextConfig``: ``personahub.persona_jobs``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from personahub.analysis.preview import DEFAULT_PREVIEW
from personahub.cli.common import (
    BatchFallbackOption,
    BatchFileOption,
    BatchOption,
    BatchPollOption,
    BatchWindowOption,
    CacheOption,
    ConcurrencyOption,
    DbOption,
    ExecutorOption,
    JsonOption,
    LanguageOption,
    LlmOption,
    MaxFailedShareOption,
    MaxTokensOption,
    ModelFlags,
    OfflineLatencyOption,
    PreviewOption,
    RayAddressOption,
    RayWorkersOption,
    RpsOption,
    StructuredOption,
    TemperatureOption,
    TimeoutOption,
    TopPOption,
    awaiting_results,
    banner,
    batch_engine,
    batch_progress,
    command_client,
    console,
    emit_job_json,
    given_on_command_line,
    job_progress,
    missing_argument,
    note_job,
    one_line_errors,
    out,
    print_preview,
    say,
    started,
    stored_flags,
    unreachable,
)
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.failures import DEFAULT_MAX_FAILED_SHARE
from personahub.core.interrupts import Stopped, interrupts_from_queries, signal_name
from personahub.core.jobs_store import UNFINISHED
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED
from personahub.personas.link_nearest import DEFAULT_LINK_EMBEDDER
from personahub.sim.executors import check_executor, executor_session

# What a resumed job takes from its stored configuration (giving them with --resume is an error).
EXPANSION_FIXED = ("hops", "fanout", "limit", "language", "seed", "fresh")
TEXT_JOB_FIXED = ("relations", "text_column", "id_column", "limit", "per_text", "split",
                  "corpus_name", "skip_bad", "language", "seed")


def _refuse_fixed(ctx: typer.Context, job: str, resume: str, names: tuple[str, ...]) -> None:
    """A resume answers as its job started: options that would change that are refused."""
    fixed = given_on_command_line(ctx, names)
    if fixed:
        raise UsageError(f"--resume {resume} takes {', '.join(n for n in names if n != 'fresh')}"
                              f" from the {job}; leave out {', '.join(fixed)}")


def _check_language(language: str | None) -> None:
    """An unknown ``--language`` is one error line before the database is opened."""
    from personahub.personas.quality import language_scripts

    try:
        if language is not None:
            language_scripts(language)
    except ValueError as exc:
        raise PersonahubError(str(exc)) from None


def _open_hub(db: Path) -> Any:
    """The hub's connection (the database must exist: no empty database is left behind)."""
    from personahub.core.store import connect

    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database; run 'personahub personas import' first")
    return connect(db)


def unfinished_expansion(db: Path, *, hops: int, fanout: int, limit: int | None,
                         fresh: bool, language: str | None = None, resume: str | None = None
                         ) -> tuple[Any, list[str], str | None, dict[str, Any]]:
    """Open the hub for ``personas expand``: (connection, start ids, expansion id to resume, its
    stored config — empty for a new expansion).

    ``resume`` names the expansion to go on with. Without it, an unfinished CLI expansion with
    the same hops, fanout, limit and language is resumed (its own start personas are kept: the
    hub has grown since); ``fresh`` marks it superseded and starts anew. An unknown ``language``
    is an error before the database is opened.
    """
    from personahub.personas.expand import find_expansion, find_unfinished, supersede_expansion
    from personahub.personas.store import live_persona_ids

    _check_language(language)
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
        if info is not None:
            total = info.config.get("hops", hops)
            console.print(f"resuming expansion {info.expansion_id}: {info.hops_done} of {total} hop(s) "
                          f"done, {info.pending} frontier persona(s) pending (--fresh starts anew)",
                          soft_wrap=True)
            return con, [], info.expansion_id, dict(info.config)
        start = live_persona_ids(con, limit)
        if not start:
            raise PersonahubError(
                f"--db {db}: the hub has no personas; run 'personahub personas import' first")
        return con, start, None, {}
    except BaseException:
        con.close()
        raise


def ray_target(executor: str, client: Any, address: str | None, workers: int | None) -> Any:
    """The ``RayTarget`` a job's calls go to (None: ``local``), once the client is found fit
    for Ray workers (built from --llm, no credential in it)."""
    if executor != "ray":
        return None
    from personahub.sim.executors.ray_batches import RayTarget, check_ray_client

    check_ray_client(client)
    return RayTarget(address, workers)


@contextmanager
def _ray_asks(client: Any, target: Any) -> Iterator[Any]:
    """An expansion's calls on one pool of Ray actors for the whole job (None: on its loop)."""
    if target is None:
        yield None
        return
    from personahub.sim.executors.ray_actors import ray_asks

    with ray_asks(client, target, "expansion") as asks:
        yield asks


def _ray_batches(client: Any, target: Any, batch_size: int, folder: Path) -> Any:
    """A text job's batches of calls in one Ray pass, answered in batch order as Parquet shards
    under the job's ``folder`` (None: local)."""
    if target is None:
        return None
    from functools import partial

    from personahub.sim.executors.ray_batches import ask_batches

    return partial(ask_batches, client, target=target, batch_size=batch_size, folder=folder)


@one_line_errors
def personas_expand(
    ctx: typer.Context,
    db: DbOption = Path(DEFAULT_DB),
    hops: Annotated[int, typer.Option(min=0, max=6, help="Rounds of persona-to-persona.")] = 1,
    fanout: Annotated[int, typer.Option(min=1, max=20, help="Related people per persona.")] = 2,
    limit: Annotated[int | None, typer.Option(min=1, help="Start from the first N personas.")] = None,
    language: LanguageOption = None,
    llm: LlmOption = None,
    seed: Annotated[int | None, typer.Option(min=0, max=MAX_SEED,
        help="Seed (offline engine; default: a resumed expansion's own seed, else 0).")] = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 60.0,
    offline_latency: OfflineLatencyOption = 0.0,
    cache: CacheOption = "off",
    rps: RpsOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Frontier personas per transaction.")] = 256,
    link_candidates: Annotated[int, typer.Option(
        min=0, max=20, help="Close triangles: ask whether each new persona knows up to this many "
                            "people near its source (0: grow trees, no link calls).")] = 4,
    link_embedder: Annotated[str, typer.Option(
        help="Offline embedder (hash, lexical; or local[:model]) proposing the nearest people "
             "of the whole expansion as link candidates and merging a new persona at cosine "
             ">= 0.9 with its nearest; 'none' turns both off.")] = DEFAULT_LINK_EMBEDDER,
    fresh: Annotated[bool, typer.Option(help="Start anew even if an unfinished expansion with the "
                                              "same --hops/--fanout/--limit exists.")] = False,
    resume: Annotated[str | None, typer.Option(
        "--resume", metavar="EXPANSION_ID",
        help="Continue this expansion from its stored frontier (with its hops, fanout, limit, "
             "language, seed and generation settings, and the model it recorded unless --llm).")
    ] = None,
    structured: StructuredOption = "auto",
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    top_p: TopPOption = None,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
    max_failed_share: MaxFailedShareOption = None,
    preview: PreviewOption = DEFAULT_PREVIEW,
    as_json: JsonOption = False,
) -> None:
    """Grow the hub: ask who is in close relationship with each persona, hop by hop.

    An interrupted expansion is resumed automatically: when an unfinished one with the same
    --hops, --fanout and --limit exists, it goes on from its stored frontier (--fresh starts anew).
    --resume EXPANSION_ID resumes that expansion by its id.
    """
    from personahub.agents.llm.cache import attach_cache, check_replay_cache
    from personahub.agents.llm.client import redact_spec, resolve_spec
    from personahub.core.kernel import check_cache_mode
    from personahub.personas.expand import link_embedder_of
    from personahub.runtime import recorded_spec

    if resume is not None:
        _refuse_fixed(ctx, "expansion", resume, EXPANSION_FIXED)
    check_cache_mode(cache)
    check_executor(executor, cache=cache, workers=ray_workers)
    if link_embedder.lower() != "none":
        link_embedder_of(link_embedder)  # a bad spec fails before the database is touched
    given = ModelFlags(structured, max_tokens, temperature, top_p)
    # --resume without --llm asks the model the expansion recorded (as every resume does)
    spec = resolve_spec(llm if llm is not None or resume is None else recorded_spec(db, resume))
    # the endpoint is checked (or the replay's cache found) before the database is touched
    probe_seed = seed or 0
    client = command_client(spec, probe_seed, concurrency, timeout, offline_latency, rps=rps,
                         check=cache != "replay", flags=given, announce=False)
    if cache == "replay":
        check_replay_cache(db, client.cache_model)
    target = ray_target(executor, client, ray_address, ray_workers)
    con, start, resumed, stored = unfinished_expansion(db, hops=hops, fanout=fanout, limit=limit,
                                                       fresh=fresh, language=language,
                                                       resume=resume)
    try:  # a resumed expansion answers as it started: its seed and generation settings
        flags = given
        if resumed is not None and given == ModelFlags():
            flags = stored_flags(stored, given)
        if resume is not None:  # what the expansion is, from the expansion
            hops, fanout = int(stored.get("hops", hops)), int(stored.get("fanout", fanout))
            limit, language = stored.get("limit"), stored.get("language")
        if resumed is not None:  # a resumed expansion links as it started
            link_candidates = int(stored.get("link_candidates", 0))
            link_embedder = stored.get("link_embedder") or "none"
        if seed is None:
            seed = int(stored.get("seed", 0))
        if max_failed_share is None:
            max_failed_share = float(stored.get("max_failed_share", DEFAULT_MAX_FAILED_SHARE))
        if seed != probe_seed or flags != given:  # the stored settings differ: build it so
            client = command_client(spec, seed, concurrency, timeout, offline_latency, rps=rps,
                                 check=False, flags=flags, announce=False)
        attach_cache(con, client, cache)
    except BaseException:
        con.close()
        raise
    banner(client)
    _expand(con, client, db, start=start, hops=hops, fanout=fanout, resume=resumed,
            batch_size=batch_size, language=language, link_candidates=link_candidates,
            link_embedder=None if link_embedder.lower() == "none" else link_embedder,
            config={"limit": limit, "origin": "cli", "seed": seed, "llm": redact_spec(spec),
                    **flags.settings(),
                    "max_failed_share": max_failed_share},
            target=target, max_failed_share=max_failed_share, preview=preview,
            as_json=as_json)


def _expand(con: Any, client: Any, db: Path, *, start: list[str], hops: int, fanout: int,
            resume: str | None, batch_size: int, language: str | None,
            config: dict[str, Any], link_candidates: int = 0,
            link_embedder: str | None = None, target: Any = None,
            max_failed_share: float = DEFAULT_MAX_FAILED_SHARE, preview: int = 0,
            as_json: bool = False) -> None:
    """Run the expansion job on ``con`` (closed at the end) and print its summary; ``target``
    (a ``RayTarget``) asks each batch's calls on Ray workers."""
    from personahub.analysis.kept import kept_lines
    from personahub.core import loop as run_loop
    from personahub.personas.expand import expand_hub
    from personahub.personas.quality import rejection_line

    expansion: list[str] = []

    def on_start(expansion_id: str) -> None:
        expansion.append(expansion_id)
        if resume is None:  # a resumed one was announced by unfinished_expansion
            started("expansion", expansion_id, db)

    try:
        with job_progress(client) as bar, interrupts_from_queries(), \
                executor_session("ray" if target else "local", target and target.address), \
                _ray_asks(client, target) as asks:
            task = bar.add_task("expanding (hops)", total=hops)
            summary = run_loop.run(expand_hub(
                con, client, start_ids=start, hops=hops, fanout=fanout, resume=resume,
                batch_size=batch_size, config=config, language=language, on_start=on_start,
                link_candidates=link_candidates, link_embedder=link_embedder,
                progress=lambda _, h, n: bar.update(task, completed=h),
                asks=asks, max_failed_share=max_failed_share))
        kept = kept_lines(con, job_kind="expansion", job_id=summary.expansion_id)
    except KeyboardInterrupt as exc:
        if not expansion:
            raise
        raise Stopped(f"expansion {expansion[0]} interrupted by {signal_name(exc)}; run the same "
                      "command to resume it", exc) from None
    except PersonahubError as exc:
        if not expansion or "start again with --fresh" in str(exc):
            raise
        raise PersonahubError(f"{exc}; resume with personahub personas expand --resume "
                              f"{expansion[0]} --db {db}") from None
    finally:
        con.close()
    out.print(f"expansion {summary.expansion_id}{' (resumed)' if summary.resumed else ''}: "
              f"asked {summary.asked} personas over {summary.hops} hop(s): "
              f"{summary.new_personas} new personas, {summary.merged_into_existing} merged into "
              f"existing ones, {summary.edges} relations, {summary.linked} closing triangles, "
              f"{summary.failed_calls} failed calls", soft_wrap=True)
    shape = summary.graph
    if shape:
        out.print(f"graph of the expansion: {shape['nodes']} nodes, {shape['edges']} edges, "
                  f"{shape['components']} components, {shape['cycles']} cycles, clustering "
                  f"{shape['clustering']}, degrees {shape['degree_histogram']}", highlight=False,
                  soft_wrap=True)
    out.print(rejection_line(summary.rejected), highlight=False, soft_wrap=True)
    for line in kept:
        out.print(line, highlight=False, soft_wrap=True)
    print_preview("expansion", summary.expansion_id, preview, db=db)
    if as_json:
        emit_job_json("personas expand", db, job_id=summary.expansion_id, id_key="expansion_id",
                      counts={"hops": summary.hops, "asked": summary.asked,
                              "new_personas": summary.new_personas,
                              "merged_into_existing": summary.merged_into_existing,
                              "relations": summary.edges, "linked": summary.linked,
                              "failed_calls": summary.failed_calls})


def _text_job(db: Path, resume: str) -> str:
    """The id of the text job ``resume`` names (its corpus name, or its job id)."""
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
    llm: LlmOption = None,
    seed: Annotated[int | None, typer.Option(min=0, max=MAX_SEED,
        help="Seed (offline engine; default: the seed the corpus's job was started with, else 0).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Texts per transaction (default 64); with --batch also the most requests "
                    "in one provider batch (default 1000).")] = None,
    batch: BatchOption = False,
    batch_window: BatchWindowOption = "24h",
    batch_fallback: BatchFallbackOption = "batch",
    batch_file: BatchFileOption = None,
    batch_poll: BatchPollOption = 5.0,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 60.0,
    cache: CacheOption = "off",
    rps: RpsOption = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", metavar="CORPUS",
        help="Continue the job over this corpus name (with its corpus file, relations, reading "
             "options, seed and generation settings).")] = None,
    structured: StructuredOption = "auto",
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    top_p: TopPOption = None,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
    max_failed_share: MaxFailedShareOption = None,
    preview: PreviewOption = DEFAULT_PREVIEW,
    as_json: JsonOption = False,
) -> None:
    """Text-to-persona: ask who is likely to read / write / like / dislike each text.

    One job per corpus, resumable: re-run the same command after an interruption (texts
    already answered for a relation are skipped; the job keeps its seed, relations and
    generation settings), or give --resume CORPUS (or the job id), or personahub resume ID.
    """
    from personahub.agents.llm.client import resolve_spec
    from personahub.cli.progress import LateCounts
    from personahub.persona_jobs import run_text_job
    from personahub.personas.quality import rejection_line
    from personahub.pipelines.text_to_persona import TextConfig, text_line
    from personahub.runtime import recorded_llm

    if resume is not None:
        _refuse_fixed(ctx, "job", resume, TEXT_JOB_FIXED)
    elif corpus is None:
        missing_argument(ctx, "corpus")
    # how this invocation reads and asks (a resume keeps what the job makes)
    engine: dict[str, Any] = {
        "db": str(db), "concurrency": concurrency, "timeout_s": timeout,
        "cache": cache, "rps": rps, "executor": executor,
        "ray_address": ray_address, "ray_workers": ray_workers,
        **batch_engine(batch, batch_size, batch_window, batch_fallback, batch_file, batch_poll,
                       online_size=64)}
    if max_failed_share is not None:  # else the job's own (a new job: the default)
        engine["max_failed_share"] = max_failed_share
    if corpus is not None:
        engine["path"] = str(corpus.resolve())
    config: TextConfig | dict[str, Any]
    if resume is not None:
        found = _text_job(db, resume)
        job_id: str | None = found
        # --llm replaces the job's recorded (redacted) model spec; without it, the recorded one
        config = {**engine, "llm": resolve_spec(llm) if llm is not None else recorded_llm(db, found)}
    else:
        assert corpus is not None
        job_id = None
        config = TextConfig(
            corpus=corpus_name or corpus.name, relations=tuple(relations.split(",")), per_text=per_text,
            text_column=text_column, id_column=id_column, split=split, skip_bad=skip_bad,
            language=language, seed=seed if seed is not None else 0, limit=limit,
            llm=resolve_spec(llm), **ModelFlags(structured, max_tokens, temperature, top_p).settings(),
            **engine)
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
    out.print(rejection_line(summary.rejected), highlight=False, soft_wrap=True)
    if summary.provider_batches:
        out.print(summary.provider_batches, highlight=False, soft_wrap=True)
    if summary.bad_records:
        out.print(f"{summary.bad_records} bad records skipped", soft_wrap=True)
        for example in summary.bad_examples:
            out.print(f"  skipped {example}", highlight=False, soft_wrap=True)
    print_preview("corpus", summary.corpus, preview, db=db)
    if as_json:
        emit_job_json("personas from-text", db, job_id=result.job_id,
                      paths={"corpus": corpus or summary.path},
                      counts={"texts": summary.texts, "already_done": summary.already_done,
                              "asked": summary.asked, "failed_calls": summary.failed_calls,
                              "personas": summary.personas, "new_personas": summary.new_personas,
                              "bad_records": summary.bad_records}, corpus=summary.corpus)


def _kept(db: Path, job_id: str) -> list[str]:
    """The kept share per kind of a text job (read-only: the job closed its connection)."""
    from personahub.analysis.kept import kept_lines
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        return kept_lines(con, job_kind="text_to_persona", job_id=job_id)
    finally:
        con.close()



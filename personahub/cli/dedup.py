"""``personahub personas dedup``: MinHash, then embeddings, as a resumable job on the kernel.

With an embedder (``hash`` by default) the command is a ``dedup`` job: its configuration is stored
(``dedup_jobs``), each batch's vectors are committed with that batch's model-call records and
cache entries, and the ANN marking runs once every vector is in. Re-running the same command, or
``--resume JOB_ID``, goes on from the stored vectors. ``--cache`` and ``--rps`` apply to model
embedders (``openai:<model>``); ``hash`` and ``local`` call no model. Stage 2 judges only texts
in the scripts its embedder was trained on; the summary counts the others ("skipped for language").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from personahub.cli.common import (
    CacheOption,
    DbOption,
    ExecutorOption,
    JsonOption,
    RayAddressOption,
    RayWorkersOption,
    RpsOption,
    console,
    emit_job_json,
    given_on_command_line,
    job_progress,
    one_line_errors,
    out,
    started,
)
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.interrupts import Stopped, interrupts_from_queries, signal_name
from personahub.core.store import DEFAULT_DB

if TYPE_CHECKING:
    import duckdb

# What a resumed dedup job takes from its stored configuration (giving them again is an error).
DEDUP_FIXED = ("threshold", "num_perm", "ngram", "embedder", "embed_threshold", "ann")


def _config(threshold: float, num_perm: int, ngram: int, embedder: str, embed_threshold: float,
            ann: str, batch_size: int) -> Any:
    from personahub.personas.dedup import DedupConfig
    from personahub.personas.minhash import MinHashConfig

    try:
        return DedupConfig(
            minhash=MinHashConfig(num_perm=num_perm, threshold=threshold, ngram=ngram),
            embed_threshold=embed_threshold,
            embedder=None if embedder.lower() == "none" else embedder,
            ann_index=ann,
            batch_rows=batch_size,
        )
    except ValueError as exc:
        raise PersonahubError(f"personas dedup: {exc}") from exc


def _model_embedder(spec: str, cache: str, rps: float | None) -> Any:
    """The stage-2 embedder; ``--cache``/``--rps`` are refused for one that calls no model."""
    from personahub.core.kernel import check_cache_mode
    from personahub.personas.embedding import ModelEmbedder, make_embedder

    check_cache_mode(cache)
    embedder = make_embedder(spec, rps=rps)
    if not isinstance(embedder, ModelEmbedder):
        given = [flag for flag, on in (("--cache", cache != "off"), ("--rps", rps is not None)) if on]
        if given:
            raise PersonahubError(f"{' and '.join(given)}: the {spec!r} embedder calls no model; "
                                  "they apply to --embedder openai:<model>")
    return embedder


def _open_job(con: duckdb.DuckDBPyConnection, db: Path, settings: dict[str, Any], resume: str | None) -> Any:
    """The job to run: ``--resume``'s, an unfinished one with the same settings, or a new one."""
    from personahub.personas.dedup_jobs import DedupJob, find_dedup_job, find_unfinished_dedup

    if resume is not None:
        job = find_dedup_job(con, resume)
        if job is None:
            raise PersonahubError(f"--resume {resume}: no such dedup job in {db}")
        if job.status == "finished":
            raise PersonahubError(f"--resume {resume}: the dedup job is finished; there is "
                                  "nothing to resume")
        return job
    return find_unfinished_dedup(con, settings) or DedupJob("", settings, "new", {})


@one_line_errors
def personas_dedup(
    ctx: typer.Context,
    db: DbOption = Path(DEFAULT_DB),
    threshold: Annotated[float, typer.Option(help="Stage 1: MinHash Jaccard threshold.")] = 0.9,
    num_perm: Annotated[int, typer.Option(help="Stage 1: MinHash permutations.")] = 128,
    ngram: Annotated[int, typer.Option(min=1, help="Stage 1: word n-gram size.")] = 1,
    embedder: Annotated[str, typer.Option(
        help="Stage 2 embedder: 'hash' (feature hashing, not a neural model), 'local' "
             "(all-MiniLM-L6-v2, needs personahub[embed]), 'openai:text-embedding-3-small' "
             "(OPENAI_API_KEY; OPENAI_BASE_URL for a compatible server), or 'none' to skip "
             "stage 2. An embedder judges only texts in the scripts it was trained on (local "
             "MiniLM: Latin); the others are left to stage 1.")] = "hash",
    embed_threshold: Annotated[float, typer.Option(help="Stage 2: cosine threshold.")] = 0.9,
    ann: Annotated[Literal["auto", "ivf", "usearch", "faiss"], typer.Option(
        help="Stage 2 index.")] = "auto",
    batch_size: Annotated[int, typer.Option(
        min=1, help="Stage 2: personas embedded per transaction.")] = 50_000,
    cache: CacheOption = "off",
    rps: RpsOption = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", metavar="JOB_ID",
        help="Continue this dedup job from its stored vectors (with its thresholds, embedder "
             "and index).")] = None,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
    as_json: JsonOption = False,
) -> None:
    """Flag near-duplicate personas: MinHash LSH, then embedding similarity (never deletes).

    Resumable: re-run the same command after an interruption (vectors already stored in
    persona_embeddings are not embedded again), or give --resume JOB_ID.
    """
    from personahub.core.store import connect

    if resume is not None:
        fixed = given_on_command_line(ctx, DEDUP_FIXED)
        if fixed:
            raise UsageError(f"--resume {resume} takes {', '.join(DEDUP_FIXED)} from the "
                                  f"dedup job; leave out {', '.join(fixed)}")
    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database (import personas first)")
    sign = _signer(executor, ray_address, ray_workers)
    settings: dict[str, Any] = {"threshold": threshold, "num_perm": num_perm, "ngram": ngram,
                "embedder": embedder, "embed_threshold": embed_threshold, "ann": ann}
    con = connect(db)
    try:
        job = _open_job(con, db, settings, resume)
        settings = dict(job.config)  # a resumed job's own (read before anything is built)
        config = _config(**settings, batch_size=batch_size)
        _check_stage2_executor(executor, config.embedder)
        if config.embedder is None:
            summary = _minhash_only(con, config, sign)
        else:
            summary = _dedup_job(con, db, config, job, cache, rps, sign)
    finally:
        con.close()
    if config.embedder == "hash":
        console.print("stage 2 used the 'hash' embedder (feature hashing, not a neural model); "
                      "--embedder local or openai:<model> gives the paper's semantic stage.", soft_wrap=True)
    out.print(str(summary), highlight=False, soft_wrap=True)
    if as_json:
        emit_job_json("personas dedup", db, job_id=job.job_id or None,
                      kind="dedup" if config.embedder is not None else None,
                      counts={"marked": summary.marked,
                              **{f"{s.stage}_marked": s.marked for s in summary.stages}})


# stage-2 embedders that compute no model's vectors: cheap enough for the driver on any executor
DRIVER_EMBEDDERS = ("hash",)


def _check_stage2_executor(executor: str, embedder: str | None) -> None:
    """Refuse a model embedder with ``--executor ray``: stage 2 does not run on Ray yet (its
    vectors are computed and searched on the driver; docs/scale.md says what the sharded stage
    will be), and a user asking for Ray must not get a driver-bound run without being told."""
    if executor != "ray" or embedder is None:
        return
    if embedder.strip().lower().partition(":")[0] in DRIVER_EMBEDDERS:
        return
    raise PersonahubError(f"--executor ray with --embedder {embedder}: stage 2's embeddings do not "
                          "run on Ray yet (docs/scale.md); use --embedder hash or none with "
                          "--executor ray, or --executor local for a model embedder")


def _signer(executor: str, address: str | None, workers: int | None) -> Any:
    """Where stage 1 runs: here, or on Ray up to its verified pairs (band buckets through a
    shuffle, so no signature comes here); stage 2 runs here either way."""
    from personahub.personas.dedup import local_signatures
    from personahub.sim.executors import check_executor

    check_executor(executor, workers=workers)
    if executor == "local":
        return local_signatures
    from personahub.sim.executors.ray_minhash import minhash_pair_finder

    return minhash_pair_finder(address, workers)


def _minhash_only(con: duckdb.DuckDBPyConnection, config: Any, sign: Any) -> Any:
    """``--embedder none``: stage 1 alone (no model, nothing to resume)."""
    from personahub.personas.dedup import run_dedup

    with job_progress() as bar:
        return run_dedup(con, config, progress=_progress_hook(bar), sign=sign)


def _progress_hook(bar: Any) -> Any:
    tasks: dict[str, Any] = {}

    def hook(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"dedup: {stage}", total=total)
        bar.update(tasks[stage], completed=done)

    return hook


def _check_reachable(embedder: Any) -> None:
    """One error line, before the job is recorded, when the embedding endpoint does not answer."""
    from personahub.agents.llm.client import LLMUnavailable, check_reachable

    try:
        check_reachable(embedder)
    except LLMUnavailable as exc:
        raise PersonahubError(f"--embedder {embedder.name}: the embedding endpoint "
                              f"{embedder.endpoints[0].base_url or 'https://api.openai.com/v1'} "
                              f"is unreachable ({type(exc.__cause__).__name__}); check "
                              "OPENAI_BASE_URL") from None


def _dedup_job(con: duckdb.DuckDBPyConnection, db: Path, config: Any, job: Any, cache: str, rps: float | None,
               sign: Any) -> Any:
    """Run (or resume) the dedup job on the kernel's loop and record how it ended."""
    from personahub.agents.llm.cache import attach_cache
    from personahub.core.commit import JobRef
    from personahub.core.loop import job_loop
    from personahub.personas.dedup import dedup_job
    from personahub.personas.dedup_jobs import JOB_KIND, finish_dedup_job, start_dedup_job
    from personahub.personas.embedding import ModelEmbedder
    from personahub.personas.embedding_store import stored_vector_count

    embedder = _model_embedder(config.embedder, cache, rps)
    if cache != "off":  # a replay with nothing recorded is refused before the job is recorded
        attach_cache(con, embedder, cache)
    if cache != "replay" and isinstance(embedder, ModelEmbedder):
        _check_reachable(embedder)
    job_id = start_dedup_job(con, job.config, job.job_id or None)
    if job.job_id:
        console.print(f"resuming dedup job {job_id}: stages done: {', '.join(job.stages) or 'none'}; "
                      f"{stored_vector_count(con, embedder.name)} vectors stored", highlight=False,
                      soft_wrap=True)
    else:
        started("dedup job", job_id, db)
    try:
        counted = embedder if isinstance(embedder, ModelEmbedder) else None  # local: no calls
        with job_progress(counted) as bar, job_loop() as loop, interrupts_from_queries():
            summary = loop.run(dedup_job(con, config, embedder, JobRef(JOB_KIND, job_id),
                                         stages_done=job.stages, progress=_progress_hook(bar),
                                         sign=sign))
    except KeyboardInterrupt as exc:
        finish_dedup_job(con, job_id, "interrupted", f"interrupted by {signal_name(exc)}")
        raise Stopped(f"dedup job {job_id} interrupted by {signal_name(exc)}; run the same "
                      "command (or --resume it) to go on from the stored vectors", exc) from None
    except BaseException as exc:
        finish_dedup_job(con, job_id, "failed", f"{type(exc).__name__}: {exc}"[:1000])
        raise
    finish_dedup_job(con, job_id, "finished")
    return summary

"""personahub personas dedup: MinHash, then embeddings, as a resumable job on the kernel.

A thin adapter over the dedup job spec (pipelines/dedup.py): it builds the same
DedupJobConfig as personahub.dedup and runs it on the kernel.

Stage 2 commits each batch's vectors with its model-call records, then marks duplicates
once all vectors are in; re-running the command, or --resume JOB_ID, goes on from the
stored vectors. --cache, --rps and --timeout matter only for model embedders
(openai:<model>). Stage 2 skips texts in scripts its embedder was not trained on and
counts them as "skipped for language".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from personahub.cli.common import console, emit_job_json, given_on_command_line, one_line_errors, out
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import JobHooks, awaiting_results, unreachable
from personahub.cli.options import DbOption, Shown, embedder_spec_or_none, output_options, resume_option
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import DEFAULT_DB

# What a resumed dedup job takes from its stored configuration (giving them again is an error).
DEDUP_FIXED = ("threshold", "num_perm", "ngram", "embedder", "embed_threshold", "ann")


@one_line_errors
@engine_options("cache", "rps", "timeout_s", "executor", "batch")
@output_options()
def personas_dedup(
    ctx: typer.Context,
    db: DbOption = Path(DEFAULT_DB),
    threshold: Annotated[float, typer.Option(help="Stage 1: MinHash Jaccard threshold.")] = 0.9,
    num_perm: Annotated[int, typer.Option(help="Stage 1: MinHash permutations.")] = 128,
    ngram: Annotated[int, typer.Option(min=1, help="Stage 1: word n-gram size.")] = 1,
    embedder: Annotated[str, typer.Option(
        callback=embedder_spec_or_none,
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
    memory_mb: Annotated[int, typer.Option(
        min=1, help="Stage 1's working memory in MiB, beyond the process's own: a hub that "
                     "needs more is deduplicated out of core, each stage spilling to files "
                     "beside the database, with the same flags (docs/scale.md).")] = 1024,
    resume: Annotated[str | None, resume_option(
        "JOB_ID", "its stored vectors, thresholds, embedder and index")] = None,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Flag near-duplicate personas: MinHash LSH, then embedding similarity (never deletes).

    Resumable: re-run the same command after an interruption (vectors already stored in
    persona_embeddings are not embedded again), or give --resume JOB_ID. With an
    openai:<model> embedder, --provider-batch sends the embedding requests as provider batches and
    --provider-batch-file writes them for another runner (docs/batch.md).

    With --executor ray, stage 1 writes the texts to files in the job's folder beside the
    database and Ray's tasks read and write their work there (each within --memory-mb): on a
    cluster of several machines, put the database on storage every node mounts at the same path
    (docs/scale.md).
    """
    from personahub.persona_jobs import run_dedup_job
    from personahub.pipelines.dedup import DedupJobConfig, dedup_lines

    if resume is not None:
        fixed = given_on_command_line(ctx, DEDUP_FIXED)
        if fixed:
            raise UsageError(f"--resume {resume} takes {', '.join(DEDUP_FIXED)} from the "
                             f"dedup job; leave out {', '.join(fixed)}")
    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database (import personas first)")
    if resume is not None:
        _check_resumable(db, resume)
    # how this invocation runs (a resume keeps what the job marks)
    settings: dict[str, Any] = {"db": str(db), **engine.settings(), **engine.batching(batch_size),
                                # (--batch-size stays the personas embedded per transaction)
                                "batch_size": batch_size, "memory_mb": memory_mb}
    config: DedupJobConfig | dict[str, object] = settings if resume is not None else DedupJobConfig(
        threshold=threshold, num_perm=num_perm, ngram=ngram, embedder=embedder,
        embed_threshold=embed_threshold, ann=ann, **settings)
    hooks = JobHooks("dedup job", db, show_banner=False)
    with hooks.progress() as bar, awaiting_results():
        result = run_dedup_job(config, db=db, resume=resume, progress=_progress_hook(bar),
                               on_ready=hooks.on_ready, on_start=hooks.on_start, warn=unreachable)
    summary = result.summary
    if embedder == "hash" and resume is None:
        console.print("stage 2 used the 'hash' embedder (feature hashing, not a neural model); "
                      "--embedder local or openai:<model> gives the paper's semantic stage.",
                      soft_wrap=True)
    for line in dedup_lines(summary):
        out.print(line, highlight=False, soft_wrap=True)
    if shown.json:
        emit_job_json("personas dedup", db, job_id=result.job_id, kind="dedup",
                      counts={"marked": summary.marked,
                              **{f"{s.stage}_marked": s.marked for s in summary.stages}})


def _check_resumable(db: Path, job_id: str) -> None:
    """Refuse, before anything runs, a --resume of no dedup job or of a finished one."""
    from personahub.core.jobs_store import find_job
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        row = find_job(con, job_id)
    finally:
        con.close()
    if row is None or row.kind != "dedup":
        raise PersonahubError(f"--resume {job_id}: no such dedup job in {db}")
    if row.status == "finished":
        raise PersonahubError(f"--resume {job_id}: the dedup job is finished; there is nothing "
                              "to resume")


def _progress_hook(bar: Any) -> Any:
    """Build a hook that shows a bar per stage (minhash, embedding) from the kernel's progress reports."""
    tasks: dict[str, object] = {}

    def hook(stage: str, done: int, total: int | None) -> None:
        if stage.startswith("batch ") and "embedding" in tasks:  # a provider batch's state
            bar.update(tasks["embedding"], description=f"dedup: embedding · {stage}")
            return
        if stage not in ("minhash", "embedding"):
            return
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"dedup: {stage}", total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return hook

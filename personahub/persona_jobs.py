"""The persona jobs for the Python API, without the CLI's console. Text-to-persona is a job
spec (``pipelines/text_to_persona.py``): the API and ``personahub personas from-text`` build the
same ``TextConfig`` and run it through ``run_text_job`` (the kernel). Expansion and dedup are
opened, run on the job kernel's loop (``core.loop.job_loop``) and closed with a status, as the
commands in ``cli/personas.py`` and ``cli/dedup.py`` do.

Each function blocks; ``personahub.api`` runs it in a worker thread where a loop is running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personahub.agents.llm.adaptive_limit import Concurrency
from personahub.agents.llm.cache import attach_cache
from personahub.agents.llm.client import LLMClient, LLMSettings, check_reachable, make_client
from personahub.core.commit import ProgressHook
from personahub.core.errors import PersonahubError
from personahub.core.kernel import JobResult
from personahub.core.loop import job_loop
from personahub.core.store import connect
from personahub.personas.store import live_persona_ids

if TYPE_CHECKING:
    from personahub.pipelines.text_to_persona import TextConfig


def _client(llm: str, seed: int, concurrency: Concurrency, cache: str, **settings: Any) -> LLMClient:
    client = make_client(LLMSettings(spec=llm, seed=seed, concurrency=concurrency, **settings))
    if cache != "replay":  # a replay calls no model
        check_reachable(client)
    return client


def _existing(db: Path) -> None:
    if not Path(db).exists():
        raise PersonahubError(f"db {db}: no such database; import personas into it first")


def text_config(corpus: str | Path, *, db: str | Path, llm: str, seed: int,
                relations: str | Sequence[str], per_text: int, limit: int | None,
                corpus_name: str | None, text_column: str | None, id_column: str | None,
                split: str, batch_size: int, concurrency: Concurrency, language: str | None,
                cache: str, **settings: Any) -> TextConfig:
    """The ``TextConfig`` of ``personahub.text_to_persona(corpus, ...)`` (the command builds
    the same one from its flags): the corpus named after its file unless ``corpus_name``."""
    from personahub.pipelines.text_to_persona import TextConfig

    return TextConfig(corpus=corpus_name or Path(corpus).name, path=str(Path(corpus).resolve()),
                      relations=tuple(relations.split(",") if isinstance(relations, str) else relations),
                      per_text=per_text, limit=limit,
                      text_column=text_column, id_column=id_column, split=split,
                      batch_size=batch_size, concurrency=concurrency, language=language,
                      cache=cache, db=str(db), llm=llm, seed=seed, **settings)


def rerun_settings(config: TextConfig, given: Iterable[str]) -> dict[str, Any]:
    """What a run over a corpus that has its job already hands the kernel: every engine field
    of ``config`` and the fields of what the job makes that the caller ``given`` (the kernel
    refuses those that differ from the job's)."""
    from personahub.core.kernel import engine_fields

    names = engine_fields(type(config)) | set(given)
    return {name: getattr(config, name) for name in sorted(names) if hasattr(config, name)}


def run_text_job(config: TextConfig | Mapping[str, Any], *, db: str | Path,
                 resume: str | None = None, given: Iterable[str] = (),
                 progress: ProgressHook | None = None,
                 on_ready: Callable[[Any], None] | None = None,
                 on_start: Callable[[str, bool], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> JobResult[Any]:
    """Run a text-to-persona job on the kernel: ``resume`` (its id) goes on with it; a new
    config over a corpus that has its job already goes on with that job (``rerun_settings``);
    else a new job. The command and the API both come here."""
    from personahub import runtime
    from personahub.pipelines.text_to_persona import TEXT_TO_PERSONA, TextConfig, text_job_of

    if resume is None and isinstance(config, TextConfig):
        resume = text_job_of(db, config.corpus)
        if resume is not None:
            config = rerun_settings(config, given)
    return runtime.run(TEXT_TO_PERSONA, config, db, resume=resume, progress=progress,
                       on_ready=on_ready, on_start=on_start, warn=warn)


def text_to_persona_job(corpus: Path, *, db: Path, given: Iterable[str] = (),
                        **options: Any) -> tuple[str, Any]:
    """(job id, ``TextToPersonaSummary``): ask who reads/writes/likes/dislikes each text (a
    corpus that has its job already: that job goes on, skipping what it did)."""
    result = run_text_job(text_config(corpus, db=db, **options), db=db, given=given)
    return result.job_id, result.summary


def expand_job(*, db: Path, llm: str, seed: int, hops: int, fanout: int, limit: int | None,
               start_ids: list[str] | None, batch_size: int, concurrency: Concurrency,
               language: str | None, link_candidates: int, link_embedder: str | None,
               cache: str, **settings: Any) -> tuple[str, Any]:
    """(expansion id, ``ExpandSummary``): grow the hub hop by hop from its first personas."""
    from personahub.personas.expand import expand_hub

    _existing(db)
    client = _client(llm, seed, concurrency, cache, **settings)
    con = connect(db)
    try:
        attach_cache(con, client, cache)
        start = list(start_ids) if start_ids is not None else live_persona_ids(con, limit)
        if not start:
            raise PersonahubError(f"db {db}: the hub has no personas to expand from")
        with job_loop() as loop:
            summary = loop.run(expand_hub(
                con, client, start_ids=start, hops=hops, fanout=fanout, batch_size=batch_size,
                language=language, link_candidates=link_candidates, link_embedder=link_embedder,
                config={"limit": limit, "origin": "api", "seed": seed, **settings}))
        return summary.expansion_id, summary
    finally:
        con.close()


def dedup_job_run(*, db: Path, embedder: str | None, threshold: float, num_perm: int, ngram: int,
                  embed_threshold: float, ann: str, batch_size: int) -> tuple[str, Any]:
    """(job id, ``DedupSummary``): MinHash, then embeddings (unless ``embedder`` is None)."""
    from personahub.core.commit import JobRef
    from personahub.personas.dedup import DedupConfig, dedup_job, run_dedup
    from personahub.personas.dedup_jobs import (
        JOB_KIND,
        find_unfinished_dedup,
        finish_dedup_job,
        start_dedup_job,
    )
    from personahub.personas.embedding import make_embedder
    from personahub.personas.minhash import MinHashConfig

    _existing(db)
    try:
        config = DedupConfig(minhash=MinHashConfig(num_perm=num_perm, threshold=threshold, ngram=ngram),
                             embed_threshold=embed_threshold, embedder=embedder, ann_index=ann,
                             batch_rows=batch_size)
    except ValueError as exc:
        raise PersonahubError(f"dedup: {exc}") from exc
    con = connect(db)
    try:
        if embedder is None:  # stage 1 alone: no model, no job row
            return "minhash", run_dedup(con, config)
        model = make_embedder(embedder)
        settings = {"threshold": threshold, "num_perm": num_perm, "ngram": ngram,
                    "embedder": embedder, "embed_threshold": embed_threshold, "ann": ann}
        unfinished = find_unfinished_dedup(con, settings)  # the same settings: go on with it
        job_id = start_dedup_job(con, settings, unfinished.job_id if unfinished else None)
        try:
            with job_loop() as loop:
                summary = loop.run(dedup_job(con, config, model, JobRef(JOB_KIND, job_id),
                                             stages_done=unfinished.stages if unfinished else None))
        except BaseException as exc:
            finish_dedup_job(con, job_id, "failed", f"{type(exc).__name__}: {exc}"[:1000])
            raise
        finish_dedup_job(con, job_id, "finished")
        return job_id, summary
    finally:
        con.close()

"""The persona jobs for the Python API, without the CLI's console: text-to-persona, expansion
and dedup, each opened, run on the job kernel's loop (``core.loop.job_loop``) and closed with a
status, as the commands in ``sim.cli_personas`` and ``sim.cli_dedup`` do.

Each function blocks; ``personahub.api`` runs it in a worker thread where a loop is running.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

from personahub.agents.llm.adaptive_limit import Concurrency
from personahub.agents.llm.cache import attach_cache
from personahub.agents.llm.client import LLMClient, LLMSettings, check_reachable, make_client, redact_spec
from personahub.core.errors import PersonahubError
from personahub.core.loop import job_loop
from personahub.core.store import connect
from personahub.personas.store import live_persona_ids


def _client(llm: str, seed: int, concurrency: Concurrency, cache: str, **settings: Any) -> LLMClient:
    client = make_client(LLMSettings(spec=llm, seed=seed, concurrency=concurrency, **settings))
    if cache != "replay":  # a replay calls no model
        check_reachable(client)
    return client


def _existing(db: Path) -> None:
    if not Path(db).exists():
        raise PersonahubError(f"db {db}: no such database; import personas into it first")


def text_to_persona_job(corpus: Path, *, db: Path, llm: str, seed: int, relations: str,
                        per_text: int, limit: int | None, corpus_name: str | None,
                        text_column: str | None, id_column: str | None, split: str,
                        batch_size: int, concurrency: Concurrency, language: str | None,
                        cache: str, **settings: Any) -> tuple[str, Any]:
    """(job id, ``TextToPersonaSummary``): ask who reads/writes/likes/dislikes each text."""
    from personahub.personas.text_jobs import finish_text_job, start_text_job
    from personahub.personas.text_to_persona import iter_texts, parse_relations, text_to_persona

    try:
        chosen = parse_relations(relations)
        texts = iter_texts(corpus, text_column=text_column, id_column=id_column, split=split,
                           name=corpus_name)
    except ValueError as exc:
        raise PersonahubError(str(exc)) from None
    name = corpus_name or Path(corpus).name
    client = _client(llm, seed, concurrency, cache, **settings)
    con = connect(db)
    try:
        attach_cache(con, client, cache)
        job_id = start_text_job(con, name, {"seed": seed, "llm": redact_spec(llm), **settings,
                                   "relations": list(chosen), "per_text": per_text,
                                   "language": language, "path": str(Path(corpus).resolve()),
                                   "text_column": text_column, "id_column": id_column,
                                   "split": split, "limit": limit, "skip_bad": False})
        try:
            with job_loop() as loop:
                summary = loop.run(text_to_persona(
                    con, client, islice(texts, limit), corpus=name, relations=chosen,
                    per_text=per_text, batch_size=batch_size, concurrency=concurrency,
                    language=language, job_id=job_id))
        except BaseException as exc:
            finish_text_job(con, job_id, "failed", f"{type(exc).__name__}: {exc}"[:1000])
            raise
        finish_text_job(con, job_id, "finished")
        return job_id, summary
    finally:
        con.close()


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

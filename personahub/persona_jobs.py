"""The persona jobs (text-to-persona, expansion, dedup), shared by the API and the commands.

Each function blocks; the API runs it in a worker thread where a loop is running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personahub.core.commit import ProgressHook
from personahub.core.errors import PersonahubError
from personahub.core.kernel import JobResult
from personahub.models.adaptive_limit import Concurrency
from personahub.models.client import LLMClient, LLMSettings, check_reachable, make_client

if TYPE_CHECKING:
    from personahub.core.contracts import StructuredCaller
    from personahub.personas.dedup import DedupSummary
    from personahub.personas.expand import ExpandSummary
    from personahub.personas.text_to_persona import TextToPersonaSummary
    from personahub.pipelines.dedup import DedupJobConfig
    from personahub.pipelines.expand import ExpandConfig
    from personahub.pipelines.text_to_persona import TextConfig


def _client(llm: str, seed: int, concurrency: Concurrency, cache: str, **settings: Any) -> LLMClient:
    client = make_client(LLMSettings(spec=llm, seed=seed, concurrency=concurrency, **settings))
    if cache != "replay":
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
    """Return the TextConfig of text_to_persona; the corpus is named after its file unless named."""
    from personahub.pipelines.text_to_persona import TextConfig

    return TextConfig(corpus=corpus_name or Path(corpus).name, path=str(Path(corpus).resolve()),
                      relations=tuple(relations.split(",") if isinstance(relations, str) else relations),
                      per_text=per_text, limit=limit,
                      text_column=text_column, id_column=id_column, split=split,
                      batch_size=batch_size, concurrency=concurrency, language=language,
                      cache=cache, db=str(db), llm=llm, seed=seed, **settings)


def rerun_settings(config: TextConfig, given: Iterable[str]) -> dict[str, object]:
    """Return the settings for going on with a corpus's existing job: engine fields and what the caller
    named, which the kernel refuses if they differ from the job's."""
    from personahub.core.kernel import engine_fields

    names = engine_fields(type(config)) | set(given)
    return {name: getattr(config, name) for name in sorted(names) if hasattr(config, name)}


def run_text_job(config: TextConfig | Mapping[str, object], *, db: str | Path,
                 resume: str | None = None, given: Iterable[str] = (),
                 progress: ProgressHook | None = None,
                 on_ready: Callable[[StructuredCaller | None], None] | None = None,
                 on_start: Callable[[str, bool], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> JobResult[TextToPersonaSummary]:
    """Run a text-to-persona job: resume it, go on with the corpus's existing job, or start one."""
    from personahub import runtime
    from personahub.pipelines.text_to_persona import TEXT_TO_PERSONA, TextConfig, text_job_of

    if resume is None and isinstance(config, TextConfig):
        resume = text_job_of(db, config.corpus)
        if resume is not None:
            config = rerun_settings(config, given)
    return runtime.run(TEXT_TO_PERSONA, config, db, resume=resume, progress=progress,
                       on_ready=on_ready, on_start=on_start, warn=warn)


def text_to_persona_job(corpus: Path, *, db: Path, given: Iterable[str] = (),
                        progress: ProgressHook | None = None,
                        **options: Any) -> tuple[str, TextToPersonaSummary]:
    """Ask who reads, writes, likes or dislikes each text; returns (job id, summary)."""
    result = run_text_job(text_config(corpus, db=db, **options), db=db, given=given,
                          progress=progress)
    return result.job_id, result.summary


def expand_config(*, db: str | Path, llm: str, seed: int, **options: Any) -> ExpandConfig:
    """Return the ExpandConfig of expand; the command builds the same one."""
    from personahub.pipelines.expand import ExpandConfig

    return ExpandConfig(db=str(db), llm=llm, seed=seed, origin="api", **options)


def run_expansion(config: ExpandConfig | Mapping[str, object], *, db: str | Path,
                  resume: str | None = None, progress: ProgressHook | None = None,
                  on_ready: Callable[[StructuredCaller | None], None] | None = None,
                  on_start: Callable[[str, bool], None] | None = None,
                  warn: Callable[[str], None] | None = None) -> JobResult[ExpandSummary]:
    """Run or resume an expansion; one of 0 hops asks and records nothing."""
    from personahub import runtime
    from personahub.personas.expand import ExpandSummary
    from personahub.pipelines.expand import EXPANSION, ExpandConfig

    _existing(Path(db))
    if resume is None and isinstance(config, ExpandConfig) and config.hops == 0:
        return JobResult("", "finished", ExpandSummary(), ran=False)
    return runtime.run(EXPANSION, config, db, resume=resume, progress=progress,
                       on_ready=on_ready, on_start=on_start, warn=warn)


def expand_job(*, db: Path, resume: str | None = None, progress: ProgressHook | None = None,
               given: Mapping[str, Any] | None = None, **options: Any) -> tuple[str, ExpandSummary]:
    """Grow the hub hop by hop; returns (expansion id, summary). A resume refuses named
    options that differ from the job's."""
    if resume is not None:
        from personahub.core.kernel import engine_fields
        from personahub.pipelines.expand import ExpandConfig
        from personahub.runtime import recorded_llm

        engine = {k: v for k, v in options.items() if k in engine_fields(ExpandConfig)}
        settings: dict[str, object] = {**engine, **(given or {}), "db": str(db)}
        if settings.get("llm") in (None, "offline"):  # ask the model the job recorded
            settings["llm"] = recorded_llm(db, resume)
        result = run_expansion(settings, db=db, resume=resume, progress=progress)
    else:
        result = run_expansion(expand_config(db=db, **options), db=db, progress=progress)
    return result.job_id, result.summary


def dedup_config(*, db: str | Path, embedder: str | None, **options: Any) -> DedupJobConfig:
    """Return the DedupJobConfig of dedup; embedder None runs MinHash alone."""
    from personahub.pipelines.dedup import DedupJobConfig

    return DedupJobConfig(db=str(db), embedder=embedder, **options)


def run_dedup_job(config: DedupJobConfig | Mapping[str, object], *, db: str | Path,
                  resume: str | None = None, progress: ProgressHook | None = None,
                  on_ready: Callable[[StructuredCaller | None], None] | None = None,
                  on_start: Callable[[str, bool], None] | None = None,
                  warn: Callable[[str], None] | None = None) -> JobResult[DedupSummary]:
    """Run a dedup job: resume it, go on with an unfinished job marking the same, or start one."""
    from personahub import runtime
    from personahub.core.kernel import engine_fields
    from personahub.pipelines.dedup import DEDUP, DedupJobConfig, dedup_job_of

    _existing(Path(db))
    if resume is None and isinstance(config, DedupJobConfig):
        resume = dedup_job_of(db, config)
        if resume is not None:
            config = {name: getattr(config, name) for name in engine_fields(DedupJobConfig)}
    return runtime.run(DEDUP, config, db, resume=resume, progress=progress,
                       on_ready=on_ready, on_start=on_start, warn=warn)


def dedup_job_run(*, db: Path, progress: ProgressHook | None = None, resume: str | None = None,
                  given: Iterable[str] = (), **options: Any) -> tuple[str, DedupSummary]:
    """MinHash, then embeddings; returns (job id, summary). A resume refuses named options
    that differ from the job's."""
    if resume is None:
        result = run_dedup_job(dedup_config(db=db, **options), db=db, progress=progress)
        return result.job_id, result.summary
    from personahub.core.kernel import engine_fields
    from personahub.pipelines.dedup import DedupJobConfig

    named = engine_fields(DedupJobConfig) | set(given)
    settings = {k: v for k, v in options.items() if k in named}
    result = run_dedup_job({**settings, "db": str(db)}, db=db, resume=resume, progress=progress)
    return result.job_id, result.summary

"""The Python API: each job as a plain call and an async twin, returning a handle on its tables.

The functions build the same configs as the CLI commands, so a notebook and a command do the
same work. Inside a running event loop (Jupyter) a job runs in a worker thread; the stop
button marks it interrupted, to be resumed like a command after Ctrl-C::

    import personahub
    run = personahub.run_scenario("scenarios/riverside_town.py", db="society.duckdb", steps=2)
    run.survey_answers().groupby("step").size()
    job = await personahub.synthesize_async("math_problem", db="society.duckdb", n=20)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personahub.core.engine_options import BATCH, SAMPLING, defaults
from personahub.core.errors import PersonahubError
from personahub.job_calls import async_twin, job_function
from personahub.progress_bars import ProgressSetting, progress_hook, quiet_tqdm_auto
from personahub.python_names import (
    DEFAULT_DB,
    as_conditions,
    as_id,
    python_message,
    refuse_unknown,
    speaks_python,
)
from personahub.results import Calibration, Job, Judged, Run

if TYPE_CHECKING:
    import pandas as pd

    from personahub.core.commit import ProgressHook
    from personahub.core.contracts import StructuredCaller
    from personahub.core.kernel import RecordHook
    from personahub.pipelines.calibrate import CalibrateConfig
    from personahub.pipelines.evaluate import EvalConfig, EvalSummary
    from personahub.pipelines.judge import JudgeConfig, JudgeSummary
    from personahub.pipelines.population_write import WriteConfig
    from personahub.pipelines.run import RunConfig, RunSummary
    from personahub.pipelines.synthesize import SynthConfig, SynthSummary
    from personahub.sim.scenario import Scenario





def run_config(scenario_or_path: Scenario | str | Path, run_options: RunConfig | None = None,
               overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Return the RunConfig that run_scenario builds; a None override keeps the base's value."""
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    scenario = (load_scenario(scenario_or_path) if isinstance(scenario_or_path, str | Path)
                else scenario_or_path)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    known = {f.name for f in dataclasses.fields(RunConfig)} - {"scenario"}
    refuse_unknown("run_scenario", given, known)
    if "db" in given:
        given["db"] = Path(given["db"])
    return dataclasses.replace(run_options or RunConfig(), scenario=scenario, **given)


def run_simulation(config: RunConfig | Mapping[str, Any], *, resume: str | None = None,
                   fresh: bool = False, client: StructuredCaller | None = None,
                   progress: ProgressHook | None = None,
                   on_ready: Callable[[StructuredCaller | None], None] | None = None,
                   on_start: Callable[[str, bool], None] | None = None,
                   warn: Callable[[str], None] | None = None,
                   on_record: RecordHook | None = None) -> RunSummary:
    """Run a scenario run, or go on with one (the Python calls and the command share it).

    Args:
        config: the run's RunConfig, or a resume's settings as a mapping.
        resume: the id of the run to go on with.
        fresh: start over rather than resume an unfinished run of the same config.
        client: a model client of your own, used as it is.
        progress: a progress hook (phase, done, total).
        on_ready: called with the model client once it is ready.
        on_start: called with the run's id and whether it resumed.
        warn: where warnings go.
        on_record: called with the connection and a new run's id inside the transaction that
            records the run, to write what must not be lost apart from it.

    Returns:
        The run's RunSummary.

    Raises:
        PersonahubError: a finished run was asked to resume.
    """
    from personahub import runtime
    from personahub.core.errors import PersonahubError
    from personahub.pipelines.run import RUN, check_new_run

    if isinstance(config, Mapping):
        db = config.get("db", DEFAULT_DB)
    else:
        check_new_run(config)
        db = config.db
    result = runtime.run(RUN, config, db, resume=resume, fresh=fresh, client=client,
                         progress=progress, on_ready=on_ready, on_start=on_start, warn=warn,
                         on_record=on_record)
    if not result.ran:
        raise PersonahubError(f"--resume {resume}: the run already finished")
    summary: RunSummary = result.summary
    return summary


#: the engine options resume_run takes: how this resume runs, not what it makes
RUN_RESUME_OPTIONS = frozenset({"offline_latency_s", "executor", "ray_address", "ray_workers",
                                "max_failed_share"})


@speaks_python()
def resume_run(run_id: str | int, *, db: str | Path, llm: str | None = None,
               progress: ProgressHook | None = None, client: StructuredCaller | None = None,
               on_ready: Callable[[], None] | None = None, **engine: Any) -> RunSummary:
    """Continue a run from its last committed step; it keeps its scenario, seed and model settings.

    Args:
        run_id: the run to go on with.
        db: the DuckDB file holding it.
        llm: the model spec (None: the recorded one, whose credentials were redacted).
        progress: a progress hook (phase, done, total).
        client: a model client of your own, used as it is.
        on_ready: called once the model client is ready.
        **engine: how this resume runs: max_failed_share (None: the recorded share),
            offline_latency_s, executor, ray_address, ray_workers; an unknown keyword is refused.

    Returns:
        The run's RunSummary.

    Raises:
        PersonahubError: the run had already finished.
    """
    from personahub.pipelines.run import resume_settings

    refuse_unknown("resume_run", engine, set(RUN_RESUME_OPTIONS))
    run_id = as_id(run_id)
    settings = resume_settings(run_id, db, llm=llm, **engine)
    return run_simulation(settings, resume=run_id, client=client, progress=progress,
                          on_ready=None if on_ready is None else lambda _: on_ready())


@job_function
def run_scenario(scenario_or_path: Scenario | str | Path, run_options: RunConfig | None = None, /,
                 *, db: str | Path | None = None, llm: str | None = None, seed: int | None = None,
                 steps: int | None = None, progress: ProgressSetting = None, **options: object) -> Run:
    """Run a scenario and return a handle on the run's tables.

    Args:
        scenario_or_path: a Scenario or the path of its file.
        run_options: a RunConfig the other arguments override (positional only).
        db: the DuckDB file (default: the base's, else ``society.duckdb``).
        llm: the model spec (default: the offline engine).
        seed: the run's seed (default: the scenario's).
        steps: how many steps (default: the scenario's).
        progress: True/False for a bar per phase (default: in a notebook or on a terminal), or a
            hook (phase, done, total).
        **options: further RunConfig fields (concurrency, cache, temperature, ...); an unknown
            one is refused by name.

    Returns:
        The Run: its run_id, summary and tables as DataFrames.
    """
    quiet_tqdm_auto()  # must precede the scenario's imports, which may import tqdm.auto
    overrides = {"db": db, "llm": llm, "seed": seed, "steps": steps, **options}
    config = run_config(scenario_or_path, run_options, overrides)
    with progress_hook(progress) as hook:
        summary = run_simulation(config, progress=hook)
    if summary.personas_note:  # fewer personas than the scenario asked for
        print(f"note: {python_message(summary.personas_note)}", file=sys.stderr)
    if summary.setup_note:  # the setup expansion's answers the gate kept and rejected
        print(f"note: {summary.setup_note}", file=sys.stderr)
    return Run(job_id=summary.run_id, db=Path(config.db), summary=summary)


run_scenario_async = async_twin(run_scenario)


def synthesis_config(task: str, db: str | Path, llm: str, seed: int, n: int,
                     options: dict[str, object]) -> SynthConfig:
    """Return the SynthConfig that synthesize builds; unknown options are refused by name."""
    from personahub.pipelines.synthesize import SynthConfig

    refuse_unknown("synthesize", options, {f.name for f in dataclasses.fields(SynthConfig)})
    return SynthConfig(task=task, db=str(db), llm=llm, seed=seed, n=n, **as_conditions(options))


def run_synthesis(options: SynthConfig, *, resume: str | None = None,
                  client: StructuredCaller | None = None, progress: ProgressHook | None = None,
                  on_ready: Callable[[], None] | None = None, fresh: bool = False,
                  on_start: Callable[[str], None] | None = None) -> SynthSummary:
    """Run or resume a synthesis job (the Python call and the command share it).

    Args:
        options: the job's SynthConfig.
        resume: the id of the job to go on with.
        client: a model client of your own, used as it is.
        progress: a progress hook (phase, done, total).
        on_ready: called once the model client is ready.
        fresh: start over rather than resume an unfinished job of the same config.
        on_start: called with the job's id.

    Returns:
        The job's SynthSummary.
    """
    from personahub import runtime
    from personahub.pipelines.synthesize import SYNTHESIS

    result = runtime.run(SYNTHESIS, options, options.db, resume=resume, fresh=fresh,
                         client=client, progress=progress,
                         on_ready=None if on_ready is None else lambda _: on_ready(),
                         on_start=None if on_start is None else lambda job_id, _: on_start(job_id))
    return result.summary


class FewerItems(PersonahubError):
    """A synthesis job made fewer items than asked without allow_fewer; its items are kept.

    The attribute job is the handle; the message says why it fell short.
    """

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


@job_function
def synthesize(task: str, *, db: str | Path = DEFAULT_DB, llm: str = "offline", seed: int = 0,
               n: int = 10, progress: ProgressSetting = None, **options: object) -> Job:
    """Run a synthesis job: each persona writes items of one task kind.

    Args:
        task: the task kind (math_problem, instruction, ...).
        db: the DuckDB file holding the personas and, after, the items.
        llm: the model spec (default: the offline engine).
        seed: the job's seed.
        n: how many personas are drawn.
        progress: as for run_scenario.
        **options: further SynthConfig fields (prompting, examples, carve, solve,
            per_persona, allow_fewer, ...).

    Returns:
        The job's Job handle (``items()``, ``export()``).

    Raises:
        FewerItems: the job holds fewer than n x per_persona items and allow_fewer
            was not given; its job attribute is the handle.
    """
    config = synthesis_config(task, db, llm, seed, n, options)
    with progress_hook(progress) as hook:
        summary = run_synthesis(config, progress=hook)
    job = Job(kind="synthesis", job_id=summary.job_id, db=Path(db), summary=summary)
    if summary.shortfall and not config.allow_fewer:
        raise FewerItems(f"{summary.shortfall} (allow_fewer=True accepts fewer)", job)
    return job


synthesize_async = async_twin(synthesize)


# how a persona job runs, unless the caller says
_PERSONA_ENGINE = ("concurrency", "cache", "executor", "ray_address", "ray_workers",
                   "max_failed_share", "offline_latency_s")
_TEXT_DEFAULTS: dict[str, object] = {
    "relations": "read,write,like,dislike", "per_text": 1, "limit": None, "corpus_name": None,
    "text_column": None, "id_column": None, "split": "paragraph", "batch_size": 64,
    "language": None, "skip_bad": False, **defaults(*_PERSONA_ENGINE)}


def _expand_defaults() -> dict[str, object]:
    """Return expand's defaults, the command's constants; imported late as they load the persona layer."""
    from personahub.personas.expand import DEFAULT_BATCH
    from personahub.personas.link_nearest import DEFAULT_LINK_CANDIDATES, DEFAULT_LINK_EMBEDDER

    return {"hops": 1, "fanout": 2, "limit": None, "start_ids": None, "batch_size": DEFAULT_BATCH,
            "language": None, "link_candidates": DEFAULT_LINK_CANDIDATES,
            "link_embedder": DEFAULT_LINK_EMBEDDER, **defaults(*_PERSONA_ENGINE)}


# what an expansion makes: a resume compares these when the caller names them
_EXPAND_IDENTITY = {"hops", "fanout", "limit", "start_ids", "language", "link_candidates",
                    "link_embedder", "batch_size", *SAMPLING}
_DEDUP_DEFAULTS: dict[str, object] = {
    "embedder": "hash", "threshold": 0.9, "num_perm": 128, "ngram": 1, "embed_threshold": 0.9,
    "ann": "auto", "batch_size": 50_000}
# how a dedup job runs (its engine fields)
_DEDUP_ENGINE = {"cache", "rps", "timeout_s", "executor", "ray_address", "ray_workers",
                 "memory_mb"}
_MODEL_FLAGS = {*SAMPLING, "timeout_s", "rps"}
# --provider-batch and its options (docs/batch.md)
_BATCH_FLAGS = set(BATCH)


def _persona_job(kind: str, defaults: dict[str, object], flags: set[str], db: str | Path,
                 options: dict[str, object], progress: ProgressSetting = None, **fixed: object) -> Job:
    """Run a persona job with its defaults overridden by the caller's options."""
    from personahub import persona_jobs

    refuse_unknown(kind, options, set(defaults) | flags)
    jobs: dict[str, Callable[..., tuple[str, object]]] = {
        "text_to_persona": persona_jobs.text_to_persona_job,
        "dedup": persona_jobs.dedup_job_run}
    run = jobs[kind]
    with progress_hook(progress) as hook:
        job_id, summary = run(db=Path(db), progress=hook, **fixed, **{**defaults, **options})
    return Job(kind=kind, job_id=job_id, db=Path(db), summary=summary)


@job_function
def text_to_persona(corpus: str | Path, *, db: str | Path = DEFAULT_DB, llm: str = "offline",
                    seed: int = 0, progress: ProgressSetting = None, **options: object) -> Job:
    """Text-to-persona over a corpus file: who is likely to read, write, like or dislike each text.

    Running again over the same corpus name goes on with its job; an option that job fixed
    otherwise is an error.

    Args:
        corpus: the corpus file.
        db: the DuckDB file the personas go to.
        llm: the model spec (default: the offline engine).
        seed: the job's seed.
        progress: as for run_scenario (counts the texts read).
        **options: relations, per_text, limit, corpus_name, text_column, id_column, split,
            skip_bad, language, and the engine, model and batch options (docs/api.md).

    Returns:
        The job's Job handle; ``items()`` are the personas it made.
    """
    # the options the caller named must agree with an existing job over the same corpus
    return _persona_job("text_to_persona", _TEXT_DEFAULTS, _MODEL_FLAGS | _BATCH_FLAGS, db,
                        options, progress, corpus=Path(corpus), llm=llm, seed=seed,
                        given=frozenset(options))


text_to_persona_async = async_twin(text_to_persona)


@job_function
def expand(*, db: str | Path = DEFAULT_DB, llm: str = "offline", seed: int = 0,
           resume: str | int | None = None, progress: ProgressSetting = None, **options: Any) -> Job:
    """Persona-to-persona: grow the hub by rounds of people related to those in it.

    Args:
        db: the DuckDB file holding the hub.
        llm: the model spec (default: the offline engine).
        seed: the job's seed.
        resume: an expansion id to go on with; an option naming what it makes otherwise is an
            error.
        progress: as for run_scenario.
        **options: hops, fanout, limit or start_ids, language, link_candidates, link_embedder
            (None: no nearest-people links), and the engine, model and batch options.

    Returns:
        The job's Job handle; its id is the expansion id, ``items()`` the new personas.
    """
    from personahub import persona_jobs

    resume = as_id(resume)
    if isinstance(options.get("start_ids"), list | tuple):
        options = {**options, "start_ids": [as_id(i) for i in options["start_ids"]]}
    start = _expand_defaults()
    refuse_unknown("expand", options, set(start) | _MODEL_FLAGS | _BATCH_FLAGS)
    settings = {**start, **options, "llm": llm, "seed": seed}
    # a resume keeps what the job makes: only what the caller named is compared
    named = {k: v for k, v in options.items() if k in _EXPAND_IDENTITY}
    with progress_hook(progress) as hook:
        job_id, summary = persona_jobs.expand_job(db=Path(db), resume=resume, progress=hook,
                                                  given=named, **settings)
    return Job(kind="expansion", job_id=job_id, db=Path(db), summary=summary)


expand_async = async_twin(expand)


@job_function
def dedup(*, db: str | Path = DEFAULT_DB, resume: str | int | None = None,
          progress: ProgressSetting = None, **options: object) -> Job:
    """Flag near-duplicate personas: MinHash, then embeddings. Nothing is deleted.

    An unfinished job with the same settings is resumed.

    Args:
        db: the DuckDB file holding the personas.
        resume: a dedup job id to go on with; an option naming what it marks otherwise is an
            error.
        progress: as for run_scenario (a bar per stage: minhash, embedding).
        **options: embedder (hash, local, ``openai:<model>``, None for MinHash only), threshold,
            num_perm, ngram, embed_threshold, ann, and the engine and batch options.

    Returns:
        The job's Job handle; ``items()`` are the flagged personas.
    """
    return _persona_job("dedup", _DEDUP_DEFAULTS, _DEDUP_ENGINE | _BATCH_FLAGS, db, options,
                        progress, resume=as_id(resume), given=frozenset(options))


dedup_async = async_twin(dedup)


def judge_config(job: str | None, run: str | None, db: str | Path, llm: str, seed: int,
                 options: dict[str, Any]) -> JudgeConfig:
    """Return the JudgeConfig that judge builds; unknown options are refused by name."""
    from personahub.pipelines.judge import JudgeConfig

    known = {f.name for f in dataclasses.fields(JudgeConfig)} - {"job", "run", "db", "llm", "seed"}
    refuse_unknown("judge", options, known)
    return JudgeConfig(job=job, run=run, db=str(db), llm=llm, seed=seed, **options)


def run_judge(config: JudgeConfig, *, client: StructuredCaller | None = None,
              progress: ProgressHook | None = None,
              on_ready: Callable[[StructuredCaller | None], None] | None = None,
              on_start: Callable[[str, bool], None] | None = None,
              warn: Callable[[str], None] | None = None) -> JudgeSummary:
    """Run a judge, going on with the same judge if it ran before (rated items skipped)."""
    from personahub import runtime
    from personahub.pipelines.judge import JUDGE, judge_resume

    result = runtime.run(JUDGE, config, config.db, resume=judge_resume(config), client=client,
                         progress=progress, on_ready=on_ready, on_start=on_start, warn=warn)
    summary: JudgeSummary = result.summary
    return summary


@job_function
def judge(*, job: str | int | None = None, run: str | int | None = None,
          db: str | Path = DEFAULT_DB, llm: str = "offline", seed: int = 0,
          progress: ProgressSetting = None, **options: object) -> Judged:
    """Judge a synthesis job's items or a run's emissions against their kind's criteria.

    The same settings are the same judge: calling again skips the items it has rated.

    Args:
        job: the synthesis job to judge (or give run).
        run: the run whose emissions to judge.
        db: the DuckDB file.
        llm: the judge's model spec (default: the offline engine).
        seed: the judge's seed (which items a sample takes).
        progress: as for run_scenario.
        **options: further JudgeConfig fields: task, sample, and the engine, model and batch
            options.

    Returns:
        A Judged handle: ``items()`` the judgments, ``validity()`` the rates.
    """
    config = judge_config(as_id(job), as_id(run), db, llm, seed, options)
    with progress_hook(progress) as hook:
        summary = run_judge(config, progress=hook)
    return Judged(job_id=summary.judge_id, db=Path(db), summary=summary)


judge_async = async_twin(judge)


def run_evaluation_config(config: EvalConfig | dict[str, object], *, db: str | Path | None = None,
                          resume: str | None = None, progress: ProgressHook | None = None,
                          on_ready: Callable[[StructuredCaller | None], None] | None = None,
                          on_start: Callable[[str, bool], None] | None = None,
                          warn: Callable[[str], None] | None = None) -> EvalSummary:
    """Run an evaluation job: a new one, the stored one with the same settings, or, with
    resume, that job (config then holds only engine fields)."""
    from personahub import runtime
    from personahub.core.errors import PersonahubError
    from personahub.pipelines.evaluate import EVALUATION, EvalConfig, evaluation_resume

    if isinstance(config, EvalConfig):
        if config.job is not None and not Path(config.db).exists():  # leave no empty database
            raise PersonahubError(f"--job {config.job}: no such synthesis job in {config.db}")
        db, resume = config.db, resume or evaluation_resume(config)
    elif db is None or not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database")
    result = runtime.run(EVALUATION, config, db, resume=resume, progress=progress,
                         on_ready=on_ready, on_start=on_start, warn=warn)
    summary: EvalSummary = result.summary
    return summary


@job_function
def evaluate(*, job: str | int | None = None, items: str | Path | None = None,
             solvers: list[str] | tuple[str, ...] = (), db: str | Path = DEFAULT_DB,
             progress: ProgressSetting = None, **options: Any) -> EvalSummary:
    """Evaluate a synthesis job's items, or an outside item file's, as the Persona Hub paper did.

    A seeded held-out split (near-duplicate families kept together, benchmark overlaps left out),
    items with a reference answer scored against it and the others verified by solver agreement,
    and models scored on the verified items with a Wilson interval.

    Args:
        job: the synthesis job (or give items).
        items: a JSONL, CSV or Parquet file, or a datasets folder, of questions and, where it has
            them, reference answers (``question_column``, ``answer_column`` choose the columns).
        solvers: solver specs (any llm spec; ``offline?seed=N`` for differing offline ones;
            ``SPEC#answer`` or ``SPEC#cot`` for the solver's own prompting, else mode).
        db: the DuckDB file.
        progress: as for run_scenario.
        **options: further EvalConfig fields: test_share or test_n, models, agree, samples,
            mode, equivalence_judge, against, ngram, family_threshold, question_column,
            answer_column, seed, and the engine options.

    Returns:
        An EvalSummary (``verified_share``, ``matrix``, ``scores``); calling again reuses the
        stored split and answers.
    """
    from personahub.pipelines.evaluate import EvalConfig

    known = {f.name for f in dataclasses.fields(EvalConfig)} - {
        "job", "items", "solvers", "db", "items_sha256", "against_sha256"}
    refuse_unknown("evaluate", options, known)
    for key in ("models", "against"):
        if key in options:
            options[key] = tuple(str(v) for v in options[key])
    config = EvalConfig(job=None if job is None else str(as_id(job)),
                        items=None if items is None else str(items), solvers=tuple(solvers),
                        db=str(db), **options)
    with progress_hook(progress) as hook:
        return run_evaluation_config(config, progress=hook)


evaluate_async = async_twin(evaluate)


@speaks_python()
def evaluation_quality(evaluation: str | None = None, *, job: str | int | None = None,
                       db: str | Path = DEFAULT_DB, embedder: str = "hash") -> pd.DataFrame:
    """Return an evaluation's quality as one table, the one ``report --evaluation ID`` draws.

    Verified share, solver agreement, contamination per benchmark, the latest judge's validity,
    each model's accuracy and the diversity figures; shares with a 95% Wilson interval.

    Args:
        evaluation: an evaluation's ``evaluation-...`` id; or
        job: a synthesis job (its latest evaluation).
        db: the DuckDB file.
        embedder: the diversity figures' embedder spec (``hash``: no model called).

    Returns:
        A DataFrame of ``figure``, ``group``, ``value``, ``low``, ``high``, ``detail``.
    """
    from personahub.core.store import connect
    from personahub.pipelines.evaluate_quality import find_evaluation, quality_table

    con = connect(db, read_only=True)
    try:
        found = find_evaluation(con, evaluation, job=None if job is None else str(as_id(job)))
        if found is None:
            raise PersonahubError(f"job {job} has no evaluation (personahub.evaluate makes one)")
        return quality_table(con, found, embedder=embedder)
    finally:
        con.close()


def calibration_config(survey: str | Path, population: str, llm: str, seed: int, n: int,
                       options: dict[str, object]) -> CalibrateConfig:
    """Return the CalibrateConfig that calibrate builds; unknown options are refused by name."""
    from personahub.pipelines.calibrate import CalibrateConfig

    known = {f.name for f in dataclasses.fields(CalibrateConfig)}
    refuse_unknown("calibrate", options, known - {"survey", "population", "llm", "seed", "n"})
    return CalibrateConfig(survey=str(survey), population=population, llm=llm, seed=seed, n=n,
                           **as_conditions(options))


@job_function
def calibrate(survey: str | Path | None = None, *, population: str | None = None,
              db: str | Path = DEFAULT_DB, llm: str = "offline", seed: int = 0, n: int = 20,
              resume: str | int | None = None, progress: ProgressSetting = None,
              **options: object) -> Calibration:
    """Calibrate a population against a human survey.

    Args:
        survey: an OpinionQA wave folder, a long CSV, or a respondent-level CSV or Parquet.
        population: a sample-population id, or ``all`` (every persona of the hub).
        db: the DuckDB file.
        llm: the model spec (default: the offline engine).
        seed: the job's seed.
        n: personas per group.
        resume: a calibration job id to go on with (then only llm and the engine settings
            apply).
        progress: as for run_scenario.
        **options: further CalibrateConfig fields (steering, questions, attributes, limit,
            no_persona_n, carve, offer_refusal, elicit, dispersion, archetypes, fit, folds, the
            model flags, the batch ones, ...).

    Returns:
        A Calibration whose ``per_attribute()``, ``scores()``, ``summary_table()``,
        ``answers()``, ``sd_ratios()``, ``archetype_price()``, ``intervals()``,
        ``question_spread()``, ``temperatures()``, ``ranking()`` and ``ppi(FILE)`` are
        DataFrames, and whose ``profile()`` is the survey profile ``fit=True`` chose.

    Raises:
        UsageError: neither a survey and population nor resume was given.
    """
    from personahub import runtime
    from personahub.core.errors import UsageError
    from personahub.core.kernel import engine_fields
    from personahub.pipelines.calibrate import CALIBRATION, CalibrateConfig

    population, resume = as_id(population), as_id(resume)
    config: CalibrateConfig | dict[str, object]
    if resume is not None:  # a resume takes only engine fields from the caller
        allowed = engine_fields(CalibrateConfig)
        refuse_unknown("calibrate(resume=...)", options, set(allowed - {"llm"}))
        config = {"llm": llm, **options}
    else:
        if survey is None or population is None:
            raise UsageError("calibrate: give a survey and population= (or resume=JOB_ID)")
        config = calibration_config(survey, population, llm, seed, n, options)
    with progress_hook(progress) as hook:
        result = runtime.run(CALIBRATION, config, db, resume=resume, progress=hook)
    return Calibration(job_id=result.job_id, db=Path(db), summary=result.summary)


calibrate_async = async_twin(calibrate)


# what a population job makes: a new job is built from these, a resume keeps the job's
_POPULATION_MADE = {"marginals", "joint", "n", "seed"}


def population_write_config(marginals: str | Path | None, joint: str | Path | None, n: int,
                            seed: int, llm: str, options: dict[str, Any]) -> WriteConfig:
    """Return the WriteConfig of write_population; the command builds its config here too, so the
    two cannot drift."""
    from personahub.pipelines.population_write import WriteConfig

    known = {f.name for f in dataclasses.fields(WriteConfig)}
    refuse_unknown("write_population", options, known - _POPULATION_MADE - {"llm"})
    return WriteConfig(marginals=None if marginals is None else str(marginals),
                       joint=None if joint is None else str(joint), n=n, seed=seed, llm=llm,
                       **options)


def population_write_resume(llm: str, options: dict[str, object]) -> dict[str, object]:
    """Return a population resume's settings: engine fields only; what the job makes stays its own."""
    from personahub.core.kernel import engine_fields
    from personahub.pipelines.population_write import WriteConfig

    refuse_unknown("write_population(resume=...)", options,
                    set(engine_fields(WriteConfig) - {"llm"}))
    return {"llm": llm, **options}


@job_function
def write_population(marginals: str | Path | None = None, joint: str | Path | None = None, *,
                     n: int = 1000, seed: int = 0, db: str | Path = DEFAULT_DB,
                     llm: str = "offline", resume: str | int | None = None,
                     progress: ProgressSetting = None, **options: object) -> Job:
    """Draw people matching census-like tables and have a model write each one's text.

    Args:
        marginals: the marginals file (give it, joint, or both).
        joint: the joint table's file.
        n: how many people to draw.
        seed: the job's seed.
        db: the DuckDB file.
        llm: the model spec; on a resume the default asks the model the job recorded.
        resume: a stopped job's id; its files, n, seed and generation settings stay the job's.
        progress: as for run_scenario.
        **options: further WriteConfig fields: the engine and model options.

    Returns:
        A Job (kind population_write) whose ``items()`` are the people written and whose
        ``population_id`` names their population.

    Raises:
        UsageError: a resume was also given marginals or joint.
    """
    from personahub import runtime
    from personahub.core.errors import UsageError
    from personahub.pipelines.population_write import POPULATION_WRITE

    resume = as_id(resume)
    config: WriteConfig | dict[str, object]
    if resume is not None:
        if marginals is not None or joint is not None:
            raise UsageError("write_population(resume=...): the job keeps its marginals and "
                             "joint files; give neither")
        # the default llm means the model the job recorded, as a command's --resume does
        model = runtime.recorded_llm(db, resume) if llm == "offline" else llm
        config = population_write_resume(model, options)
    else:
        config = population_write_config(marginals, joint, n, seed, llm, options)
    with progress_hook(progress) as hook:
        result = runtime.run(POPULATION_WRITE, config, db, resume=resume, progress=hook)
    return Job(kind=POPULATION_WRITE.kind, job_id=result.job_id, db=Path(db),
               summary=result.summary)


write_population_async = async_twin(write_population)

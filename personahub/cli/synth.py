"""CLI commands for synthesis, export, reports and the diversity table (registered by
personahub/cli/app.py). Analysis modules are imported lazily inside commands (the CLI is the outermost
layer)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from personahub.cli.common import (
    emit_job_json,
    error_line,
    one_line_errors,
    out,
    renamed_flag,
    say,
)
from personahub.cli.engine import DEFAULT_ONLINE_SIZE, Engine, engine_options
from personahub.cli.job_running import JobHooks, print_preview
from personahub.cli.options import (
    CarveOption,
    DbOption,
    FreshOption,
    Shown,
    embedder_spec,
    output_options,
    resume_option,
)
from personahub.core.errors import UsageError
from personahub.core.outputs import FORCE_HELP, check_output
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED

if TYPE_CHECKING:
    import duckdb


def _list_templates() -> None:
    from rich.table import Table

    from personahub.tasks import synthesis_names, synthesis_task
    from personahub.tasks.prompting import PROMPTING_MODES

    table = Table("task", "makes", "prompt template", title="synthesis tasks")
    for name in synthesis_names():
        spec = synthesis_task(name).synthesis_spec()
        extra = " (takes --world)" if spec.needs_world else ""
        extra += " (supports --solve)" if spec.solvable else ""
        table.add_row(name, spec.summary + extra, spec.instruction)
    out.print(table)
    out.print(f"prompting modes: {', '.join(PROMPTING_MODES)} (without --examples the few-shot "
              "modes use the task's shipped demonstrations, builtin:TASK)", soft_wrap=True)


@one_line_errors
@engine_options("model", "batch", "executor", batch_size=("Items", DEFAULT_ONLINE_SIZE))
@output_options(preview=True)
def synthesize(
    task: Annotated[str | None, typer.Argument(help="Task name (see --list).")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Personas to synthesize from: a uniform "
                                   "sample of the matching ones, seeded by --seed.")] = 10,
    per_persona: Annotated[int, typer.Option(
        "--per-persona", min=1, metavar="K",
        help="Items asked of each persona, each its own seeded sample (--n x K items).")] = 1,
    allow_fewer: Annotated[bool, typer.Option(
        "--allow-fewer", help="Exit 0 when the job holds fewer items than asked (too few "
                              "personas match, or asks failed); it is said either way.")] = False,
    personas: Annotated[str | None, typer.Option(
        "--personas", help="SQL WHERE condition over the personas table, e.g. "
                           "\"text ILIKE '%nurse%'\" (default: all).")] = None,
    carve: CarveOption = None,
    sample: Annotated[Literal["uniform", "head"], typer.Option(
        help="uniform: a seeded uniform sample of --n; head: the first --n in hub order.")
    ] = "uniform",
    include_ungated: Annotated[bool, typer.Option(
        help="Draw personas the quality gate did not pass too: imported rows that fail it and, "
             "for a model job, the offline engine's (docs/personas.md).")] = False,
    prompting: Annotated[Literal["zero-shot", "few-shot", "persona-few-shot"], typer.Option(
        help="zero-shot: persona and task only; few-shot: demonstrations before the task; "
             "persona-few-shot: each demonstration with the persona it came from.")
    ] = "zero-shot",
    examples: Annotated[Path | None, typer.Option(
        help="JSONL demonstrations {\"text\": ..., \"persona\"?: ...} or a Persona Hub "
             "file (default for the few-shot modes: the task's shipped ones, builtin:TASK).")] = None,
    world: Annotated[Path | None, typer.Option(
        help="World/lore file for npc (default: the shipped fantasy village).")] = None,
    solve: Annotated[bool, typer.Option(
        help="Second pass: solve math/reasoning problems.")] = False,
    with_assistant: Annotated[bool, typer.Option(
        help="multi_turn: ask for assistant turns too.")] = False,
    resume: Annotated[str | None, resume_option("JOB_ID", "its task, seed and generation settings")] = None,
    fresh: FreshOption = False,
    db: DbOption = Path(DEFAULT_DB),
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Also export the job as Persona Hub JSONL to this file.")] = None,
    force: Annotated[bool, typer.Option(help=FORCE_HELP)] = False,
    list_templates: Annotated[bool, typer.Option("--list", help="List tasks and prompts.")] = False,
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED, help="Seed: the persona sample and the offline engine.")] = 0,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Synthesize data from personas: one item per persona for TASK, into synth_items.

    --per-persona K asks K items of each persona. A job that holds fewer items than it asked
    says why and exits 1, unless --allow-fewer."""
    from personahub.pipelines.synthesize import SYNTHESIS, SynthConfig

    if list_templates:
        _list_templates()
        return
    if task is None and not resume:
        raise UsageError("give a TASK (see --list) or --resume JOB")
    if out_file is not None:  # refuse before synthesizing, not after
        check_output(out_file, db=db, force=force)
    # how this run asks (a resume keeps what the job makes: task, seed, generation settings, ...)
    settings: dict[str, Any] = {"db": str(db), **engine.settings(llm=True),
                                "allow_fewer": allow_fewer, **engine.batching()}
    config: SynthConfig | dict[str, object]
    if resume:
        config = {**settings, **({"task": task} if task else {})}
    else:
        assert task is not None
        config = SynthConfig(
            task=task, n=n, per_persona=per_persona, where=personas, carve=tuple(carve or ()), sample=sample,
            include_ungated=include_ungated,
            prompting=prompting, examples=str(examples) if examples else None,
            world=str(world) if world else None, solve=solve, with_assistant=with_assistant,
            seed=seed, **engine.flags.settings(), **settings)
    result = JobHooks("job", db).run(SYNTHESIS, config, resume=resume, fresh=fresh,
                                     label=f"synthesizing {task or resume}", total=n * per_persona)
    summary = result.summary
    lines = [line for line in SYNTHESIS.report(summary, db) if line != summary.shortfall]
    for line in lines[:-1]:
        out.print(line, highlight=False, soft_wrap=True)
    if out_file is not None:
        _export(db, out_file, "personahub", job=summary.job_id, overwrite=force)
    out.print(lines[-1], highlight=False, soft_wrap=True)  # how to export it
    print_preview("job", summary.job_id, shown.preview, db=db)
    if shown.json:
        emit_job_json("synthesize", db, job_id=summary.job_id, paths={"out": out_file},
                      counts={"selected": summary.selected, "written": summary.written,
                              "already_done": summary.skipped_done, "failed": summary.failed,
                              "duplicates": summary.duplicates, "solved": summary.solved},
                      task=summary.task, shortfall=summary.shortfall or None)
    if summary.shortfall:
        if not allow_fewer:
            error_line(f"{summary.shortfall} (--allow-fewer accepts fewer)")
            raise typer.Exit(1)
        say(("note:", "yellow"), f" {summary.shortfall} (allowed by --allow-fewer)")


def _export(db: Path, path: Path, fmt: str, **kwargs: Any) -> int:
    from personahub.analysis.export import export_accounted
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        held = export_accounted(con, path, fmt, **kwargs)
    finally:
        con.close()
    out.print(f"wrote {held.written} records ({fmt}) to {path}", highlight=False, soft_wrap=True)
    for line in held.lines():  # what was left out or kept, and why
        out.print(f"  {line}", highlight=False, soft_wrap=True)
    return held.written


def _export_source(db: Path, path: Path, source: str, fmt: str, *, overwrite: bool) -> None:
    from personahub.analysis.export import export_source_file
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        written = export_source_file(con, path, source, fmt=fmt, overwrite=overwrite)
    finally:
        con.close()
    out.print(f"wrote {written} records ({fmt}) to {path}", highlight=False, soft_wrap=True)


def _export_hf(db: Path, out_dir: Path, *, force: bool, source_file: str | None,
               **which: Any) -> None:
    """--format hf: the Hub's layout, data/*.parquet and a card (analysis.export_hf)."""
    from personahub.analysis.export_hf import HF_FILES, export_hf_accounted
    from personahub.core.store import connect
    from personahub.pipelines.evaluate_quality import export_selection

    evaluation, split = which.pop("evaluation"), which.pop("split")
    if source_file is not None or (which["job"] is None and evaluation is None) == \
            (which["run"] is None):
        raise UsageError("export --format hf: give exactly one of --job or --run")
    check_output(out_dir, db=db, force=force, kind="dir", names=HF_FILES)
    con = connect(db, read_only=True)
    try:
        which |= export_selection(con, job=which["job"], evaluation=evaluation, split=split,
                                  hf=True)
        held = export_hf_accounted(con, out_dir, overwrite=force, **which)
    finally:
        con.close()
    sides = ", ".join(f"{side} {n}" for side, n in held.sides)
    out.print(f"wrote {held.written} records{f' ({sides})' if sides else ''} (hf dataset: "
              f"{out_dir}/data/*.parquet and README.md card) to {out_dir}; load it with "
              f"datasets.load_dataset({str(out_dir)!r})", highlight=False, soft_wrap=True)
    for line in held.lines():  # what was left out or kept, and why: the card says it too
        out.print(f"  {line}", highlight=False, soft_wrap=True)


@one_line_errors
def export_cmd(
    out_file: Annotated[Path, typer.Option("--out", help="Output file.")],
    job: Annotated[str | None, typer.Option(help="Synthesis job id.")] = None,
    run: Annotated[str | None, typer.Option(help="Simulation run id.")] = None,
    fmt: Annotated[Literal["personahub", "chat", "parquet", "hf"], typer.Option(
        "--format", help="personahub (JSONL), chat (JSONL), parquet (content and solution as "
                         "structs), or hf (a folder in the Hugging Face Hub's layout: "
                         "data/*.parquet and a dataset card that datasets.load_dataset reads; "
                         "the [hf] extra).")] = "personahub",
    task: Annotated[str | None, typer.Option(
        help="Only items of this task (the output kind: instruction, ...).")] = None,
    source_file: Annotated[str | None, typer.Option(
        help="An imported Persona Hub synthesis file (path or file name): write its rows back "
             "as read.")] = None,
    drop_duplicates: Annotated[bool, typer.Option(
        help="Leave out items flagged as near-duplicates.")] = False,
    split: Annotated[Literal["train", "test"] | None, typer.Option(
        help="Only this side of an evaluation's split (--evaluation, default the job's latest "
             "evaluation); contaminated items are in neither unless the evaluation kept "
             "them.")] = None,
    evaluation: Annotated[str | None, typer.Option(
        metavar="ID", help="The evaluation (its evaluation-... id) whose split --split "
             "and --format hf use (default: the job's latest).")] = None,
    db: DbOption = Path(DEFAULT_DB),
    force: Annotated[bool, typer.Option(help=FORCE_HELP)] = False,
    kind: Annotated[str | None, typer.Option("--kind", hidden=True)] = None,
) -> None:
    """Export a synthesis job, a simulation run or an imported Persona Hub file (validated,
    atomic).

    --format hf writes a job's train and test splits when it has an evaluation."""
    from personahub.analysis.export import EXPORT_FORMATS

    task = renamed_flag(task, kind, old="--kind", new="--task")

    if (split or evaluation) and run is not None:
        raise UsageError("--split / --evaluation: a synthesis job's, not a run's")
    if fmt == "hf":  # a folder, not a file: analysis/export_hf.py
        _export_hf(db, out_file, job=job, run=run, task=task, drop_duplicates=drop_duplicates,
                   force=force, source_file=source_file, evaluation=evaluation, split=split)
        return
    if evaluation is not None and job is None and source_file is None:
        job = _evaluation_job(db, evaluation)
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if sum(x is not None for x in (job, run, source_file)) != 1:
        raise UsageError("export: give exactly one of --job, --run or --source-file")
    check_output(out_file, db=db, force=force)
    if source_file is not None:
        _export_source(db, out_file, source_file, fmt, overwrite=force)
        return
    selected: dict[str, object] = {}
    if split is not None or evaluation is not None:
        selected = _split_selection(db, job, evaluation, split)
    _export(db, out_file, fmt, job=job, run=run, task=task, drop_duplicates=drop_duplicates,
            overwrite=force, only=selected.get("only"), split=selected.get("split"))


def _evaluation_job(db: Path, evaluation: str) -> str:
    """Return the synthesis job that the evaluation named by `evaluation` evaluates."""
    from personahub.core.store import connect
    from personahub.pipelines.evaluate_quality import find_evaluation

    con = connect(db, read_only=True)
    try:
        found = find_evaluation(con, evaluation)
        assert found is not None  # a named evaluation is found or refused
        return found.job
    finally:
        con.close()


def _split_selection(db: Path, job: str | None, evaluation: str | None,
                     split: Literal["train", "test"] | None) -> dict[str, object]:
    """Return export's items of one side of the split (pipelines.evaluate_quality)."""
    from personahub.core.store import connect
    from personahub.pipelines.evaluate_quality import export_selection

    con = connect(db, read_only=True)
    try:
        return export_selection(con, job=job, evaluation=evaluation, split=split)
    finally:
        con.close()


EMBEDDER_HELP = ("Embedder judging persona and output pairs: 'hash' (feature hashing of words: "
                 "figures labelled lexical), 'local[:model]' (sentence-transformers, the [embed] "
                 "extra) or 'openai:<model>'. Pairs with texts in scripts the model was not "
                 "trained on are skipped and counted.")


@one_line_errors
def report(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for index.html and PNGs.")],
    run: Annotated[str | None, typer.Option(help="Run id (default: the latest run; with no run in "
                                                 "the database, the latest synthesis job).")] = None,
    job: Annotated[str | None, typer.Option(help="Synthesis job id: a report of that job instead "
                                                 "of a run.")] = None,
    calibration: Annotated[str | None, typer.Option(
        help="Calibration job id: its per-group bars of people against the simulated panel, "
             "with the baselines, instead of a run.")] = None,
    experiment: Annotated[str | None, typer.Option(
        help="Experiment id: each outcome per arm over the steps and the effect forest plot, "
             "with intervals, instead of a run.")] = None,
    evaluation: Annotated[str | None, typer.Option(
        metavar="ID", help="Evaluation id (evaluation-...): its quality at a glance "
             "and each model's score per task with Wilson intervals (index.html, index.md), "
             "instead of a run.")] = None,
    compare: Annotated[str | None, typer.Option(
        metavar="ID", help="With --experiment: another experiment in the database (e.g. the "
             "same one asking every agent): whether each effect agrees with it (within its "
             "interval, and found where it finds one), with a verdict line.")] = None,
    db: DbOption = Path(DEFAULT_DB),
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed for sampling pairs and nodes.")] = 0,
    embedder: Annotated[str, typer.Option(callback=embedder_spec, help=EMBEDDER_HELP)] = "hash",
    force: Annotated[bool, typer.Option(help="Overwrite files of an earlier report in --out.")] = False,
) -> None:
    """Write an HTML report of a run (facts, survey shares, emissions, failures, duplicates,
    graph, diversity), of a synthesis job (--job), of a calibration (--calibration), of an
    experiment (--experiment) or of an evaluation (--evaluation).

    A report covers only what it is of: a run's charts leave out the synthesis jobs in the same
    database. With neither --run nor --job: the latest run, else the latest synthesis job; a
    database with neither is an error."""
    from personahub.analysis.report import REPORT_FILES, write_report
    from personahub.core.store import connect
    from personahub.models.embedders import make_embedder

    if compare is not None and experiment is None:
        raise UsageError("--compare: give it with --experiment")
    if calibration is not None:
        _calibration_report(out_dir, calibration, db, force,
                            given=run or job or experiment or evaluation)
        return
    if experiment is not None:
        _experiment_report(out_dir, experiment, db, force, given=run or job or evaluation,
                           compare=compare)
        return
    if evaluation is not None:
        _evaluation_report(out_dir, evaluation, db, force, given=run or job)
        return

    model = make_embedder(embedder)
    check_output(out_dir, db=db, force=force, kind="dir", names=REPORT_FILES)
    con = connect(db, read_only=True)
    try:
        index = write_report(con, out_dir, run_id=run, job_id=job, seed=seed, overwrite=force,
                             embedder=model)
    finally:
        con.close()
    out.print(f"report written to {index}", highlight=False, soft_wrap=True)


def _folder_report(option: str, out_dir: Path, db: Path, force: bool, given: str | None,
                   others: str, names: tuple[str, ...],
                   write: Callable[[duckdb.DuckDBPyConnection], Path]) -> None:
    """Write a report folder (a calibration's or an experiment's) with `write` over a
    read-only connection, after refusing other targets and files of an earlier report."""
    from personahub.core.store import connect

    if given is not None:
        raise UsageError(f"{option}: give it alone (not with {others})")
    check_output(out_dir, db=db, force=force, kind="dir", names=names)
    con = connect(db, read_only=True)
    try:
        index = write(con)
    finally:
        con.close()
    out.print(f"report written to {index}", highlight=False, soft_wrap=True)


def _calibration_report(out_dir: Path, job_id: str, db: Path, force: bool,
                        given: str | None) -> None:
    from personahub.analysis.calibration_report import CALIBRATION_FILES, write_calibration_report

    def write(con: duckdb.DuckDBPyConnection) -> Path:
        return write_calibration_report(con, out_dir, job_id, overwrite=force,
                                        price=_archetype_price(con, job_id))

    _folder_report("--calibration", out_dir, db, force, given,
                   "--run, --job, --experiment or --evaluation", CALIBRATION_FILES, write)


def _archetype_price(con: duckdb.DuckDBPyConnection, job_id: str) -> object:
    """Return a calibration's archetype price table (empty without --archetypes, or without scores)."""
    from personahub.analysis import calibration_store
    from personahub.pipelines.calibrate_archetypes import price_table
    from personahub.pipelines.calibrate_data import load_survey

    if not calibration_store.calibration_exists(con, job_id):
        return None  # the report names the missing calibration
    scores = calibration_store.scores_frame(con, job_id)
    if scores.empty:
        return None
    return price_table(scores, load_survey(con, job_id).survey.questions,
                       calibration_store.answers_by_steering(con, job_id))


def _experiment_report(out_dir: Path, experiment_id: str, db: Path, force: bool,
                       given: str | None, compare: str | None = None) -> None:
    from personahub.analysis.experiment_report import EXPERIMENT_FILES, write_experiment_report

    _folder_report("--experiment", out_dir, db, force, given, "--run or --job", EXPERIMENT_FILES,
                   lambda con: write_experiment_report(con, out_dir, experiment_id,
                                                       overwrite=force, compare=compare))


def _evaluation_report(out_dir: Path, evaluation: str, db: Path, force: bool,
                       given: str | None) -> None:
    from personahub.analysis.evaluation_report import EVALUATION_FILES
    from personahub.pipelines.evaluate_quality import quality_lines, write_report

    def write(con: duckdb.DuckDBPyConnection) -> Path:
        index, table = write_report(con, out_dir, evaluation, overwrite=force)
        for line in quality_lines(table):
            out.print(line, highlight=False, soft_wrap=True)
        return index

    _folder_report("--evaluation", out_dir, db, force, given, "--run or --job", EVALUATION_FILES,
                   write)


@one_line_errors
def diversity(
    db: DbOption = Path(DEFAULT_DB),
    job: Annotated[str | None, typer.Option(help="Only this synthesis job.")] = None,
    run: Annotated[str | None, typer.Option(help="Only this simulation run's emissions.")] = None,
    embedder: Annotated[str, typer.Option(callback=embedder_spec, help=EMBEDDER_HELP)] = "hash",
    pairs: Annotated[int, typer.Option(min=1, help="Pairs sampled per kind/task.")] = 300,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed for sampling pairs.")] = 0,
) -> None:
    """Print the paper's diversity table: persona-pair vs output-pair similarity per kind/task
    (default: every synthesis job and the latest run)."""
    from rich.table import Table

    from personahub.analysis.diversity import SUMMARY_HEADER, embedder_label, summary_row
    from personahub.analysis.diversity_table import diversity_table, latest_run
    from personahub.core.store import connect
    from personahub.models.embedders import make_embedder

    model = make_embedder(embedder)
    con = connect(db, read_only=True)
    try:
        scoped = job is not None or run is not None
        results = diversity_table(con, model, job_id=job, all_jobs=not scoped, pairs=pairs,
                                  seed=seed, run_id=run if scoped else latest_run(con))
    finally:
        con.close()
    label = embedder_label(model)
    if not results:
        out.print(f"no items to analyse ({label})", highlight=False, soft_wrap=True)
        return
    # one column per kind/task: twelve figures side by side do not fit a terminal
    rows = [summary_row(result.summary) for result in results.values()]
    table = Table(SUMMARY_HEADER[0], *(str(r[0]) for r in rows),
                  title=f"diversity: cosine similarity, {label}")
    for i, name in enumerate(SUMMARY_HEADER[1:], start=1):
        table.add_row(name, *(str(r[i]) for r in rows))
    out.print(table)
    reused = sum(result.pairs.reused for result in results.values())
    if reused:
        out.print(f"{reused} persona vectors read from persona_embeddings (not embedded again)",
                  highlight=False, soft_wrap=True)


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("export",): export_cmd, ("report",): report, ("diversity",): diversity}

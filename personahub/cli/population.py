"""personahub personas sample-population: draw a seeded population matching given shares.

Without --llm, no model is called: each person's text comes from a template. The people
go into the hub (--db, one transaction) or, with --out, to a JSONL/CSV table that personas
import reads back.

With --llm, the model writes each text in one structured call, checked against the
person's attributes. This is a resumable kernel job (pipelines/population_write.py) whose
config comes from personahub.api.population_write_config, as for
personahub.write_population. Model and engine flags without --llm (or --resume) are a
usage error rather than silently ignored.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from personahub.cli.common import console, emit_job_json, one_line_errors, out, summary_counts
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import JobHooks
from personahub.cli.options import DbOption, Shown, output_options, resume_option
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.outputs import FORCE_HELP, atomic_file, check_output
from personahub.core.store import DEFAULT_DB

# the options only a model job reads (parameter names): without --llm or --resume they are refused
MODEL_ONLY = ("concurrency", "timeout", "offline_latency", "cache", "rps", "structured",
              "max_tokens", "temperature", "top_p", "executor", "ray_address", "ray_workers",
              "max_failed_share", "batch_size", "fresh", "as_json")
# what a population job makes: a resume keeps the job's
RESUME_FIXED = ("marginals", "joint", "n", "seed", "output")


def _typed(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """Return the `names` typed on the command line, as spelled there.

    Environment values do not count, so RAY_ADDRESS or PERSONAHUB_OFFLINE_LATENCY set in
    the shell cannot break the template path."""
    return [next(o for o in param.opts if o.startswith("--")) for param in ctx.command.params
            if param.name in names and getattr(ctx.get_parameter_source(param.name), "name", "")
            == "COMMANDLINE"]


def _write_table(path: Path, personas: list[Any], force: bool) -> None:
    """Write the personas as an attribute table: JSONL (.jsonl) or CSV (.csv)."""
    suffix = path.suffix.lower()
    rows = [{"persona": p.text, **p.attributes} for p in personas]
    with atomic_file(path, overwrite=force) as f:
        if suffix == ".csv":
            columns = list(dict.fromkeys(k for row in rows for k in row))
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _error_lines(population: Any) -> list[str]:
    """Per attribute: the largest gap between a drawn share and its target."""
    from personahub.personas.population import marginal_errors

    lines = []
    for key, errors in marginal_errors(population.people, population.targets).items():
        value, gap = max(errors.items(), key=lambda item: abs(item[1]))
        lines.append(f"  {key}: {len(errors)} values, largest gap {100 * abs(gap):.3f} "
                     f"percentage points ({key}={value})")
    return lines


@one_line_errors
@engine_options("model", "executor")
@output_options()
def personas_sample_population(
    ctx: typer.Context,
    marginals: Annotated[Path | None, typer.Option(
        "--marginals", help="Shares per attribute: CSV attribute,value,share (or count/weight) "
                            'or JSON {"sex": {"female": 0.52, ...}} (docs/personas.md).')] = None,
    joint: Annotated[Path | None, typer.Option(
        "--joint", help="A joint table: CSV with one column per attribute and share (or "
                        "count/weight); with --marginals it is raked (IPF) to them.")] = None,
    n: Annotated[int, typer.Option("--n", "-n", min=1, max=10_000_000,
                                   help="How many people to draw.")] = 1000,
    seed: Annotated[int, typer.Option(help="Sampling seed (same inputs and seed: same people).")] = 0,
    resume: Annotated[str | None, resume_option(
        "JOB_ID", "its files, -n, seed and settings, and writes only the people not yet "
                  "written")] = None,
    fresh: Annotated[bool, typer.Option(
        help="With --llm: start a new job even if an unfinished one has the same settings (it "
             "is marked superseded).")] = False,
    db: DbOption = Path(DEFAULT_DB),
    output: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the people to this .jsonl or .csv attribute table instead "
                            "of the hub.")] = None,
    force: Annotated[bool, typer.Option(help=FORCE_HELP)] = False,
    batch_size: Annotated[int, typer.Option(
        min=1, help="With --llm: people written per transaction.")] = 64,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Draw a seeded population whose attribute shares match --marginals (and/or --joint).

    Each person's text comes from a template (no model call), marked as such in its attributes
    (text_origin=template); with --llm a model writes it (one call per person, checked against
    the attributes; text_origin=model) as a job: --resume JOB_ID (or personahub resume JOB_ID)
    goes on with a stopped one. The model and engine options need --llm (or --resume). Carve
    them with --carve population=<id> or --source population.
    """
    from personahub.personas.population import draw_population, template_personas
    from personahub.personas.population_files import read_joint, read_marginals

    if resume is not None:
        fixed = _typed(ctx, RESUME_FIXED)
        if fixed:
            raise UsageError(f"--resume {resume} takes the files, -n and seed from the job; "
                             f"leave out {', '.join(fixed)}")
    elif engine.llm is None:
        needs_model = _typed(ctx, MODEL_ONLY)
        if needs_model:
            raise UsageError(f"{', '.join(needs_model)} need{'s' * (len(needs_model) == 1)} "
                             "--llm (or --resume): without it the texts come from a template "
                             "and no model is called")
    if resume is None and marginals is None and joint is None:
        raise typer.BadParameter("give --marginals FILE, --joint FILE or both",
                                 param_hint="--marginals")
    if output is not None:
        if output.suffix.lower() not in (".jsonl", ".csv"):
            raise PersonahubError(f"--out {output}: give a .jsonl or .csv file")
        check_output(output, db=db, force=force)
    if engine.llm is not None or resume is not None:
        if output is not None:
            raise typer.BadParameter("--llm writes the people to the hub (--db), not --out",
                                     param_hint="--out")
        _write_with_model(marginals, joint, n, seed, db, resume, fresh, engine, batch_size,
                          shown.json)
        return
    targets = read_marginals(marginals) if marginals is not None else None
    table = read_joint(joint) if joint is not None else None
    population = draw_population(n, seed=seed, marginals=targets, joint=table)
    personas = template_personas(population)
    if output is not None:
        _write_table(output, personas, force)
        where = str(output)
        added_text = f"{len(personas)} written"
    else:
        from personahub.core.store import connect, transaction
        from personahub.personas.store import upsert_personas

        con = connect(db)
        try:
            with transaction(con):
                added = upsert_personas(con, personas)
        finally:
            con.close()
        where = str(db)
        added_text = f"{added} new"
    out.print(f"population {population.population_id}: {n} people (seed {seed}) over "
              f"{', '.join(population.keys)}; {added_text} in {where}; text from a template "
              "(text_origin=template), no model call", highlight=False, soft_wrap=True)
    for line in _error_lines(population):
        console.print(line, highlight=False, soft_wrap=True)


def _write_with_model(marginals: Path | None, joint: Path | None, n: int, seed: int, db: Path,
                      resume: str | None, fresh: bool, engine: Engine, batch_size: int,
                      as_json: bool) -> None:
    """Write the people drawn as without a model, their texts written by engine.llm (a kernel
    job); the config is the one personahub.write_population builds from the same
    settings."""
    from personahub import runtime
    from personahub.api import population_write_config, population_write_resume
    from personahub.models.client import resolve_spec
    from personahub.pipelines.population_write import POPULATION_WRITE, WriteConfig

    llm = engine.llm
    settings = {**engine.settings(), "batch_size": batch_size}
    config: WriteConfig | dict[str, object]
    if resume is not None:  # without --llm, the model the job recorded
        config = population_write_resume(
            resolve_spec(llm) if llm is not None else runtime.recorded_llm(db, resume), settings)
    else:
        config = population_write_config(marginals, joint, n, seed, resolve_spec(llm),
                                          {**engine.flags.settings(), **settings})
    result = JobHooks("population job", db).run(POPULATION_WRITE, config, resume=resume,
                                                fresh=fresh, label="writing personas",
                                                total=None if resume else n)
    for line in POPULATION_WRITE.report(result.summary, db):
        out.print(line, highlight=False, soft_wrap=True)
    if as_json:
        emit_job_json("personas sample-population", db, job_id=result.job_id,
                      counts=summary_counts(result.summary),
                      population_id=result.summary.population_id)

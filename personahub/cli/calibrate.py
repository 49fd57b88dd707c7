"""personahub calibrate (ask personas matched to a survey's groups its questions and score the
answers against people's, beside three baselines) and personahub calibrations (list them,
or compare two or more side by side, --compare ID --compare ID, with their spread over seeds
and what flips). docs/calibration.md describes both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from personahub.cli.common import (
    emit_job_json,
    missing_argument,
    one_line_errors,
    out,
    say,
    summary_counts,
    verbosity,
)
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import JobHooks
from personahub.cli.options import CarveOption, DbOption, FreshOption, Shown, output_options, resume_option
from personahub.core.errors import UsageError
from personahub.core.plan_limits import MAX_GROUP_N
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED
from personahub.pipelines.elicit import described as elicit_methods
from personahub.pipelines.elicit.sample import SAMPLE


@one_line_errors
@engine_options("model", "batch", "executor", batch_size=("Answers", 256))
@output_options()
def calibrate(
    ctx: typer.Context,
    survey: Annotated[str | None, typer.Argument(
        help="Human answers: an OpinionQA wave folder (info.csv, <ATTRIBUTE>_data.json), a "
             "long CSV (question_id, question, options, attribute, group, option, count), or "
             "one row per respondent (CSV or Parquet; demographic, question and optional "
             "weight columns).")] = None,
    population: Annotated[str | None, typer.Option(
        "--population", help="Who answers: a population id (personas sample-population) or "
                             "'all' (every persona with demographics in the hub).")] = None,
    carve: CarveOption = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_GROUP_N, help="Personas per group (a seeded uniform "
                                                      "sample of the group's members).")] = 20,
    no_persona_n: Annotated[int | None, typer.Option(
        "--no-persona-n", min=0, max=MAX_GROUP_N,
        help="Asks per question without a persona, for the no_persona baseline (default: --n; 0: "
             "no such baseline).")] = None,
    steering: Annotated[list[str] | None, typer.Option(
        "--steering", help="What the prompt shows of a person: persona (its text; default), "
                           "attributes (its demographics only) or attributes+persona; repeat "
                           "to compare them in one calibration.")] = None,
    elicit: Annotated[list[str] | None, typer.Option(
        "--elicit", help="How answers are elicited, each scored as a row of its own: "
                         f"{elicit_methods()}; repeat to compare.")] = None,
    dispersion: Annotated[str, typer.Option(
        "--dispersion", help="Dispersion control: temper also scores each sample steering's "
                             "panels tempered towards people's spread (a temperature fitted "
                             "on the other half of the questions), as model[STEERING:tempered]; "
                             "none (default) does not.")] = "none",
    archetypes: Annotated[list[int] | None, typer.Option(
        "--archetypes", min=1, help="Also group the panels' personas into K archetypes, ask "
                                    "each archetype once per question for its answer shares "
                                    "and draw each member's answer from them; scored as row "
                                    "archetypes:K beside the per-agent one, with its price per "
                                    "group (repeat for several K).")] = None,
    fit: Annotated[bool, typer.Option(
        "--fit", help="Choose how this model should be asked (each --elicit method that answers "
                      "for one persona, each --steering, its temperature, few-shot examples) on "
                      "training folds of the questions, and score the choice on a held-out fold "
                      "the fit never sees; the choice is stored as a survey profile that run "
                      "--survey-profile answers with.")] = False,
    folds: Annotated[int | None, typer.Option(
        "--folds", min=3, max=50, metavar="K",
        help="With --fit: deal the questions into K folds, seeded; one is held out (default "
             "3).")] = None,
    question: Annotated[list[str] | None, typer.Option(
        "--question", help="Only this question id (repeat for several).")] = None,
    attribute: Annotated[list[str] | None, typer.Option(
        "--attribute", help="Only the groups of this survey attribute (SEX, POLPARTY, ...; "
                            "repeat for several).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Only the first K questions.")] = None,
    refusal_option: Annotated[bool, typer.Option(
        "--refusal-option/--no-refusal-option",
        help="Leave the survey's refusal options (Refused, ...) out of the answers offered (by "
             "default they are offered, as OpinionQA did). Scores leave them out either way.")
    ] = True,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed: the panels and the "
                                                                "offline engine.")] = 0,
    humans: Annotated[Path | None, typer.Option(
        "--humans", help="A small human sample on the same questions (one row per respondent, "
                         "CSV or Parquet): print group shares by prediction-powered inference "
                         "(the panel corrected by these humans) beside the humans-only "
                         "interval.")] = None,
    resume: Annotated[str | None, resume_option("JOB_ID", "its survey, panels and settings")] = None,
    fresh: FreshOption = False,
    db: DbOption = Path(DEFAULT_DB),
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Calibrate personas against a human survey: ask N matched personas per group every
    question (one structured call each, the options as an enum), score their answers group by
    group (representativeness, dispersion, modal agreement) beside the uniform, human-overall
    and no-persona baselines, and print per-attribute representativeness."""
    from personahub.pipelines.calibrate import CALIBRATION, CalibrateConfig
    from personahub.pipelines.calibrate_console import console_lines
    from personahub.pipelines.calibrate_fit import FOLDS

    if resume is None and survey is None:
        missing_argument(ctx, "survey")
    if resume is None and population is None:
        raise UsageError("--population: give a population id (personas sample-population) or "
                         "'all'")
    if folds is not None and not fit:
        raise UsageError("--folds deals the questions for --fit; give --fit too")
    if fit and humans is not None:
        raise UsageError("--humans corrects a panel's shares; a --fit calibration scores a "
                         "survey profile: give one of them")
    if resume is not None and (fit or folds is not None):
        raise UsageError("--resume JOB_ID takes --fit and --folds from the job; leave them out")
    settings = {**engine.settings(llm=True), **engine.batching()}
    config: CalibrateConfig | dict[str, object]
    if resume:
        config = settings
    else:
        assert survey is not None and population is not None
        config = CalibrateConfig(
            survey=survey, population=population, carve=tuple(carve or ()), n=n,
            no_persona_n=no_persona_n, steering=tuple(steering or ("persona",)),
            elicit=tuple(elicit or (SAMPLE,)), dispersion=dispersion,
            archetypes=tuple(archetypes or ()), fit=fit, folds=folds or FOLDS,
            questions=tuple(question or ()), attributes=tuple(attribute or ()), limit=limit,
            offer_refusal=refusal_option, seed=seed,
            **engine.flags.settings(), **settings)
    sample = None
    if humans is not None:  # a bad file fails before any model is asked
        from personahub.analysis.survey_respondents import read_respondent_rows

        sample = read_respondent_rows(humans, setting="--humans")
    result = JobHooks("calibration", db).run(
        CALIBRATION, config, resume=resume, fresh=fresh, label=f"calibrating {survey or resume}",
        finishing="every answer in; scoring them (scores, intervals, verdict)")
    for line in console_lines(result.summary, db, verbose=verbosity() > 0):
        out.print(line, highlight=False, soft_wrap=True)
    if sample is not None:
        from personahub.analysis.calibration_ppi import ppi_lines, ppi_table
        from personahub.core.store import connect

        con = connect(db, read_only=True)
        try:
            table = ppi_table(con, result.job_id, sample)
        finally:
            con.close()
        for line in ppi_lines(table):
            out.print(line, highlight=False, soft_wrap=True)
    if shown.json:
        emit_job_json("calibrate", db, job_id=result.job_id, counts=summary_counts(result.summary))


def _list(db: Path, as_json: bool) -> None:
    from personahub.analysis.calibration_store import list_calibrations
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        listed = list_calibrations(con)
    finally:
        con.close()
    if as_json:
        out.print(json.dumps(listed), highlight=False, soft_wrap=True)
        return
    if not listed:
        say(f"no calibrations in {db}", to=out)
        return
    from rich.table import Table

    table = Table(title=f"calibrations in {db} (newest first)")
    table.add_column("job", no_wrap=True)
    for name in ("status", "seed", "population", "n", "model rep.", "survey profile"):
        table.add_column(name)
    for job in listed:
        value = job["representativeness"]
        table.add_row(job["job_id"], job["status"], str(job["seed"]), job["population"],
                      str(job["n"]), "-" if value is None else f"{value:.3f}"
                      + (" held out" if job["profile"] else ""), profile_cell(job["profile"]))
    out.print(table)


def profile_cell(profile: dict[str, Any] | None) -> str:
    """Return a calibration's survey profile in a few words ("-" without one)."""
    if not profile:
        return "-"
    shown = len(profile["examples"])
    return (f"{profile['method']}, {profile['steering']}, T={profile['temperature']:.3g}"
            + (f", {shown} example{'s' * (shown != 1)}" if shown else "")
            + f" ({profile['model']})")


def _compare(db: Path, jobs: list[str], as_json: bool) -> None:
    import pandas as pd

    from personahub.core.store import connect
    from personahub.pipelines.calibrate_compare import compare

    con = connect(db, read_only=True)
    try:
        comparison = compare(con, jobs)
    finally:
        con.close()
    if as_json:
        out.print(json.dumps({"jobs": comparison.jobs.to_dict("records"),
                              "spread": json.loads(comparison.spread.to_json(orient="records")),
                              "flips": comparison.flips.to_dict("records"),
                              "notes": list(comparison.notes)}), highlight=False, soft_wrap=True)
        return
    for row in comparison.jobs.itertuples(index=False):
        out.print(f"{row.job_id}: variant {row.variant}, seed {row.seed} ({row.status})",
                  highlight=False, soft_wrap=True)
    rep = comparison.spread[comparison.spread["score"] == "representativeness"]
    for variant, rows in rep.groupby("variant", sort=False):
        seeds = int(rows["seeds"].max())
        out.print(f"\nrepresentativeness, variant {variant} ({seeds} seed{'s' * (seeds != 1)}): "
                  "mean ± sd over seeds", highlight=False, soft_wrap=True)
        cells = rows.assign(cell=[f"{m:.3f}" + ("" if pd.isna(s) else f" ± {s:.3f}")
                                  for m, s in zip(rows["mean"], rows["sd"], strict=True)])
        table = cells.pivot_table(index="level", columns="who", values="cell", aggfunc="first",
                                  sort=False)
        table = table[sorted(table.columns, key=lambda c: not str(c).startswith("model"))]
        width = max(9, *(len(str(i)) for i in table.index))
        header = f"{'attribute':<{width}}  " + "  ".join(f"{str(c):>15}" for c in table.columns)
        out.print(header, highlight=False, soft_wrap=True)
        for level, values in table.iterrows():
            out.print(f"{str(level):<{width}}  " + "  ".join(
                f"{'-' if pd.isna(v) else v:>15}" for v in values), highlight=False, soft_wrap=True)
    out.print("", highlight=False)
    for note in comparison.notes:
        say(("note:", "yellow"), f" {note}", to=out)
    if comparison.flips.empty:
        out.print("no result flips between seeds or variants", highlight=False, soft_wrap=True)
        return
    out.print(f"{len(comparison.flips)} results flip (report them with their spread, not alone):",
              highlight=False, soft_wrap=True)
    for flip in comparison.flips.itertuples(index=False):
        where = f" in variant {flip.variant}" if flip.variant else ""
        out.print(f"  FLIPS between {flip.across}{where}: {flip.result} on {flip.level} "
                  f"({flip.detail})", highlight=False, soft_wrap=True)


@one_line_errors
def calibrations(
    jobs: Annotated[list[str] | None, typer.Option(
        "--compare", metavar="JOB_ID", help="A calibration to compare; repeat for two or more "
                                            "(without it: list the calibrations).")] = None,
    db: DbOption = Path(DEFAULT_DB),
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
) -> None:
    """List calibrations, or compare two or more side by side: each score's mean and spread
    over seeds per variant (model, population, steering, ...), and every result that flips
    between seeds or variants."""
    if not jobs:
        _list(db, as_json)
        return
    if len(set(jobs)) < 2:
        raise UsageError("--compare: give two or more calibration job ids to compare")
    _compare(db, list(jobs), as_json)


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("calibrations",): calibrations}

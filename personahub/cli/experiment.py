"""``personahub experiment``: run a scenario file's ``EXPERIMENT`` and print its effect table.

Each arm x replicate is a run in ``--db``; running the command again goes on with the runs not
finished (``personahub/experiments.py``). The table has, per outcome and treatment, the effect
against the control with its bootstrap interval, the test, Holm's corrected p and the effect
size; a plain verdict line per outcome follows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from personahub.cli.common import DbOption, Engine, engine_options, one_line_errors, out, say
from personahub.core.store import DEFAULT_DB

if TYPE_CHECKING:
    import pandas as pd


@one_line_errors
@engine_options("model", "executor")
def experiment(
    scenario: Annotated[Path, typer.Argument(
        help="A scenario file defining SCENARIO and EXPERIMENT.")],
    db: DbOption = Path(DEFAULT_DB),
    replicates: Annotated[int | None, typer.Option(
        "--replicates", min=1, help="Runs per arm (default: the experiment's).")] = None,
    experiment_id: Annotated[str | None, typer.Option(
        "--id", help="The experiment's id (default: the experiment's, else the scenario's name); "
                     "the same id goes on with its unfinished runs.")] = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, help="Steps per run (default: the scenario's).")] = None,
    archetypes: Annotated[int | None, typer.Option(
        "--archetypes", min=1, metavar="K",
        help="Every arm run asks its surveys and unaddressed actions once per archetype of K "
             "(as run --archetypes; default: the scenario's).")] = None,
    parallel: Annotated[int, typer.Option(
        "--parallel", min=1, metavar="N",
        help="Arm runs under way at once (threads of this process, one database); the tables "
             "are those of the runs one after another. With --executor ray give --ray-workers "
             "so N runs' workers fit the cluster.")] = 1,
    compare: Annotated[str | None, typer.Option(
        "--compare", metavar="ID",
        help="An earlier experiment in the same database (e.g. the same one without "
             "--archetypes): say whether each effect here lies within its interval.")] = None,
    *,
    engine: Engine,
) -> None:
    """Run an experiment (arms x replicates, each a run) and print its effects with intervals.

    The engine options reach every arm run as they reach `personahub run`'s (with --executor
    ray each run's model calls go to Ray workers); --parallel N keeps N runs under way at once."""
    from personahub.experiments import experiment as run_it
    from personahub.models.client import resolve_spec

    def told(arm: str, replicate: int, run_id: str) -> None:
        say(f"  arm {arm}, replicate {replicate}: run {run_id}")

    base = _recorded_effects(db, compare) if compare is not None else None  # checked first
    result = run_it(scenario, db=db, llm=resolve_spec(engine.llm), replicates=replicates,
                    experiment_id=experiment_id, on_run=told, steps=steps, parallel=parallel,
                    **({"archetypes": archetypes} if archetypes is not None else {}),
                    **engine.settings(), **engine.flags.settings())
    runs = result.runs
    say(f"experiment {result.experiment_id}: {runs.arm.nunique()} arms x "
        f"{runs.replicate.nunique()} replicates, {len(result.ran)} runs run now, "
        f"{runs.run_id.nunique() - len(result.ran)} finished before, in {db}")
    table = Table("outcome", "treatment", "control", "effect", "95% CI", "test", "p", "Holm p",
                  "effect size (h/d)", "n (t/c)")
    for row in result.effects.to_dict("records"):
        unit = {"percentage points": "pp", "scale points": "pts"}.get(row["unit"], "units")
        table.add_row(row["outcome"], row["treatment"], row["control"],
                      f"{row['effect']:+.1f} {unit}",
                      f"{row['ci_low']:+.1f} to {row['ci_high']:+.1f}", row["test"],
                      f"{row['p_value']:.3g}", f"{row['p_holm']:.3g}",
                      f"{row['effect_size']:+.2f} {row['effect_size_kind'][-1]}",
                      f"{row['n_treatment']}/{row['n_control']}")
    if out.is_terminal:
        out.print(table)
    else:  # piped: as wide as its rows, never cut
        wide = Measurement.get(out, out.options.update_width(1000), table).maximum
        Console(file=out.file, width=wide, markup=False, emoji=False, highlight=False,
                color_system=None).print(table)
    for unit in result.effects["resampled"].unique():
        say(f"intervals: {unit} resampled", to=out)
    for line in result.verdicts():
        say(line, to=out)
    if compare is not None and base is not None:
        for line in _agreement_lines(base, compare, result.experiment_id, result.effects):
            say(line, to=out)


def _recorded_effects(db: Path, experiment_id: str) -> pd.DataFrame:
    """The effect table of an experiment recorded in ``db`` (for ``--compare``)."""
    from personahub.analysis.experiment_report import experiment_tables
    from personahub.core.errors import PersonahubError
    from personahub.core.store import connect

    if not Path(db).exists():
        raise PersonahubError(f"--compare {experiment_id}: {db} does not exist")
    con = connect(db, read_only=True)
    try:
        return experiment_tables(con, experiment_id)[3]
    except PersonahubError as exc:
        raise PersonahubError(str(exc).replace("--experiment", "--compare", 1)) from None
    finally:
        con.close()


def _agreement_lines(base: pd.DataFrame, base_id: str, own_id: str,
                     effects: pd.DataFrame) -> list[str]:
    """Whether this experiment's effects lie within experiment ``base_id``'s intervals."""
    from personahub.analysis.experiment_effects import agreement

    table = agreement(base, effects, base_label=f"experiment {base_id}",
                      compared_label=f"experiment {own_id}")
    if table.empty:
        return [f"--compare {base_id}: no outcome and treatment in common with {own_id}"]
    held = int(table["agrees"].sum())
    return [*table["line"], f"{held} of {len(table)} effects within experiment {base_id}'s "
                            "intervals"]

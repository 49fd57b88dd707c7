"""personahub experiment: run a scenario file's EXPERIMENT and print its effect table.

Each arm x replicate is a run in --db; running the command again goes on with the runs not
finished (personahub/experiments.py). The table has, per outcome and treatment, the effect
against the control with the interval of its test, the test's p and Holm's corrected p, the
effect size and the units the test counted (personas paired across arms, replicates as
worlds); a plain verdict line per outcome follows.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from personahub.cli.common import one_line_errors, out, print_whole, say
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import banner, job_progress
from personahub.cli.options import ArchetypeElicitOption, DbOption, SurveyProfileOption
from personahub.core.plan_limits import MAX_REPLICATES, MAX_STEPS
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
        "--replicates", min=1, max=MAX_REPLICATES,
        help="Runs per arm (default: the experiment's). A test needs 3, and 5 are "
             "recommended: the same personas answer in every replicate, so replicates add "
             "worlds, not people; the tests count each persona once and each replicate as a "
             "cluster.")] = None,
    experiment_id: Annotated[str | None, typer.Option(
        "--id", help="The experiment's id (default: the experiment's, else the scenario's name); "
                     "the same id goes on with its unfinished runs.")] = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, max=MAX_STEPS, help="Steps per run (default: the scenario's).")] = None,
    archetypes: Annotated[int | None, typer.Option(
        "--archetypes", min=1, metavar="K",
        help="Every arm run asks its surveys and unaddressed actions once per archetype of K "
             "(as run --archetypes; default: the scenario's).")] = None,
    archetype_elicit: ArchetypeElicitOption = None,
    survey_profile: SurveyProfileOption = None,
    parallel: Annotated[int, typer.Option(
        "--parallel", min=1, metavar="N",
        help="Arm runs under way at once (threads of this process, one database); the tables "
             "are those of the runs one after another. With --executor ray give --ray-workers "
             "so N runs' workers fit the cluster.")] = 1,
    compare: Annotated[str | None, typer.Option(
        "--compare", metavar="ID",
        help="An earlier experiment in the same database (e.g. the same one without "
             "--archetypes): say whether each effect here agrees with it: within its "
             "interval, and found where it finds one.")] = None,
    view: Annotated[bool, typer.Option(
        "--view", help="Serve the arms side by side on 127.0.0.1, updated as each run finishes, "
                       "and after the experiment until Ctrl-C.")] = False,
    view_port: Annotated[int, typer.Option(
        "--view-port", min=0, max=65535, help="Port of --view (0 picks a free one).")] = 8765,
    *,
    engine: Engine,
) -> None:
    """Run an experiment (arms x replicates, each a run) and print its effects with intervals.

    The engine options reach every arm run as they reach `personahub run`'s (with --executor
    ray each run's model calls go to Ray workers); --parallel N keeps N runs under way at once."""
    def told(arm: str, replicate: int, run_id: str) -> None:
        shown.finished(arm, replicate)
        say(f"  arm {arm}, replicate {replicate}: run {run_id}")
        if watcher is not None:
            watcher.landed()

    shown = _Shown()
    watcher = _watcher(scenario, db, experiment_id, replicates, view_port) if view else None
    try:
        with shown.display:
            result = _run_it(scenario, db, replicates, experiment_id, told, steps, archetypes,
                             compare, parallel, engine, archetype_elicit, shown, survey_profile)
    except BaseException:
        if watcher is not None:
            watcher.stop()
        raise
    _print(result, db, compare, offline=shown.offline if shown.offline is not None
           else _offline_spec(engine.llm))
    if watcher is not None:
        watcher.linger()


def _watcher(scenario: Path, db: Path, experiment_id: str | None, replicates: int | None,
             port: int) -> Any:
    """Build the --view server (ExperimentView), its port taken before any run starts."""
    from personahub.analysis.live_view import ExperimentView
    from personahub.sim.experiment import load_experiment

    _, spec = load_experiment(scenario)
    return ExperimentView(db, port, say, experiment_id=experiment_id or spec.id,
                          arms=[a.name for a in spec.arms],
                          replicates=replicates or spec.replicates)


def _offline_spec(llm: str | None) -> bool:
    """Whether a --llm spec names only the offline engine (what a run would have said, had one
    run now: every run of the experiment had finished before)."""
    from personahub.models.client import resolve_spec

    return all(part.strip().split("?", 1)[0] == "offline" for part in resolve_spec(llm).split(","))


class _AllRuns:
    """The call counts of every arm run's client, summed (each run builds its own client)."""

    def __init__(self) -> None:
        self.followed: list[object] = []
        self.since: float | None = None

    def follow(self, stats: object) -> None:
        """Add a run's client's counts."""
        if self.since is None:
            self.since = time.monotonic()
        self.followed.append(stats)

    def _sum(self, count: str) -> int:
        return sum(int(getattr(stats, count)) for stats in self.followed)

    attempts = property(lambda self: self._sum("attempts"))
    ok = property(lambda self: self._sum("ok"))
    failed = property(lambda self: self._sum("failed"))
    tokens_in = property(lambda self: self._sum("tokens_in"))
    tokens_out = property(lambda self: self._sum("tokens_out"))

    def rate(self) -> float:
        """Return the calls per second since the first run's client was ready."""
        if self.since is None:
            return 0.0
        return self.attempts / max(time.monotonic() - self.since, 1e-9)


class _Shown:
    """What the command shows while the arm runs go: the engine banner once, as the first run's
    client is ready (the input is checked by then), then a progress bar per arm run with the
    calls of every run so far."""

    def __init__(self) -> None:
        self.counts = _AllRuns()
        self.bar = job_progress(counts=self.counts)
        self.display = contextlib.ExitStack()  # holds the bar once the first run is ready
        self.offline: bool | None = None  # known once a run's client is ready
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def on_ready(self, client: Any) -> None:
        """Count the run's client's calls; the first one's banner says which engine answers."""
        if client is None:
            return
        with self._lock:
            self.counts.follow(client.stats)
            if self.offline is None:
                self.offline = bool(client.is_offline)
                banner(client)
                self.display.enter_context(self.bar)

    def progress(self, phase: str, done: int, total: int | None) -> None:
        """Show a bar per arm run and phase: ``arm rumour #0: steps 3/5``."""
        run, _, what = phase.rpartition(": ")
        if what.startswith("batch "):
            return
        label = f"{run}: " + ("expanding graph" if what == "expand" else "steps")
        with self._lock:
            if label not in self._tasks:
                self._tasks[label] = self.bar.add_task(label, total=total)
            self.bar.update(self._tasks[label], completed=done, total=total)

    def finished(self, arm: str, replicate: int) -> None:
        """Take a finished run's bars away (its run id is said instead)."""
        run = f"replicate {replicate}" if arm == "all" else f"arm {arm} #{replicate}"
        with self._lock:
            for label in [label for label in self._tasks if label.startswith(f"{run}: ")]:
                self.bar.remove_task(self._tasks.pop(label))


def _run_it(scenario: Path, db: Path, replicates: int | None, experiment_id: str | None,
            told: Any, steps: int | None, archetypes: int | None, compare: str | None,
            parallel: int, engine: Engine, archetype_elicit: str | None = None,
            shown: _Shown | None = None, survey_profile: str | None = None) -> object:
    """Run the experiment's unfinished runs, then return its tables (personahub.experiment)."""
    from personahub.experiments import experiment_file as run_it
    from personahub.models.client import resolve_spec

    given: dict[str, Any] = {"archetypes": archetypes, "archetype_elicit": archetype_elicit,
                             "survey_profile": survey_profile}
    return run_it(scenario, db=db, llm=resolve_spec(engine.llm), replicates=replicates,
                  experiment_id=experiment_id, on_run=told, steps=steps, compare=compare,
                  parallel=parallel, **{k: v for k, v in given.items() if v is not None},
                  progress=None if shown is None else shown.progress,
                  on_ready=None if shown is None else shown.on_ready,
                  **engine.settings(), **engine.flags.settings())


def _print(result: Any, db: Path, compare: str | None, offline: bool | None = None) -> None:
    """Print the effect table, its verdicts and (--compare) the agreement lines; offline, a caveat
    that the effects are the offline engine's, not people's."""
    runs = result.runs
    say(f"experiment {result.experiment_id}: {runs.arm.nunique()} arms x "
        f"{runs.replicate.nunique()} replicates, {len(result.ran)} runs run now, "
        f"{runs.run_id.nunique() - len(result.ran)} finished before, in {db}")
    table = Table("outcome", "treatment", "effect", "95% CI", "t (df)", "p", "Holm p",
                  "size (h/d)", "units")
    for row in result.effects.to_dict("records"):
        unit = {"percentage points": "pp", "scale points": "pts"}.get(row["unit"], "units")
        tested = not math.isnan(row["p_value"])
        table.add_row(row["outcome"], row["treatment"], f"{row['effect']:+.1f} {unit}",
                      f"{row['ci_low']:+.1f} to {row['ci_high']:+.1f}" if tested else "-",
                      f"{row['statistic']:+.2f} ({row['df']:.0f})" if tested else "no test",
                      f"{row['p_value']:.3g}" if tested else "-",
                      f"{row['p_holm']:.3g}" if tested else "-",
                      f"{row['effect_size']:+.2f} {row['effect_size_kind'][-1]}",
                      _units(row))
    print_whole(table)  # piped: as wide as its rows, never cut
    for how in result.effects["inference"].unique():
        say(f"tests and intervals: {how}", to=out)
    if offline:
        say(("note:", "yellow"), " the offline engine answered every run (not a language model): "
            "these effects check the experiment's wiring and say nothing about people", to=out)
    for line in result.verdicts():
        say(line, to=out)
    if compare is not None:
        for line in _agreement_lines(result.agreement, compare, result.experiment_id):
            say(line, to=out)


def _units(row: dict[str, object]) -> str:
    """Say the units a test counted, e.g. "30 p x 5 r" (personas by replicates)."""
    if not row["personas"]:
        return f"{row['replicates']} r"
    return f"{row['personas']} p x {row['replicates']} r"


def _agreement_lines(table: pd.DataFrame, base_id: str, own_id: str) -> list[str]:
    """Lines saying whether this experiment's effects agree with experiment `base_id`'s: within
    its intervals, and found where it finds one; `table` is the result's agreement table."""
    if table.empty:
        return [f"--compare {base_id}: no outcome and treatment in common with {own_id}"]
    held = int(table["agrees"].sum())
    last = (f"{held} of {len(table)} effects agree with experiment {base_id} (within its "
            "intervals, and found where it finds one)")
    missed = int(table["missed"].sum())
    if held < len(table):
        last += f"; experiment {own_id} does not agree on {len(table) - held}" + (
            f" (it misses {missed} effect{'s' if missed > 1 else ''} experiment {base_id} "
            "finds)" if missed else "")
    return [*table["line"], last]


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("experiment",): experiment}

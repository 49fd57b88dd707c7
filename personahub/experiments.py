"""Run a scenario file's EXPERIMENT and read its effects.

Each arm x replicate is an ordinary run of the base scenario with the arm's differences, seeded
scenario.seed + replicate in every arm, noted as it starts (``experiment_attempts``) and linked to
the experiment once finished; running again skips linked runs and goes on with a noted run that
did not finish (killed, interrupted or failed), handing it its arm's scenario, so no run is left
behind. Within a world, a replicate is one run holding every arm, its randomisation recorded
after it finished.

``parallel=N`` keeps N runs under way on threads of this process, each on its own connection to
the one file: a run over a server mostly waits on model calls, and one file keeps resume as it
is. In parallel, Ctrl-C (or SIGTERM) only sets a flag: no further run starts, those under way
finish, and a second one exits at once (as ``kill -9`` would). An interrupt raised inside
``concurrent.futures``' locks can leave a future's lock held and the pool waiting forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import duckdb
import pandas as pd

from personahub.analysis.experiment_effects import (
    arm_table,
    effects,
    outcome_values,
)
from personahub.api import run_simulation
from personahub.core.errors import AwaitingResults, PersonahubError, ResumableStop
from personahub.core.interrupts import Stopped, Terminated, interrupts_from_queries, signal_name
from personahub.core.jobs_store import UNFINISHED, find_job, supersede_jobs
from personahub.core.kernel import engine_fields
from personahub.core.store import connect
from personahub.core.validate import check_id
from personahub.job_calls import async_twin, job_function
from personahub.pipelines.run import RunConfig, RunSummary
from personahub.progress_bars import ProgressHook, ProgressSetting, progress_hook, quiet_tqdm_auto
from personahub.python_names import DEFAULT_DB, refuse_unknown
from personahub.sim.experiment import (
    STRATIFY_COMMUNITY,
    Arm,
    Experiment,
    arm_scenario,
    assign_arms,
    load_experiment,
    strata,
    within_scenario,
)
from personahub.sim.experiment_store import (
    arm_agents,
    attempts,
    finished_arm_runs,
    record_arm_agents,
    record_arm_run,
    record_attempt,
)
from personahub.sim.runner import restore_society, scenario_key
from personahub.sim.scenario import Scenario
from personahub.sim.store import shared_pool

if TYPE_CHECKING:
    from personahub.core.contracts import StructuredCaller

#: called with each arm run's model client once it is ready (None: a run that calls no model)
OnReady = Callable[["StructuredCaller | None"], None]


@dataclass
class ExperimentResult:
    """An experiment's tables as DataFrames.

    Attributes:
        experiment_id: its id in the experiments table.
        runs: arm, replicate, seed, run_id, is_control of each run.
        agents: within a world, each agent's arm per replicate; empty between worlds.
        arms: per outcome and arm, agents answering, replicates and the share or mean.
        effects: per outcome and treatment, the effect table.
        values: one value per outcome, arm and agent answer (what effects is computed from).
        ran: the run ids this call ran.
        agreement: with compare, whether each effect agrees with the compared experiment's
            (within its interval, and found where it finds one).
        agreement_verdict: with compare, one line over agreement; else "".
    """

    experiment_id: str
    runs: pd.DataFrame
    arms: pd.DataFrame
    effects: pd.DataFrame
    values: pd.DataFrame
    ran: list[str] = field(default_factory=list)
    agents: pd.DataFrame = field(default_factory=pd.DataFrame)
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    agreement_verdict: str = ""

    def verdicts(self) -> list[str]:
        """One plain line per outcome and treatment."""
        return [str(v) for v in self.effects["verdict"]]


def arm_settings(scenario: Scenario, arm: str, llm: str, options: dict[str, object]) -> str:
    """SHA-256 of what decides an arm's runs: scenario file, arm, model and the options that
    change what a run makes (not engine fields). A re-run with other settings is refused rather
    than mixing two experiments under one id."""
    how = engine_fields(RunConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)
                if f.default is not dataclasses.MISSING}
    # defaults are dropped: the command passes every option, the API none
    made = sorted((k, v) for k, v in options.items()
                  if k not in how and not (k in defaults and defaults[k] == v))
    text = json.dumps([scenario_key(scenario), arm, llm, made], default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_experiment(scenario: Scenario, experiment: Experiment, *, db: str | Path = DEFAULT_DB,
                   llm: str = "offline", on_run: Callable[[str, int, str], None] | None = None,
                   parallel: int = 1, progress: ProgressHook | None = None,
                   on_ready: OnReady | None = None, **options: Any
                   ) -> tuple[pd.DataFrame, list[str]]:
    """Run every arm x replicate not finished yet.

    Args:
        scenario: the base scenario.
        experiment: its experiment.
        db: the database every run writes to.
        llm: the model spec of every run.
        on_run: told (arm, replicate, run_id) after each run (from the run's thread in parallel).
        parallel: runs under way at once; it changes no run's rows.
        progress: told (phase, done, total) within each run, the phase prefixed with its arm and
            replicate (``arm a #0: step``).
        on_ready: called with each run's model client once it is ready.
        **options: further RunConfig fields.

    Returns:
        The experiment's rows and the new run ids, in arm x replicate order.

    Raises:
        Stopped: Ctrl-C or SIGTERM (a ``KeyboardInterrupt``): no further run started (in
            parallel the runs under way finished first); its line names the experiment
            command, which goes on.
    """
    experiment_id = experiment.id or scenario.name
    known = {f.name for f in dataclasses.fields(RunConfig)} - {"scenario", "db", "llm", "seed"}
    refuse_unknown("experiment", options, known)
    if parallel < 1:
        raise PersonahubError(f"experiment: parallel must be >= 1, got {parallel}")
    options = {k: v for k, v in options.items() if v is not None}
    db = Path(db)
    # check the run options before any run starts
    RunConfig(scenario=scenario, db=db, llm=llm, **options)
    done: dict[tuple[str, int], str] = {}
    earlier: dict[tuple[str, int], _Earlier] = {}
    if db.exists():
        con = connect(db)  # a writer: a run left running with no process is marked interrupted
        try:
            done = {(r.arm, int(r.replicate)): r.settings
                    for r in finished_arm_runs(con, experiment_id).itertuples()}
            earlier = _earlier_runs(con, experiment_id)
        finally:
            con.close()
    tasks: list[Callable[[], str | None]] = []
    for replicate in range(experiment.replicates):
        if experiment.design == "within":
            tasks.append(functools.partial(_within_task, scenario, experiment, replicate, done,
                                           db=db, llm=llm, options=options, on_run=on_run,
                                           earlier=earlier,
                                           hooks=_Hooks(f"replicate {replicate}", progress,
                                                        on_ready)))
            continue
        for arm in experiment.arms:
            settings = arm_settings(scenario, arm.name, llm, options)
            if (arm.name, replicate) in done:
                if done[arm.name, replicate] != settings:
                    raise PersonahubError(
                        f"experiment {experiment_id}: arm {arm.name!r} replicate {replicate} was "
                        "run with other settings (the scenario file, --llm or a run option "
                        "changed since); give a new --id")
                continue
            tasks.append(functools.partial(_arm_task, scenario, experiment, arm, replicate,
                                           settings, db=db, llm=llm, options=options,
                                           on_run=on_run, earlier=earlier,
                                           hooks=_Hooks(f"arm {arm.name} #{replicate}", progress,
                                                        on_ready)))
    finished: list[str] = []  # for the interrupt's message
    try:
        with interrupts_from_queries():  # Ctrl-C can land inside a DuckDB query
            results = _each(tasks, parallel, db, options.get("executor"),
                            options.get("ray_address"), finished)
    except KeyboardInterrupt as exc:
        raise Stopped(_stopped_line(experiment_id, signal_name(exc), len(finished), len(tasks)),
                      exc) from None
    ran = [r for r in results if r is not None]
    con = connect(db, read_only=True)
    try:
        runs = finished_arm_runs(con, experiment_id)
    finally:
        con.close()
    return runs, ran


def _stopped_line(experiment_id: str, how: str, finished: int, to_go: int) -> str:
    """Return what an interrupted experiment says: how many of its runs to go finished, or that all did
    (the signal came once every run was under way)."""
    if finished == to_go:
        return (f"experiment {experiment_id} interrupted by {how} once every run had started: "
                f"all {to_go} runs finished and are kept; the same personahub experiment command "
                "prints its tables")
    return (f"experiment {experiment_id} interrupted by {how} after {finished} of the {to_go} "
            "runs to go; the same personahub experiment command goes on (finished runs are kept)")


def _each(tasks: list[Callable[[], str | None]], parallel: int, db: Path,
          executor: str | None, ray_address: str | None,
          finished: list[str] | None = None) -> list[str | None]:
    """Each task's result in task order, run one after another or in parallel on threads.

    In parallel one read-write connection is held open around the runs: DuckDB opens a file
    once per process, so every run's connection (and ``connect``'s read-only probe, which falls
    back to it) shares that instance rather than racing to open it read-only and read-write; and
    with ``--executor ray`` one Ray connection is held around the runs (each run's own would
    shut Ray down under the others). The first task that fails stops the ones not started; the
    ones under way finish (their runs are recorded), then its error is raised. Ctrl-C (SIGTERM)
    does the same (``_signals_as_flags``) and is raised once they ended.
    """
    told = finished if finished is not None else []

    def counted(task: Callable[[], str | None]) -> str | None:
        run_id = task()
        if run_id is not None:
            told.append(run_id)
        return run_id

    if parallel == 1 or len(tasks) <= 1:
        return [counted(task) for task in tasks]
    with contextlib.ExitStack() as stack:
        stack.callback(connect(db).close)
        stack.enter_context(shared_pool())
        if executor == "ray":
            from personahub.executors.ray_batches import ray_session

            stack.enter_context(ray_session(ray_address))
        pool = stack.enter_context(
            ThreadPoolExecutor(max_workers=min(parallel, len(tasks)),
                               thread_name_prefix="experiment-run"))
        stops = stack.enter_context(_signals_as_flags(len(tasks), told))
        futures = [pool.submit(counted, task) for task in tasks]
        try:
            while not stops:
                done, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
                if not pending or any(not f.cancelled() and f.exception() is not None
                                      for f in done):
                    break
        finally:  # a failure or a signal: start no further run, let those under way finish
            for future in futures:
                future.cancel()
            while not all(f.done() for f in futures):
                wait(futures, timeout=0.2)
        if stops:
            raise stops[0]()
        for future in futures:
            if not future.cancelled() and future.exception() is not None:
                raise cast(BaseException, future.exception())
        return [future.result() for future in futures]


@contextlib.contextmanager
def _signals_as_flags(runs: int, finished: list[str]) -> Iterator[list[type[KeyboardInterrupt]]]:
    """While parallel runs are under way, SIGINT and SIGTERM append their interrupt's class to
    the yielded list instead of raising in the main thread (main thread only, and only where a
    Python handler was installed). A second signal exits at once with 130 (143)."""
    stops: list[type[KeyboardInterrupt]] = []
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return

    def on_signal(signum: int, frame: object) -> None:
        kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        if stops:
            sys.stderr.write("stopped at once; the same personahub experiment command goes on "
                             "(the runs under way start again)\n")
            sys.stderr.flush()
            os._exit(143 if kind is Terminated else 130)
        stops.append(kind)
        sys.stderr.write(f"{signal_name(kind())}: no further run starts; the runs under way "
                         f"finish first ({len(finished)} of {runs} done; press again to stop "
                         "at once)\n")
        sys.stderr.flush()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, handler in previous.items():
        if callable(handler):
            signal.signal(sig, on_signal)
    try:
        yield stops
    finally:
        for sig, handler in previous.items():
            if callable(handler):
                signal.signal(sig, handler)


@dataclass(frozen=True)
class _Hooks:
    """What one arm run tells its caller: progress under its own label, and its client."""

    label: str
    progress: ProgressHook | None = None
    on_ready: OnReady | None = None

    def run_progress(self) -> ProgressHook | None:
        """Return the run's progress hook: each phase prefixed with the run's label."""
        if self.progress is None:
            return None
        told = self.progress
        return lambda phase, done, total: told(f"{self.label}: {phase}", done, total)


def _arm_task(scenario: Scenario, experiment: Experiment, arm: Arm, replicate: int,
              settings: str, *, db: Path, llm: str, options: dict[str, Any],
              on_run: Callable[[str, int, str], None] | None,
              earlier: dict[tuple[str, int], _Earlier], hooks: _Hooks = _Hooks("")) -> str:
    """Run one arm x replicate between worlds and link it; returns the run id."""
    experiment_id = experiment.id or scenario.name
    seed = scenario.seed + replicate
    config = RunConfig(scenario=arm_scenario(scenario, arm), db=db, llm=llm, seed=seed, **options)
    run_id = _slot_run(config, f"experiment {experiment_id}, arm {arm.name!r} replicate "
                               f"{replicate}", _Slot(experiment_id, arm.name, replicate, settings),
                       earlier.get((arm.name, replicate)), hooks)
    con = connect(db)
    try:
        record_arm_run(con, experiment_id, arm.name, replicate, seed, run_id,
                       arm is experiment.control, settings)
    finally:
        con.close()
    if on_run is not None:
        on_run(arm.name, replicate, run_id)
    return run_id


def _within_task(scenario: Scenario, experiment: Experiment, replicate: int,
                 done: dict[tuple[str, int], str], *, db: Path, llm: str,
                 options: dict[str, object],
                 on_run: Callable[[str, int, str], None] | None,
                 earlier: dict[tuple[str, int], _Earlier],
                 hooks: _Hooks = _Hooks("")) -> str | None:
    """Run a within-world replicate and tell on_run (arm "all")."""
    run_id = _run_within(scenario, experiment, replicate, done, db=db, llm=llm, options=options,
                         earlier=earlier.get((WITHIN, replicate)), hooks=hooks)
    if run_id is not None and on_run is not None:
        on_run("all", replicate, run_id)
    return run_id


@dataclass(frozen=True)
class _Slot:
    """The arm x replicate a run is for (arm WITHIN: a within-world replicate's one run)."""

    experiment_id: str
    arm: str
    replicate: int
    settings: str


WITHIN = "*"


@dataclass(frozen=True)
class _Earlier:
    """The run an arm x replicate last started, with the settings it was started with and its
    status when this invocation began."""

    run_id: str
    settings: str
    status: str


def _earlier_runs(con: duckdb.DuckDBPyConnection,
                  experiment_id: str) -> dict[tuple[str, int], _Earlier]:
    """Each arm x replicate's last started run (read after connect marked any left running with
    no process interrupted)."""
    found = {}
    for arm, replicate, run_id, settings in attempts(con, experiment_id):
        job = find_job(con, run_id)
        if job is not None and job.kind == "run":
            found[arm, replicate] = _Earlier(run_id, settings, job.status)
    return found


def _slot_run(config: RunConfig, where: str, slot: _Slot, earlier: _Earlier | None,
              hooks: _Hooks | None = None) -> str:
    """Return the id of the slot's finished run: the one an earlier invocation started, finished now
    (resumed from its last committed step, with its arm's scenario) or already (stopped before
    it was linked); else a new one's. An unfinished one of other settings is superseded."""
    resume = None
    if earlier is not None and earlier.settings != slot.settings:
        if earlier.status in UNFINISHED:
            _supersede(config.db, earlier.run_id)
    elif earlier is not None and earlier.status == "finished":
        return earlier.run_id
    elif earlier is not None and earlier.status in UNFINISHED:
        resume = earlier.run_id
    return str(_run(config, where, resume=resume, slot=slot, hooks=hooks).run_id)


def _supersede(db: Path, run_id: str) -> None:
    con = connect(db)
    try:
        supersede_jobs(con, [run_id])
    finally:
        con.close()


def _run(config: RunConfig, where: str, *, resume: str | None = None,
         slot: _Slot | None = None, hooks: _Hooks | None = None) -> RunSummary:
    """Run one simulation, or go on with ``resume`` (given the arm's scenario, which the file
    alone cannot rebuild); a new run is noted for its slot in the transaction that records it,
    so no kill leaves a run the next invocation cannot find. A stop message points at the
    experiment command, not the run's; hooks tell its progress and client."""

    def noted(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
        if slot is not None:
            record_attempt(con, slot.experiment_id, slot.arm, slot.replicate, run_id,
                           slot.settings)

    try:
        hooks = hooks or _Hooks("")
        return run_simulation(config, resume=resume, on_record=noted,
                              progress=hooks.run_progress(), on_ready=hooks.on_ready)
    except ResumableStop as exc:
        if isinstance(exc, AwaitingResults):
            raise
        reason = str(exc).split("; resume with ", 1)[0]
        raise PersonahubError(f"{where}: {reason}; the same personahub experiment command goes "
                              "on (finished runs are kept)") from None


def _run_within(scenario: Scenario, experiment: Experiment, replicate: int,
                done: dict[tuple[str, int], str], *, db: Path, llm: str,
                options: dict[str, Any], earlier: _Earlier | None = None,
                hooks: _Hooks = _Hooks("")) -> str | None:
    """Run a within-world replicate unless finished, record its randomisation, link every arm.

    Returns the new run's id, or None when it had finished."""
    experiment_id = experiment.id or scenario.name
    settings = arm_settings(scenario, "within:" + experiment.stratify, llm, options)
    recorded = [done.get((arm.name, replicate)) for arm in experiment.arms]
    if all(r is not None for r in recorded):
        if any(r != settings for r in recorded):
            raise PersonahubError(
                f"experiment {experiment_id}: replicate {replicate} was run with other settings "
                "(the scenario file, --llm or a run option changed since); give a new --id")
        return None
    seed = scenario.seed + replicate
    config = RunConfig(scenario=within_scenario(scenario, experiment), db=db, llm=llm, seed=seed,
                       **options)
    run_id = _slot_run(config, f"experiment {experiment_id}, replicate {replicate} (one world)",
                       _Slot(experiment_id, WITHIN, replicate, settings), earlier, hooks)
    con = connect(db)
    try:
        personas, graph = restore_society(con, run_id)
        ids = [p.persona_id for p in personas]
        labels = strata(ids, [p.attributes for p in personas],
                        graph.to_networkx() if experiment.stratify == STRATIFY_COMMUNITY else None,
                        experiment.stratify, seed)
        arm_of = assign_arms(ids, [a.name for a in experiment.arms], seed, labels)
        record_arm_agents(con, experiment_id, replicate, run_id,
                          [(pid, position + 1, arm_of[pid]) for position, pid in enumerate(ids)])
        for arm in experiment.arms:  # last, as these rows mark the replicate finished
            record_arm_run(con, experiment_id, arm.name, replicate, seed, run_id,
                           arm is experiment.control, settings)
    finally:
        con.close()
    return run_id


def read_experiment(experiment: Experiment, runs: pd.DataFrame, *, db: str | Path,
                    confidence: float = 0.95, alpha: float = 0.05,
                    ran: list[str] | None = None) -> ExperimentResult:
    """Read an experiment's tables from its runs."""
    runs = runs[runs["replicate"] < experiment.replicates].reset_index(drop=True)
    con = connect(db, read_only=True)
    try:
        agents = pd.DataFrame()
        if experiment.design == "within":
            agents = arm_agents(con, experiment.id)
            agents = agents[agents["replicate"] < experiment.replicates].reset_index(drop=True)
        values = outcome_values(con, experiment, runs,
                                agents if experiment.design == "within" else None)
    finally:
        con.close()
    return ExperimentResult(experiment_id=experiment.id, runs=runs, arms=arm_table(values),
                            effects=effects(values, experiment, confidence=confidence,
                                            alpha=alpha),
                            values=values, ran=list(ran or []), agents=agents)


def experiment_file(scenario_file: str | Path, *, db: str | Path = DEFAULT_DB,
                    llm: str = "offline", replicates: int | None = None,
                    experiment_id: str | None = None, confidence: float = 0.95,
                    alpha: float = 0.05, on_run: Callable[[str, int, str], None] | None = None,
                    parallel: int = 1, compare: str | None = None,
                    progress: ProgressHook | None = None, on_ready: OnReady | None = None,
                    **options: object) -> ExperimentResult:
    """Run a scenario file's EXPERIMENT (its unfinished runs) and return its tables.

    What ``personahub experiment`` calls; ``experiment`` is the same for Python (any thread or
    event loop, progress bars, errors naming its keywords).

    Args:
        scenario_file: a scenario file defining SCENARIO and EXPERIMENT.
        db: the database.
        llm: the model spec of every run.
        replicates: runs per arm instead of the experiment's replicates.
        experiment_id: the id instead of the experiment's (default: the scenario's name).
        confidence: the intervals' level.
        alpha: the tests' level after Holm's correction.
        on_run: told (arm, replicate, run_id) after each run finished.
        parallel: runs under way at once, on threads; the tables are the same as one by one.
        compare: an earlier experiment's id: agreement says whether each effect here agrees
            with its (within its interval, and found where it finds one).
        progress: a progress hook (phase, done, total), each phase prefixed with its run's arm
            and replicate.
        on_ready: called with each run's model client once it is ready.
        **options: further RunConfig fields for every run (steps, sampling, engine options).

    Returns:
        An ExperimentResult with runs, arms, effects and values DataFrames.
    """
    if experiment_id is not None:  # "" is not the default: it is refused, as a path in it is
        check_id(experiment_id, "--id")
    scenario, spec = load_experiment(scenario_file)
    if replicates is not None:
        spec = spec.with_replicates(replicates)
    if experiment_id is not None:
        spec = dataclasses.replace(spec, id=experiment_id)
    base = recorded_effects(db, compare, confidence) if compare is not None else None
    runs, ran = run_experiment(scenario, spec, db=db, llm=llm, on_run=on_run,
                               parallel=parallel, progress=progress, on_ready=on_ready,
                               **options)
    result = read_experiment(spec, runs, db=db, confidence=confidence, alpha=alpha, ran=ran)
    if compare is not None and base is not None:
        from personahub.analysis.experiment_report import experiment_agreement

        result.agreement, result.agreement_verdict = experiment_agreement(
            base, compare, result.effects, result.experiment_id)
    return result


@job_function(renames={"id": "experiment_id"})
def experiment(scenario_file: str | Path, *, db: str | Path = DEFAULT_DB, llm: str = "offline",
               replicates: int | None = None, experiment_id: str | None = None,
               confidence: float = 0.95, alpha: float = 0.05,
               on_run: Callable[[str, int, str], None] | None = None, parallel: int = 1,
               compare: str | None = None, progress: ProgressSetting = None,
               **options: Any) -> ExperimentResult:
    """Run a scenario file's EXPERIMENT (its unfinished runs) and return its tables.

    Inside a running event loop (Jupyter) the runs go in a worker thread, as every job's do.

    Args:
        scenario_file: a scenario file defining SCENARIO and EXPERIMENT.
        db: the database.
        llm: the model spec of every run.
        replicates: runs per arm instead of the experiment's replicates.
        experiment_id: the id instead of the experiment's (default: the scenario's name).
        confidence: the intervals' level.
        alpha: the tests' level after Holm's correction.
        on_run: told (arm, replicate, run_id) after each run finished.
        parallel: runs under way at once, on threads; the tables are the same as one by one.
        compare: an earlier experiment's id: agreement says whether each effect here agrees
            with its (within its interval, and found where it finds one).
        progress: as for run_scenario: a bar per run and phase (``arm rumour #0: step``).
        **options: further RunConfig fields for every run (steps, sampling, engine options).

    Returns:
        An ExperimentResult with runs, arms, effects and values DataFrames.
    """
    quiet_tqdm_auto()  # must precede the scenario's imports, which may import tqdm.auto
    with progress_hook(progress) as hook:
        return experiment_file(scenario_file, db=db, llm=llm, replicates=replicates,
                               experiment_id=experiment_id, confidence=confidence, alpha=alpha,
                               on_run=on_run, parallel=parallel, compare=compare,
                               progress=hook, **options)


experiment_async = async_twin(experiment)


def recorded_effects(db: str | Path, experiment_id: str, confidence: float = 0.95
                     ) -> pd.DataFrame:
    """Return the effect table of an experiment recorded in db, for compare.

    Raises:
        PersonahubError: no such database or experiment.
    """
    from personahub.analysis.experiment_report import compared_effects  # imports matplotlib

    if not Path(db).exists():
        raise PersonahubError(f"--compare {experiment_id}: {db} does not exist")
    con = connect(db, read_only=True)
    try:
        return compared_effects(con, experiment_id, confidence=confidence)
    finally:
        con.close()

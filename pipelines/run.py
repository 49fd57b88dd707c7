"""personahub run as a job spec: a scenario's society, one simulation step per batch.

Each step commits in one transaction with its model calls. A step depends on the one before, so
with Ray only the model calls are remote. A step that lost an action to the endpoint is not
committed: the run stops, resumable, and a resume asks the step again from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

import duckdb

from personahub.analysis.kept import kept_lines
from personahub.core import call_log
from personahub.core.contracts import StructuredCaller
from personahub.core.engine_options import renamed_fields
from personahub.core.errors import PersonahubError, ResumableStop, UsageError
from personahub.core.failures import endpoint_error
from personahub.core.jobs_store import find_job, list_jobs, merge_job_config
from personahub.core.json_types import JsonObject
from personahub.core.kernel import BatchOutcome, JobContext, engine, register, unfinished_twins
from personahub.core.plan_limits import MAX_STEPS
from personahub.core.store import DEFAULT_DB, connect
from personahub.core.validate import check_int, check_optional_number, check_seed
from personahub.models.cache import check_replay_file
from personahub.models.endpoint_specs import served_models
from personahub.models.settings import DEFAULT_MAX_RETRIES, LLMSettings
from personahub.personas.expand import ExpansionIncomplete
from personahub.personas.gate_labels import spec_is_offline
from personahub.personas.near_dup import IndexesByKind
from personahub.personas.quality import rejected_counts
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from personahub.pipelines.expand import EXPANSION, ExpandConfig
from personahub.pipelines.model_fields import EngineFields
from personahub.pipelines.setup_note import setup_expansion_line
from personahub.pipelines.shipped_spec import ItemsInView, ShippedSpec
from personahub.pipelines.survey_profile import SurveyProfile, load_profile
from personahub.sim import population_build, population_setup, runner, store
from personahub.sim.column_society import ColumnSociety, ColumnStep, columns_refusal
from personahub.sim.gc_policy import RunHeap
from personahub.sim.live_control import LiveControl
from personahub.sim.population_build import PersonaColumns
from personahub.sim.scenario import (
    STATED,
    Scenario,
    archetype_sample_size,
    load_scenario,
    raised_text,
    scenario_frame,
)
from personahub.sim.society import SocietyModel, StepResult

SOCIETIES = ("agents", "columns", "auto")


@dataclass(frozen=True, kw_only=True)
class RunConfig(EngineFields):
    """A run: its scenario, what overrides it, and (engine fields) how this invocation asks.

    Two runs differ by the scenario's file and SHA-256; a resume reloads the scenario from its
    file, never from the store. Seed and steps default to the scenario's."""

    scenario: Scenario | None = engine(None)
    scenario_file: str | None = None
    scenario_sha256: str | None = None
    steps: int | None = None
    seed: int | None = None
    archetypes: int | None = None  # overrides the scenario's
    archetype_elicit: str | None = None  # overrides the scenario's: "distribution" or "sample:N"
    survey_profile: str | None = None  # a fitted calibration answering every choice survey
    price_in: float | None = None  # USD per 1M input tokens
    price_out: float | None = None  # USD per 1M output tokens
    include_ungated: bool = False  # a hub source also draws personas the gate did not pass
    # agents: one Mesa agent object per persona; columns: the population in column shards (a run
    # with archetypes whose scenario fits, sim/column_society.py); auto: columns when it fits
    society: str = "agents"
    shards: int | None = engine(None)  # column shards (default: one locally, --ray-workers on Ray)
    db: Path = engine(Path(DEFAULT_DB))
    max_retries: int = engine(DEFAULT_MAX_RETRIES)
    chunk_size: int = engine(128)
    # pause, step and inject events from the live view; never stored
    live_control: object = engine(None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "db", Path(self.db))
        self.check_executor(cache_on_driver=True)  # the batch options too
        self.check_model()
        self.check_generation()
        check_optional_number(self.price_in, "--price-in", low=0)
        check_optional_number(self.price_out, "--price-out", low=0)
        check_int(self.chunk_size, "chunk size", low=1)
        check_int(self.max_retries, "max retries", low=0)
        if self.scenario is not None:
            self._fill_from(self.scenario)
        if self.seed is not None:
            check_seed(self.seed)
        if self.steps is not None:
            check_int(self.steps, "--steps", low=1, high=MAX_STEPS)
        if self.archetypes is not None:
            check_int(self.archetypes, "--archetypes", low=1)
        if self.society not in SOCIETIES:
            raise UsageError(f"--society must be one of {', '.join(SOCIETIES)}, "
                             f"got {self.society!r}")
        if self.shards is not None:
            check_int(self.shards, "shards", low=1)
        if self.survey_profile is not None and not str(self.survey_profile).strip():
            raise UsageError("--survey-profile: give the id of a calibration fitted with --fit")
        if self.archetype_elicit is not None:
            archetype_sample_size(self.archetype_elicit)
            if self.archetype_elicit in STATED:  # one spelling stored: a resume compares equal
                object.__setattr__(self, "archetype_elicit", STATED[-1])
            if self.scenario is not None and (self.archetypes is None
                                              and self.scenario.archetypes is None):
                raise UsageError(f"--archetype-elicit {self.archetype_elicit}: there are no "
                                 "archetypes to elicit; give --archetypes K too (or "
                                 "archetypes=K in the scenario)")

    def _fill_from(self, scenario: Scenario) -> None:
        """Seed, steps, file and digest from the scenario where not given."""
        if not isinstance(scenario, Scenario):
            raise UsageError(f"a run's scenario must be a Scenario (load_scenario(FILE)), "
                             f"not {type(scenario).__name__}")
        filled = {"seed": scenario.seed, "steps": scenario.steps,
                  "scenario_file": str(scenario.source) if scenario.source else None}
        for name, value in filled.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.scenario_sha256 is None:
            object.__setattr__(self, "scenario_sha256", runner.scenario_key(scenario))

    @property
    def run_seed(self) -> int:
        return int(self.seed or 0)

    @property
    def run_steps(self) -> int:
        return int(self.steps or 0)




@dataclass
class RunSummary:
    """What a run did, for the console and for tests (the whole run, resumed or not)."""

    run_id: str
    scenario: str
    db: Path
    engine: str
    offline: bool
    agents: int
    edges: int
    steps: int
    emissions_by_kind: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    messages: int = 0
    answers: int = 0
    events: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    failed_actions: int = 0  # includes emissions rejected by the quality gate
    rejected: dict[str, int] = field(default_factory=dict)  # quality-gate rejects by reason
    prompt_tokens_per_action: float | None = None
    # prefix cache: (cached, prompt) tokens where the server reported reuse, and the estimated
    # share of prompts in a shared prefix
    prefix_reused: tuple[int, int] | None = None
    prefix_estimated: float | None = None
    wall_s: float = 0.0
    kept: list[str] = field(default_factory=list)  # the kept share per kind, in words
    personas_note: str | None = None  # why the hub draw found fewer personas than asked
    setup_note: str | None = None  # the answers the setup expansion's gate kept and rejected
    surveys: list[str] = field(default_factory=list)
    archetypes: list[str] = field(default_factory=list)
    archetype_calls: int = 0
    drawn: int = 0  # answers and emissions drawn from archetype calls


class ActionsLost(ResumableStop):
    """Actions of a step were lost to the endpoint: the step is not committed (resumable)."""


@dataclass
class Taken:
    """A step as its batch returns it: the result (which carries the step's calls) and when the
    step started."""

    result: StepResult | ColumnStep
    started_at: dt.datetime


@dataclass
class RunState:
    """One run's own state, kept by the job context."""

    name: str
    scenario: Scenario | None  # None for a finished run asked to resume
    # while the agents are still to be recorded: columns for a column society set up from them
    personas: list[Persona] | PersonaColumns | None
    world: str = ""
    started: float = field(default_factory=time.perf_counter)
    committed: int = 0
    model: SocietyModel | ColumnSociety | None = None
    indexes: IndexesByKind | None = None
    heap: RunHeap | None = None
    personas_note: str | None = None  # the hub draw's shortfall
    columns: bool = False  # the population lives in column shards
    held: ExitStack = field(default_factory=ExitStack)  # what lives as long as the run (actors)
    profiles: dict[str, SurveyProfile] = field(default_factory=dict)  # by survey id

    @property
    def scenario_now(self) -> Scenario:
        """The scenario of a run that asks something."""
        assert self.scenario is not None
        return self.scenario


def _state(ctx: JobContext[RunConfig]) -> RunState:
    state: RunState = ctx.state
    return state


def _live_control(ctx: JobContext[RunConfig]) -> LiveControl | None:
    """Return the invocation's live control, if any (a stored placeholder text is none)."""
    live_control = ctx.config.live_control
    return live_control if isinstance(live_control, LiveControl) else None


class RunAsker:
    """Runs one step on the job's caller; it holds the in-memory society, so it stays local."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    async def run_batch(self, step: int, caller: StructuredCaller) -> Taken:
        model = self.state.model
        assert model is not None and model.steps == step - 1, "steps run in order"
        started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return Taken(await model.advance(caller), started)


class RunSpec(ItemsInView, ShippedSpec[RunConfig, int, Taken, RunSummary], kind="run"):
    """The job spec behind personahub run."""

    config_type = RunConfig
    independent_batches = False
    refuses_twins = False  # a new run of a scenario is a new experiment
    progress_per_answer = False  # its progress counts its own stages, not batch items
    item_source = "run"
    sample_columns = "step, agent_id, task, text"

    def new_id(self) -> str:
        """UTC time and a random suffix: sortable and unique."""
        return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def model_settings(self, config: RunConfig) -> LLMSettings:
        return LLMSettings.of_job(config, seed=config.run_seed, max_retries=config.max_retries)

    def upgrade(self, stored: JsonObject) -> JsonObject:
        """Upgrade the stored config: the scenario replaced by its description (a run reloads the file)."""
        stored = dict(stored)
        stored.pop("scenario", None)
        stored.pop("live_control", None)
        stored.pop("steering", None)  # its name in configs stored before the rename
        return stored

    # -- before anything is recorded --------------------------------------------------------------
    def prepare(self, ctx: JobContext[RunConfig]) -> None:
        """Prepare the scenario, its personas and every check that needs no model."""
        if ctx.status == "finished":  # nothing is asked: its summary reads the tables
            recorded = store.run_record(ctx.con, ctx.job_id)
            ctx.state = RunState(recorded.scenario if recorded else ctx.job_id, None, None)
            return
        if ctx.resumed:
            ctx.config = _reloaded(ctx)
        elif ctx.config.scenario is None:
            raise UsageError("a run needs a scenario: RunConfig(scenario=load_scenario(FILE), ...)")
        scenario = ctx.config.scenario
        assert scenario is not None
        if ctx.config.include_ungated:
            scenario = dataclasses.replace(scenario, personas=dataclasses.replace(
                scenario.personas, include_ungated=True))
        personas: list[Persona] | PersonaColumns | None = None
        notes: list[str] = []
        if not (ctx.resumed and store.agent_count(ctx.con, ctx.job_id)):
            load = (population_build.read_personas if _set_up_from_columns(ctx.config, scenario)
                    else runner.load_scenario_personas)
            with RunHeap():  # many long-lived objects: keep the collector off them
                personas = load(scenario, ctx.db, ctx.con, offline=spec_is_offline(ctx.config.llm),
                                notes=notes)
        if isinstance(personas, PersonaColumns):
            personas.check(scenario)
        world = runner.check_scenario(scenario, None if isinstance(personas, PersonaColumns)
                                      else personas)
        profiles = _profiles(ctx.con, scenario, ctx.config.survey_profile)
        for survey_id, profile in profiles.items():  # before the client or anything is written
            profile.check_served(served_models(ctx.config.llm),
                                 _profile_flag(ctx.config, survey_id))
            remote = ctx.config.executor != "local" or ctx.config.provider_batch
            if profile.config.method.probes and remote:
                raise UsageError(f"{_profile_flag(ctx.config, survey_id)} {profile.job_id}: its "
                                 f"method ({profile.config.method.label}) reads token "
                                 "log-probabilities, which --executor ray and --provider-batch cannot")
        columns = _columns(ctx.config, scenario, bool(profiles))
        if isinstance(personas, PersonaColumns) and not columns:
            personas = personas.personas()  # a survey profile answers one survey: agent objects
        ctx.state = RunState(scenario.name, scenario, personas, world,
                             personas_note=notes[0] if notes else None, columns=columns,
                             profiles=profiles)
        ctx.total = ctx.config.run_steps

    def start(self, ctx: JobContext[RunConfig]) -> BatchOutcome:
        """Return the runs row, and the scenario's personas in the hub; a survey profile fitted on
        another model is refused first.
        """
        state, config = _state(ctx), ctx.config
        for survey_id, profile in state.profiles.items():  # a client of one's own, too
            profile.check_model(ctx.caller, _profile_flag(config, survey_id))
        row = store.run_row(ctx.job_id, scenario=state.name,
                            scenario_path=config.scenario_file or "", llm=ctx.caller.label,
                            steps_planned=config.run_steps)
        personas = state.personas or []
        if isinstance(personas, PersonaColumns):
            return BatchOutcome(rows={"runs": [row]}, then=lambda: _write_columns(ctx, state))
        return BatchOutcome(rows={"runs": [row]}, then=lambda: upsert_personas(ctx.con, personas))

    @contextmanager
    def running(self, ctx: JobContext[RunConfig]) -> Iterator[None]:
        """Hold the collector off the society, and store what was learned however the run ends."""
        try:
            with RunHeap() as heap:
                _state(ctx).heap = heap
                yield
        finally:
            if isinstance(ctx.state, RunState):
                ctx.state.held.close()
            live_control = _live_control(ctx)
            if live_control is not None:  # tell the live view the run is over
                state = ctx.state if isinstance(ctx.state, RunState) else None
                live_control.finish(state.committed if state is not None else None)
            merge_job_config(ctx.con, ctx.job_id, {
                "structured_modes": ctx.caller.structured_modes(),
                "concurrency_limit": ctx.caller.concurrency_report()})

    # -- the steps ---------------------------------------------------------------------------------
    def plan(self, ctx: JobContext[RunConfig]) -> Iterator[int]:
        """Plan the steps still to run; the society is set up (or restored) on the first."""
        if ctx.status == "finished":
            return iter(())
        return self._steps(ctx)

    def _steps(self, ctx: JobContext[RunConfig]) -> Iterator[int]:
        state = _state(ctx)
        _society(ctx, state)
        con = ctx.con
        live_control = _live_control(ctx)
        for step in range(state.committed + 1, ctx.config.run_steps + 1):
            if live_control is not None:  # waits here while paused; takes injected events
                assert state.model is not None
                state.model.injected.extend(live_control.barrier(step))
            with store.bounded_pool(con, store.RUN_ROOM) if state.columns else nullcontext():
                yield step  # a column step's shards, its insert from Parquet and its commit
            state.committed = step
            if state.columns:
                population_setup.clear_step(ctx.db, ctx.job_id, step)
            store.release_cached_blocks(con)  # keeps memory flat over long runs
            if state.heap is not None:
                state.heap.settle()

    def plain_asker(self, ctx: JobContext[RunConfig]) -> RunAsker:
        """Return the step asker."""
        return RunAsker(_state(ctx))

    def commit(self, ctx: JobContext[RunConfig], batch: int, result: Taken) -> BatchOutcome:
        """Write the step's rows with its calls; lost actions stop the run before any is written."""
        if isinstance(result.result, ColumnStep):
            return _commit_columns(ctx, batch, result.result, result.started_at)
        step = result.result
        errors = [error for _, error in step.failures]
        kept = len(step.emissions) + len(step.answers)
        _refuse_lost(batch, errors, kept + len(errors))
        state = _state(ctx)
        assert state.indexes is not None
        duplicates = runner.flag_duplicates(step, state.indexes)
        rows = store.step_rows(ctx.job_id, step, duplicates, result.started_at,
                               model=ctx.caller.label)
        return BatchOutcome(rows=rows, calls=[step], asked=kept + len(errors), kept=kept,
                            errors=errors, label=f"step {batch}",
                            progress=("step", batch, ctx.config.run_steps),
                            then=lambda: store.set_steps_done(ctx.con, ctx.job_id, batch))

    # -- how it ends -------------------------------------------------------------------------------
    def end_status(self, ctx: JobContext[RunConfig], asked: int, kept: int) -> str:
        """Every step ran; failed actions are counted per step."""
        return "finished"

    def nothing_kept(self, ctx: JobContext[RunConfig], asked: int) -> str:
        return f"every one of its {asked} actions failed"

    def failure_text(self, ctx: JobContext[RunConfig], exc: BaseException) -> str:
        where = scenario_frame(exc)
        what = (f"{where}: scenario code {raised_text(exc)}" if where
                else f"{type(exc).__name__}: {exc}")
        committed = _state(ctx).committed if isinstance(ctx.state, RunState) else 0
        return f"failed at step {committed + 1}: {what}"

    def stop_note(self, ctx: JobContext[RunConfig]) -> str:
        committed = _state(ctx).committed if isinstance(ctx.state, RunState) else 0
        return f" after step {committed}"

    def summary(self, ctx: JobContext[RunConfig]) -> RunSummary:
        """Return the run's totals, read back from the database (resumes included); a column
        run's queries hold DuckDB's pool to one room, as its steps do (they scan a row per agent
        a step), and it then checkpoints in that room: left to the connection's close, DuckDB's
        last checkpoint ran under its default limit, the run's peak at millions of agents."""
        columns = isinstance(ctx.state, RunState) and ctx.state.columns
        if not columns:
            return self._summary(ctx)
        with store.bounded_pool(ctx.con, store.RUN_ROOM):
            summary = self._summary(ctx)
        store.release_cached_blocks(ctx.con, room=store.RUN_ROOM)
        return summary

    def _summary(self, ctx: JobContext[RunConfig]) -> RunSummary:
        con, run_id, caller = ctx.con, ctx.job_id, ctx.caller
        summary = RunSummary(run_id=run_id, scenario=_state(ctx).name, db=Path(ctx.db),
                             engine=caller.label, offline=caller.is_offline,
                             **store.run_counts(con, run_id))
        summary.rejected = rejected_counts(con, run_id=run_id)
        summary.prompt_tokens_per_action = call_log.prompt_tokens_per_action(con, run_id)
        summary.kept = kept_lines(con, run_id=run_id)
        summary.surveys = store.survey_lines(con, run_id)
        summary.archetypes = store.archetype_lines(con, run_id)
        summary.prefix_reused = call_log.prefix_reused(con, run_id)
        summary.prefix_estimated = runner.estimated_prefix_share(caller.endpoints)
        summary.wall_s = time.perf_counter() - _state(ctx).started
        summary.personas_note = _state(ctx).personas_note
        summary.setup_note = setup_expansion_line(con, run_id)
        return summary

    def report(self, summary: RunSummary, db: Path) -> list[str]:
        """Report what the run did, as console lines."""
        emitted = sum(summary.emissions_by_kind.values())
        return [f"run {summary.run_id} ({summary.scenario}): {summary.steps} steps, "
                f"{summary.agents} agents, {emitted} emissions, {summary.answers} survey answers, "
                f"{summary.failed_actions} failed actions in {db}",
                *([summary.personas_note] if summary.personas_note else []),
                *([summary.setup_note] if summary.setup_note else []),
                f"  personahub report --db {db} --run {summary.run_id} --out report"]


def check_new_run(config: RunConfig) -> None:
    """Refuse a replay from a database that does not exist, before opening creates it."""
    if config.cache == "replay":
        check_replay_file(config.db)


class ResumeSettings(TypedDict, total=False):
    """Hold what a resume sets over the run's stored config: where calls run, and how."""

    db: Path
    llm: str
    offline_latency_s: float
    executor: str
    ray_address: str | None
    ray_workers: int | None
    max_failed_share: float
    provider_batch: bool
    provider_batch_window: str
    provider_batch_fallback: Literal["batch", "online"]
    provider_batch_poll_s: float
    live_control: LiveControl


def resume_settings(run_id: str, db: str | Path, *, llm: str | None,
                    offline_latency_s: float = 0.0, executor: str = "local",
                    ray_address: str | None = None, ray_workers: int | None = None,
                    max_failed_share: float | None = None) -> ResumeSettings:
    """Return the engine fields of a resume: where calls run is the caller's; None keeps the run's own.

    The recorded model spec is redacted, so pass llm when the model needs credentials."""
    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database")
    settings = ResumeSettings(db=Path(db), offline_latency_s=offline_latency_s,
                              executor=executor, ray_address=ray_address, ray_workers=ray_workers)
    if max_failed_share is not None:
        settings["max_failed_share"] = max_failed_share
    settings["llm"] = llm if llm is not None else _recorded_llm(db, run_id)
    return settings


def unfinished_twins_note(db: str | Path, run_id: str) -> str | None:
    """Return a line naming the unfinished runs with a new run's settings (one a kill left, say) and the
    command that resumes the newest; None when there is none.

    A new run of a scenario is a run of its own, so it is started all the same; the line says
    what the user may have meant to go on with."""
    con = connect(db, read_only=True)  # in this process: the running run's own database
    try:
        row = find_job(con, run_id)
        if row is None:
            return None
        twins = [j for j in unfinished_twins(RUN, con, RUN.upgrade(renamed_fields(row.config)))
                 if j != run_id]
        left = find_job(con, twins[0]) if twins else None
    finally:
        con.close()
    if left is None:
        return None
    why = left.status + (f": {left.error.splitlines()[0][:160]}" if left.error else "")
    more = (f" ({len(twins) - 1} more: personahub runs --status {left.status} lists them)"
            if len(twins) > 1 else "")
    return (f"run {left.job_id} of this scenario with the same settings is unfinished ({why})"
            f"{more}; this is a new run, {run_id}; resume that one with "
            f"{RUN.resume_hint(left.job_id, Path(db))}")


def _recorded_llm(db: str | Path, run_id: str) -> str:
    """Return the redacted model spec a run recorded; "offline" for an unknown job."""
    con = connect(db, read_only=True)
    try:
        job = find_job(con, run_id)
    finally:
        con.close()
    stored = RUN.upgrade(dict(job.config)) if job is not None else {}
    return str(stored.get("llm") or "offline")


def _reloaded(ctx: JobContext[RunConfig]) -> RunConfig:
    """Return a resumed run's config with its scenario reloaded from its verified file, or the scenario
    the caller gave when it is the run's (an experiment's arm: the file's scenario with the arm's
    differences, which the file alone cannot rebuild)."""
    config = ctx.config
    recorded = store.run_record(ctx.con, ctx.job_id)
    steps = recorded.steps_planned if recorded and recorded.steps_planned else config.steps
    if config.scenario is not None:
        given = runner.scenario_key(config.scenario)
        if given != config.scenario_sha256:
            raise PersonahubError(f"--resume {ctx.job_id}: the scenario given is not the run's "
                                  f"(sha256 {given[:12]}, the run's "
                                  f"{(config.scenario_sha256 or '?')[:12]}); start a new run")
        return dataclasses.replace(config, steps=steps)
    path = runner.verified_scenario_file(ctx.job_id, config.scenario_file, config.scenario_sha256,
                                         recorded.scenario_path if recorded else None)
    return dataclasses.replace(config, scenario=load_scenario(path), steps=steps)


def _refuse_lost(step: int, errors: Sequence[str | None], asked: int) -> None:
    """Stop before committing a step that lost actions to the endpoint."""
    lost = [str(e) for e in errors if endpoint_error(e)]
    if lost:
        common = max(set(lost), key=lost.count)
        raise ActionsLost(f"step {step}: {len(lost)} of {asked} actions were lost to the endpoint "
                          f"(most often: {common[:160]}), so the step was not committed; check "
                          "the --llm server (its log says more)")


def _refusal(config: RunConfig, scenario: Scenario) -> str | None:
    """Return why the run's scenario needs an agent object per persona, or None if it fits columns."""
    k = config.archetypes if config.archetypes is not None else scenario.archetypes
    elicit = (config.archetype_elicit if config.archetype_elicit is not None
              else scenario.archetype_elicit)
    return columns_refusal(dataclasses.replace(scenario, archetypes=k),
                           archetype_sample_size(elicit))


def _write_columns(ctx: JobContext[RunConfig], state: RunState) -> None:
    """Write a new column society's personas to the hub; keep only what its setup still reads."""
    assert isinstance(state.personas, PersonaColumns)
    state.personas = population_build.write_personas(ctx.con, state.personas)


def _set_up_from_columns(config: RunConfig, scenario: Scenario) -> bool:
    """Whether a new run's personas are read as columns (``sim/population_build.py``): a column
    society without a setup expansion (whose start and reached personas are agent objects)."""
    return (config.society != "agents" and not scenario.graph.hops
            and _refusal(config, scenario) is None)


def _columns(config: RunConfig, scenario: Scenario, profiled: bool = False) -> bool:
    """Whether the run's population lives in column shards (a usage error when asked for one
    whose scenario does not fit, or whose surveys are answered by a survey profile)."""
    if config.society == "agents":
        return False
    why = _refusal(config, scenario)
    if why is None and profiled:
        why = "a survey answered by a survey profile"
    if why is not None and config.society == "columns":
        raise UsageError(f"--society columns: scenario {scenario.name} needs an agent object per "
                         f"agent ({why}); use --society agents or auto")
    return why is None


def _commit_columns(ctx: JobContext[RunConfig], batch: int, step: ColumnStep,
                    started_at: dt.datetime) -> BatchOutcome:
    """Write a column step: its small rows and calls, and its shards' files in bulk."""
    errors = step.errors
    kept = step.emissions + step.answers
    _refuse_lost(batch, errors, kept + len(errors))
    rows = store.column_step_rows(ctx.job_id, step, started_at)

    def then() -> None:
        store.commit_step_files(ctx.con, ctx.job_id, step.step, step.files)
        store.set_steps_done(ctx.con, ctx.job_id, batch)

    return BatchOutcome(rows=rows, calls=[step], asked=kept + len(errors), kept=kept,
                        errors=errors, label=f"step {batch}",
                        progress=("step", batch, ctx.config.run_steps), then=then)


def _society(ctx: JobContext[RunConfig], state: RunState) -> None:
    """Set up the society or read it back, at the last committed step."""
    config, con, run_id = ctx.config, ctx.con, ctx.job_id
    scenario = state.scenario_now
    representatives = store.archetype_representatives(con, run_id)
    if state.columns and state.personas is None and representatives:
        _columns_society(ctx, state, representatives, store.steps_done(con, run_id))
        return  # a resume reads no agent into this process
    k = config.archetypes if config.archetypes is not None else scenario.archetypes
    if isinstance(state.personas, PersonaColumns):
        assert k is not None and state.columns
        representatives = population_build.set_up(con, run_id=run_id, scenario=scenario,
                                                   personas=state.personas, k=k,
                                                   seed=config.run_seed)
        state.personas = None
        _columns_society(ctx, state, representatives, 0)
        return
    if state.personas is not None:
        reached = _setup(ctx, scenario, state.personas)
        own = runner.own_acquaintances(scenario, state.personas, config.run_seed)
        agents, graph = runner.record_society(con, run_id, state.personas, reached, own)
        done = 0
    else:
        agents, graph = runner.restore_society(con, run_id)
        done = store.steps_done(con, run_id)
    grouping = runner.archetype_grouping(con, run_id, k, agents, config.run_seed)
    elicit = (config.archetype_elicit if config.archetype_elicit is not None
              else scenario.archetype_elicit)
    if state.columns:
        assert grouping is not None
        state.personas = None
        del agents, graph
        _columns_society(ctx, state, grouping[1], done)
        return
    state.model = SocietyModel(scenario=scenario, personas=agents, graph=graph,
                               llm=ctx.caller, run_id=run_id, seed=config.run_seed,
                               runner=ctx.run, world=state.world, chunk_size=config.chunk_size,
                               archetypes=grouping,
                               archetype_sample=archetype_sample_size(elicit),
                               survey_answerers=state.profiles)
    state.indexes = IndexesByKind(max_items=scenario.duplicate_window,
                                  texts=store.emission_texts(con))
    if done:
        runner.restore_model(con, state.model, run_id, done, state.indexes)
        state.model.next_event_index, state.model.next_intervention_index = \
            store.next_indexes(con, run_id, state.model.next_event_index,
                               state.model.next_intervention_index)
    state.committed = ctx.done_before = done
    if state.heap is not None:
        state.heap.settle()


def _columns_society(ctx: JobContext[RunConfig], state: RunState, representatives: list[str],
                     done: int) -> None:
    """Start the run's column society at step ``done`` (its agents are in the database)."""
    config, scenario = ctx.config, state.scenario_now
    state.indexes = IndexesByKind(max_items=scenario.duplicate_window,
                                  texts=store.emission_texts(ctx.con))
    state.model = population_setup.column_society(
        ctx.con, run_id=ctx.job_id, scenario=scenario, representatives=representatives,
        done=done, db=ctx.db, llm=ctx.caller, seed=config.run_seed, world=state.world,
        indexes=state.indexes, chunk_size=config.chunk_size, shards=config.shards,
        ray_workers=config.ray_workers if config.executor == "ray" else None, held=state.held)
    state.committed = ctx.done_before = done
    if state.heap is not None:
        state.heap.settle()
def _profile_flag(config: RunConfig, survey_id: str) -> str:
    """How a refusal names where a survey's profile came from."""
    return "--survey-profile" if config.survey_profile else f"survey {survey_id!r}: profile"


def _profiles(con: duckdb.DuckDBPyConnection, scenario: Scenario,
              given: str | None) -> dict[str, SurveyProfile]:
    """Return the survey profile answering each choice survey, by survey id (--survey-profile: every
    choice survey's; else the surveys' own profile field); an unknown or unfitted one is refused.
    """
    loaded: dict[str, SurveyProfile] = {}
    out = {}
    for survey in scenario.surveys:
        job_id = given if given is not None and survey.answer == "choice" else survey.profile
        if job_id is None:
            continue
        flag = "--survey-profile" if given is not None else f"survey {survey.id!r}: profile"
        if job_id not in loaded:
            loaded[job_id] = load_profile(con, job_id, flag)
        out[survey.id] = loaded[job_id]
    if given is not None and not out:
        raise UsageError(f"--survey-profile {given}: the scenario has no choice survey to answer")
    return out


def _setup(ctx: JobContext[RunConfig], scenario: Scenario, personas: list[Persona]) -> tuple[str, ...]:
    """Acquaintance links, then the setup expansion; the personas it reached."""
    runner.link_acquaintances(ctx.con, scenario, personas, ctx.config.run_seed)
    if not scenario.graph.hops:
        return ()
    return _expand(ctx, [p.persona_id for p in personas])


def _expand(ctx: JobContext[RunConfig], start_ids: list[str]) -> tuple[str, ...]:
    """Run the setup expansion, a child job of the run; its stops are the run's, resumed with it."""
    growth = _state(ctx).scenario_now.graph
    children = list_jobs(ctx.con, kind="expansion", parent_id=ctx.job_id)
    previous = children[0].job_id if children else None
    config = ExpandConfig(start_ids=tuple(start_ids), hops=growth.hops, fanout=growth.fanout,
                          origin="run", stop_on_failure=True,
                          rejections_stop=growth.stop_on_rejected, llm=ctx.config.llm,
                          seed=ctx.config.run_seed, max_failed_share=ctx.config.max_failed_share)
    try:
        result = ctx.run_child(EXPANSION, config, resume=previous)
    except ExpansionIncomplete as exc:
        error = call_log.most_common_error_in(ctx.con, ctx.job_id, purpose="expand")
        raise ResumableStop(f"setup: {exc.failed} of {exc.asked} expansion calls failed (most "
                            f"often: {error}); resume with "
                            f"{RUN.resume_hint(ctx.job_id, ctx.db)}") from None
    except PersonahubError as exc:  # name the run's resume command, not the child's
        text, hint, _ = str(exc).partition(_CHILD_HINT)
        if not hint:
            raise
        raise ResumableStop(f"setup: {text}") from None
    return tuple(result.summary.reached_ids)


_CHILD_HINT = "; resume with personahub personas expand --resume "


RUN = register(RunSpec())

"""Run a scenario end to end: personas → graph → Mesa steps → DuckDB run log.

Order of work, each part committed before the next starts: import the scenario's personas,
record the run, link acquaintances, expand persona-to-persona, record the agents and the run's
starting graph, then one transaction per step. A failure at any point marks the run ``failed``
(or ``interrupted``) with its error and leaves every committed step in place.

Setup is a committed phase too: the expansion is recorded under the run (``expansions.run_id``)
batch by batch, so a resume before the agents are recorded continues that expansion from its
frontier instead of starting another, and a frontier persona whose call failed twice stops the
setup (resumable) rather than leaving the society smaller than the scenario asks.

``resume_run`` continues a run that stopped (failed, interrupted, or killed outright) from its
last committed step. Each step's transaction holds a checkpoint of every agent whose state
changed (``agent_states``), so resuming means: check the scenario file's SHA-256 against the
one recorded at the start (a changed or missing file is refused before it is executed), reload
the scenario and options from ``runs``, rebuild the agents (``run_agents``) and the graph
(``run_edges`` plus the edge interventions already applied), load each agent's latest
checkpoint, rebuild the near-duplicate indexes from the run's emissions, set Mesa's step
counter, and go on. Everything random derives from (seed, step, persona), so the resumed steps
equal those of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personahub.agents.llm.adaptive_limit import Concurrency
from personahub.agents.llm.cache import attach_cache, check_replay_cache
from personahub.agents.llm.client import LLMClient, LLMSettings, check_reachable, redact_spec
from personahub.agents.llm.client import make_client as make_llm_client
from personahub.agents.llm.generation import Generation
from personahub.agents.llm.settings import parse_concurrency
from personahub.agents.llm.structured import check_setting
from personahub.analysis.kept import kept_lines
from personahub.core.commit import ProgressHook
from personahub.core.contracts import StructuredCaller
from personahub.core.errors import PersonahubError, ResumableStop
from personahub.core.failures import (
    DEFAULT_MAX_FAILED_SHARE,
    ModelRejected,
    batch_failure,
    check_max_failed_share,
)
from personahub.core.interrupts import Stopped, interrupts_from_queries, signal_name
from personahub.core.jobs_store import find_job, list_jobs, mark_running
from personahub.core.kernel import check_cache_mode
from personahub.core.loop import JobLoop
from personahub.core.store import DEFAULT_DB, connect, transaction
from personahub.core.validate import (
    check_int,
    check_number,
    check_optional_number,
    check_seed,
)
from personahub.personas.expand import ExpansionIncomplete, expand_hub
from personahub.personas.graph import SocialEdges, save_links, small_world_arrays, social_edges
from personahub.personas.importers import iter_personas
from personahub.personas.near_dup import IndexesByKind
from personahub.personas.quality import rejected_counts
from personahub.personas.record import Persona
from personahub.personas.sampling import draw
from personahub.personas.store import fetch_personas, upsert_personas
from personahub.sim.executors import check_executor
from personahub.sim.heap import RunHeap
from personahub.sim.runlog import RunLog
from personahub.sim.scenario import (
    Scenario,
    check_references,
    check_steps,
    load_scenario,
    raised_text,
    scenario_frame,
)
from personahub.sim.society import SocietyModel, StepResult


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Command-line overrides of a scenario (None keeps the scenario's value)."""

    db: Path = Path(DEFAULT_DB)
    steps: int | None = None
    seed: int | None = None
    llm: str = "offline"
    concurrency: Concurrency = 16
    timeout_s: float = 60.0
    max_retries: int = 8  # agents.llm.settings.DEFAULT_MAX_RETRIES
    chunk_size: int = 128
    offline_latency_s: float = 0.0
    cache: str = "off"  # off | record | replay (agents/llm/cache.py)
    rps: float | None = None  # model requests per second, all endpoints together
    price_in: float | None = None  # USD per 1M input tokens (cost in v_run_cost)
    price_out: float | None = None  # USD per 1M output tokens
    structured: str = "auto"  # how the schema is asked for (agents/llm/structured.py)
    max_tokens: int | None = None  # None: per output kind (agents/llm/generation.py)
    temperature: float | None = None
    top_p: float | None = None
    # where the model calls run (sim/executors/__init__.py): the caller's choice, not the run's (a
    # resume does not inherit it); the tables are the same either way
    executor: str = "local"
    ray_address: str | None = None  # None: RAY_ADDRESS, else a local Ray started for the run
    ray_workers: int | None = None  # Ray actors asking the model; None: one per cluster CPU
    # a step whose failed share passes this (and has >= 5 actions) stops the run (agents.failures)
    max_failed_share: float = DEFAULT_MAX_FAILED_SHARE

    def __post_init__(self) -> None:
        check_executor(self.executor, cache=self.cache, workers=self.ray_workers,
                       cache_on_driver=True)
        check_max_failed_share(self.max_failed_share)
        object.__setattr__(self, "concurrency", parse_concurrency(self.concurrency))
        check_setting(self.structured)
        Generation(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)
        check_number(self.offline_latency_s, "--offline-latency", low=0)
        check_number(self.timeout_s, "--timeout", above=0)
        check_cache_mode(self.cache)
        check_optional_number(self.rps, "--rps", above=0)
        check_optional_number(self.price_in, "--price-in", low=0)
        check_optional_number(self.price_out, "--price-out", low=0)
        if self.seed is not None:
            check_seed(self.seed)
        if self.steps is not None:
            check_int(self.steps, "--steps", low=1)
        check_int(self.chunk_size, "chunk size", low=1)
        check_int(self.max_retries, "max retries", low=0)


@dataclass
class RunSummary:
    """What a run did, for the console and for tests."""

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
    # quality-gate rejects by reason: the run's emissions and the personas its expansion refused
    rejected: dict[str, int] = field(default_factory=dict)
    prompt_tokens_per_action: float | None = None  # mean tokens_in of answered step calls
    # prefix cache: (cached, prompt) tokens of the attempts whose server reported reuse (None: no
    # attempt did), and the share of this invocation's prompts in a shared prefix (estimated)
    prefix_reused: tuple[int, int] | None = None
    prefix_estimated: float | None = None
    wall_s: float = 0.0
    kept: list[str] = field(default_factory=list)  # the kept share per kind, in plain words


StartHook = Callable[[str], None]


def new_run_id() -> str:
    """A fresh run id: UTC time plus random suffix (sortable, unique)."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def load_scenario_personas(scenario: Scenario, db: Path | str | None = None,
                           con: Any = None) -> list[Persona]:
    """The scenario's personas: from its source file (at most ``limit``, in file order), or a
    seeded sample of the hub (``PersonaSource(path="hub")``: the run's database ``db``, read
    through ``con`` when the run has it open; ``hub=FILE``: that database)."""
    if scenario.personas.from_hub:
        return _hub_personas(scenario, db, con)
    stream = iter_personas(scenario.persona_path(), fmt=scenario.personas.fmt)
    personas = list(itertools.islice(stream, scenario.personas.limit))
    unique = list({p.persona_id: p for p in reversed(personas)}.values())[::-1]
    if not unique:
        raise PersonahubError(f"scenario {scenario.name}: no personas in {scenario.persona_path()}")
    return unique


def _hub_personas(scenario: Scenario, db: Path | str | None, con: Any) -> list[Persona]:
    source = scenario.personas
    prefix = f"scenario {scenario.name}: personas"
    path = scenario.resolve(source.hub) if source.hub else (Path(db) if db is not None else None)
    if path is None:
        raise PersonahubError(f"{prefix}.path='hub' samples the run's database; give --db")
    if con is not None and db is not None and path.resolve() != Path(db).resolve():
        con = None  # another database than the open one
    if con is None and not path.exists():
        field_name = "hub" if source.hub else "path='hub'"
        raise PersonahubError(f"{prefix}.{field_name}: no database at {path} (import personas "
                              "into it first: personahub personas import FILE --db ...)")
    own = con is None
    hub = connect(path, read_only=True) if own else con
    try:
        return draw(hub, source.query(), source.limit, seed=source.seed)
    except PersonahubError as exc:
        raise PersonahubError(f"{prefix} from {path}: {exc}") from None
    finally:
        if own:
            hub.close()


def save_acquaintances(con: Any, ids: list[str], k: int, rewire: float, seed: int,
                       source: str) -> int:
    """Store seeded small-world links among ``ids`` (Watts-Strogatz; k neighbours each) as
    ``acquaintance`` relations; returns how many were offered."""
    near, far = small_world_arrays(len(ids), k, rewire, seed)
    return save_links(con, ids, near, far, relation="acquaintance", hop=0, source=source)


# options that say where this process runs the calls, not what the run is: not stored, so a
# resume takes its own (``resume_run``'s arguments)
RUN_LOCAL_OPTIONS = ("executor", "ray_address", "ray_workers")


def _config(scenario: Scenario, options: RunOptions, seed: int, steps: int) -> dict[str, Any]:
    """The run's configuration as stored in ``runs.config``: no secrets, spec redacted.

    ``scenario_file`` (absolute) and ``options`` are what ``resume_run`` reloads;
    ``scenario_sha256`` is what it checks the file against before executing it again.
    """
    scenario_fields = json.loads(json.dumps(asdict(scenario), default=str))
    opts = {k: v for k, v in asdict(options).items() if k not in RUN_LOCAL_OPTIONS}
    opts["db"] = str(options.db)
    opts["llm"] = redact_spec(options.llm)
    return {"scenario": scenario_fields, "options": opts, "seed": seed, "steps": steps,
            "scenario_file": str(scenario.source) if scenario.source else None,
            "scenario_sha256": scenario_digest(scenario.source) if scenario.source else None}


def scenario_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a scenario file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def verified_scenario_file(run_id: str, config: dict[str, Any], scenario_path: str | None) -> Path:
    """The run's scenario file, if its bytes are the ones the run started with.

    Checked before the file is executed: resuming with an edited scenario would mix two versions
    in one run (the events of the new text, the config of the old), and a ``runs`` row alone is
    no reason to run whatever file it names.
    """
    source = config.get("scenario_file") or scenario_path
    if not source:
        raise PersonahubError(f"--resume {run_id}: the run does not record its scenario file")
    recorded = config.get("scenario_sha256")
    if not recorded:
        raise PersonahubError(f"--resume {run_id}: the run does not record the sha256 of its scenario "
                              f"file {source} (started by an older personahub), so the file cannot "
                              "be checked; start a new run")
    path = Path(source)
    try:
        current = scenario_digest(path)
    except OSError:
        raise PersonahubError(f"scenario file {path} is missing since run {run_id} started "
                              f"(sha256 {recorded[:12]}); restore it or start a new run") from None
    if current != recorded:
        raise PersonahubError(f"scenario file {path} changed since run {run_id} started (sha256 "
                              f"{recorded[:12]}, now {current[:12]}); restore it or start a new run")
    return path


def client_for_run(options: RunOptions, seed: int) -> LLMClient:
    """The model client a run uses (offline latency applies to the offline engine only); a thin
    shim over ``agents.llm.make_client``, the project's one client factory."""
    client = make_llm_client(LLMSettings(spec=options.llm, seed=seed, timeout_s=options.timeout_s,
                                         concurrency=options.concurrency,
                                         max_retries=options.max_retries,
                                         offline_latency_s=options.offline_latency_s, rps=options.rps,
                                         structured=options.structured,  # type: ignore[arg-type]
                                         max_tokens=options.max_tokens,
                                         temperature=options.temperature, top_p=options.top_p))
    if options.cache != "replay":  # a replay calls no model
        check_reachable(client)
    return client


def run_scenario(
    scenario: Scenario,
    options: RunOptions,
    *,
    scenario_path: str = "",
    progress: ProgressHook | None = None,
    client: StructuredCaller | None = None,
    on_ready: Callable[[], None] | None = None,
    on_start: StartHook | None = None,
) -> RunSummary:
    """Run ``scenario`` with ``options``; returns the summary or raises PersonahubError.

    Everything that can be checked without a model is checked before anything is written
    (persona file, references, world file, the cache of a replay, then the database file
    itself); ``on_ready`` is called then, so a command announces a run only once its input is
    known to be good. ``on_start(run_id)`` is called once the run is recorded, so a command can
    name the run before anything else happens (it is the key to resume it).
    """
    started = time.perf_counter()
    seed = scenario.seed if options.seed is None else options.seed
    steps = options.steps or scenario.steps
    client = client or client_for_run(options, seed)
    _check_executor_client(options, client)
    with RunHeap() as heap:
        personas = load_scenario_personas(scenario, options.db)  # read before writing the db
        check_steps(scenario)  # load_scenario checks it too; a Scenario built in code may not
        check_references(scenario, personas)
        scenario.world_text()  # a missing world file fails here, not after setup
        if options.cache == "replay":
            check_replay_cache(options.db, client.cache_model)
        con = connect(options.db)  # a damaged or foreign file is refused here, unchanged
        run_id = new_run_id()
        log = RunLog(con, run_id, client)
        try:
            if on_ready is not None:
                on_ready()
            with transaction(con):
                upsert_personas(con, personas)
            log.start(scenario=scenario.name,
                      scenario_path=scenario_path or str(scenario.source or ""), seed=seed,
                      llm=client.label, config=_config(scenario, options, seed, steps),
                      steps_planned=steps)
            return _drive(con, log, client, scenario, options, seed, steps, progress, started,
                          personas=personas, heap=heap, on_start=on_start)
        finally:
            con.close()


def resume_run(
    run_id: str,
    *,
    db: Path,
    llm: str | None = None,
    offline_latency_s: float = 0.0,
    progress: ProgressHook | None = None,
    client: StructuredCaller | None = None,
    on_ready: Callable[[], None] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_workers: int | None = None,
    max_failed_share: float | None = None,
) -> RunSummary:
    """Continue run ``run_id`` in ``db`` from its last committed step (see the module doc).
    ``max_failed_share`` replaces the run's stored one (None keeps it).

    ``llm`` replaces the recorded (redacted) model spec; the offline latency is not carried over,
    nor is where the calls ran (``executor``, ``ray_address``, ``ray_workers``: this call's).
    ``on_ready`` is called once the run, its scenario and the model are found good, before the
    run is marked running again.
    """
    started = time.perf_counter()
    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database")
    con = connect(db)
    try:
        job = find_job(con, run_id)
        rows = con.execute("SELECT steps_planned, scenario_path FROM runs WHERE run_id = ?",
                           [run_id]).fetchall()
        if job is None or job.kind != "run" or not rows:
            raise PersonahubError(f"--resume {run_id}: no such run in {db}")
        steps, scenario_path = rows[0]
        if job.status == "finished":
            raise PersonahubError(f"--resume {run_id}: the run already finished")
        seed, config = int(job.seed or config_seed(job.config)), job.config
        scenario = load_scenario(verified_scenario_file(run_id, config, scenario_path))
        known = {f.name for f in dataclasses.fields(RunOptions)}
        opts = {k: v for k, v in (config.get("options") or {}).items() if k in known}
        opts.update(db=Path(db), seed=seed, steps=steps, offline_latency_s=offline_latency_s,
                    executor=executor, ray_address=ray_address, ray_workers=ray_workers)
        if llm is not None:
            opts["llm"] = llm
        if max_failed_share is not None:
            opts["max_failed_share"] = max_failed_share
        options = RunOptions(**opts)
        client = client or client_for_run(options, seed)
        _check_executor_client(options, client)
        if on_ready is not None:
            on_ready()
        log = RunLog(con, run_id, client)
        mark_running(con, run_id)
        has_agents = con.execute("SELECT count(*) FROM run_agents WHERE run_id = ?",
                                 [run_id]).fetchall()[0][0] > 0
        with RunHeap() as heap:
            personas = None if has_agents else load_scenario_personas(scenario, db, con)
            return _drive(con, log, client, scenario, options, seed, steps, progress, started,
                          personas=personas, heap=heap)
    finally:
        con.close()


def config_seed(config: dict[str, Any]) -> int:
    """The seed a run's stored configuration names (0 when it names none)."""
    return int(config.get("seed") or 0)


def _drive(con: Any, log: RunLog, client: StructuredCaller, scenario: Scenario, options: RunOptions,
           seed: int, steps: int, progress: ProgressHook | None, started: float, *,
           personas: list[Persona] | None, heap: RunHeap,
           on_start: StartHook | None = None) -> RunSummary:
    """Set up (or restore) the society, run the remaining steps, mark the run's outcome.

    An interrupt (Ctrl-C, or SIGTERM via ``sim.interrupts``) marks the run ``interrupted`` and
    becomes ``Stopped``, whose message names the run and how to resume it.
    """
    run_id = log.run_id
    job_loop = JobLoop()  # the one event loop of the run's setup and steps
    job_loop.watch(getattr(client, "liveness", None))  # calls that stop completing stop the run
    loop = job_loop.loop
    try:
        try:
            try:
                with interrupts_from_queries(), _calls_on(client, options, run_id) as caller:
                    if on_start is not None:
                        on_start(run_id)
                    attach_cache(con, caller, options.cache)  # fresh and resumed runs alike
                    summary = _simulate(con, log, loop, caller, scenario, options, personas,
                                        scenario.world_text(), seed, steps, progress, heap)
            finally:
                log.merge_config({"structured_modes": client.structured_modes(),
                                  "concurrency_limit": client.concurrency_report()})
        except KeyboardInterrupt as exc:
            how = signal_name(exc)
            log.finish("interrupted", f"interrupted by {how}")
            raise Stopped(f"run {run_id} interrupted by {how} after step {_steps_done(con, run_id)}; "
                          f"resume with personahub run --resume {run_id} --db {options.db}",
                          exc) from None
        except BaseException as exc:  # noqa: BLE001 - also sys.exit in scenario functions
            log.finish("failed", f"{type(exc).__name__}: {exc}"[:1000])
            if isinstance(exc, ResumableStop) and f"--resume {run_id}" not in str(exc):
                raise PersonahubError(f"run {run_id} stopped: {exc}; resume with personahub run "
                                      f"--resume {run_id} --db {options.db}") from None
            if isinstance(exc, PersonahubError):
                raise
            where = scenario_frame(exc)
            what = (f"{where}: scenario code {raised_text(exc)}" if where
                    else f"{type(exc).__name__}: {exc}")
            raise PersonahubError(f"run {run_id} failed at step "
                                  f"{_steps_done(con, run_id) + 1}: {what}") from exc
        log.finish("finished")
        summary.wall_s = time.perf_counter() - started
        return summary
    finally:
        job_loop.close()


def _check_executor_client(options: RunOptions, client: StructuredCaller) -> None:
    """Refuse, before the run is recorded, a client Ray workers cannot rebuild."""
    if options.executor == "ray":
        from personahub.sim.executors.ray_actors import check_run_client

        check_run_client(client)


def _calls_on(client: StructuredCaller, options: RunOptions,
              run_id: str) -> AbstractContextManager[StructuredCaller]:
    """The caller the run's steps use: ``client`` itself, or a pool of Ray actors built from it
    (``sim.executor_ray_run``) for as long as the run lasts."""
    if options.executor != "ray":
        return nullcontext(client)
    from personahub.sim.executors.ray_actors import ray_caller

    return ray_caller(client, address=options.ray_address, workers=options.ray_workers,
                      run_id=run_id)


def _steps_done(con: Any, run_id: str) -> int:
    rows = con.execute("SELECT steps_done FROM runs WHERE run_id = ?", [run_id]).fetchall()
    return int(rows[0][0] or 0) if rows else 0


def _build_society(con: Any, log: RunLog, loop: asyncio.AbstractEventLoop, client: StructuredCaller,
                   scenario: Scenario, personas: list[Persona], seed: int,
                   progress: ProgressHook | None, db: Path,
                   max_failed_share: float = DEFAULT_MAX_FAILED_SHARE,
                   ) -> tuple[list[Persona], SocialEdges]:
    """Link acquaintances, expand, and record the agents and the starting graph."""
    start_ids = [p.persona_id for p in personas]
    growth = scenario.graph
    with transaction(con):
        save_acquaintances(con, start_ids, growth.acquaintances, growth.rewire, seed,
                           f"scenario:{scenario.name}")
    reached: tuple[str, ...] = ()
    if growth.hops:
        # a resume goes on with the expansion this run started (there is one at most)
        children = list_jobs(con, kind="expansion", parent_id=log.run_id)
        previous = children[0].job_id if children else None
        try:
            expansion = loop.run_until_complete(expand_hub(
                con, client, start_ids=start_ids, hops=growth.hops, fanout=growth.fanout,
                run_id=log.run_id, resume=previous, stop_on_failure=True,
                progress=progress, max_failed_share=max_failed_share,
            ))
        except ExpansionIncomplete as exc:
            raise PersonahubError(
                f"setup: {exc.failed} of {exc.asked} expansion calls failed (most often: "
                f"{most_common_error_in(con, log.run_id, purpose='expand')}); resume with "
                f"personahub run --resume {log.run_id} --db {db}") from None
        reached = expansion.reached_ids
    agent_ids = list(dict.fromkeys([*start_ids, *reached]))
    if len(agent_ids) == len(personas):  # no one reached: the agents are the personas, in order
        agents = list(personas)
    else:
        known = set(start_ids)
        extra = {p.persona_id: p
                 for p in fetch_personas(con, [i for i in agent_ids if i not in known])}
        by_id = {**{p.persona_id: p for p in personas}, **extra}
        agents = [by_id[i] for i in agent_ids]
    graph = social_edges(con, agent_ids)
    # agent ids are Mesa's creation order: 1, 2, ... in persona order
    log.add_agents(graph.ids, np.arange(1, len(agents) + 1), graph.columns())
    return agents, graph


def _restore_society(con: Any, run_id: str) -> tuple[list[Persona], SocialEdges]:
    """The run's agents (in agent-id order) and its starting graph, as recorded."""
    ids = [r[0] for r in con.execute("SELECT persona_id FROM run_agents WHERE run_id = ? "
                                     "ORDER BY agent_id", [run_id]).fetchall()]
    by_id = {p.persona_id: p for p in fetch_personas(con, ids)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise PersonahubError(f"run {run_id}: personas {missing[:3]} are missing from the hub")
    # agent ids are 1..n in persona order, so agent_id - 1 is a persona's position in ``ids``
    found = con.execute("""
        SELECT a.agent_id - 1 AS pa, b.agent_id - 1 AS pb, e.relation AS r FROM run_edges e
        JOIN run_agents a ON a.run_id = e.run_id AND a.persona_id = e.src
        JOIN run_agents b ON b.run_id = e.run_id AND b.persona_id = e.dst
        WHERE e.run_id = ? ORDER BY e.src, e.dst""", [run_id]).fetchnumpy()
    edges = SocialEdges.from_positions(ids, np.asarray(found["pa"]), np.asarray(found["pb"]),
                                       [None if r is None else str(r) for r in found["r"].tolist()])
    return [by_id[i] for i in ids], edges


_RESTORE_CHUNK = 100_000  # emissions read at a time while the near-duplicate indexes are rebuilt


def _restore_model(con: Any, model: SocietyModel, run_id: str, done: int,
                   indexes: IndexesByKind) -> None:
    """Bring a fresh model to the end of committed step ``done``."""
    edges = con.execute("SELECT action, persona_id, other_persona_id, relation FROM interventions "
                        "WHERE run_id = ? AND step <= ? AND applied AND action IN "
                        "('add_edge', 'remove_edge') ORDER BY step, intervention_index",
                        [run_id, done]).fetchall()
    for action, a, b, relation in edges:
        model.change_edge(action, a, b, relation)
    states = con.execute("SELECT agent_id, arg_max(state, step) FROM agent_states "
                         "WHERE run_id = ? AND step <= ? GROUP BY agent_id", [run_id, done]).fetchall()
    model.restore(done, {int(a): json.loads(s) for a, s in states})
    result = con.execute("SELECT emission_id, kind, text FROM emissions WHERE run_id = ? "
                         "AND step <= ? AND NOT is_duplicate ORDER BY step, agent_id", [run_id, done])
    while rows := result.fetchmany(_RESTORE_CHUNK):  # kept emissions, in the order they were indexed
        by_kind: dict[str, list[tuple[str, str]]] = {}
        for emission_id, kind, text in rows:
            by_kind.setdefault(kind, []).append((emission_id, text))
        for kind, items in by_kind.items():
            indexes[kind].add_many(items)


def _simulate(con: Any, log: RunLog, loop: asyncio.AbstractEventLoop, client: StructuredCaller,
              scenario: Scenario, options: RunOptions, personas: list[Persona] | None, world: str,
              seed: int, steps: int, progress: ProgressHook | None, heap: RunHeap) -> RunSummary:
    run_id = log.run_id
    if personas is not None:
        agents, graph = _build_society(con, log, loop, client, scenario, personas, seed, progress,
                                       options.db, options.max_failed_share)
        done = 0
    else:
        agents, graph = _restore_society(con, run_id)
        done = _steps_done(con, run_id)
    edges = len(graph)
    model = SocietyModel(scenario=scenario, personas=agents, graph=graph, llm=client,
                         run_id=run_id, seed=seed, runner=loop.run_until_complete,
                         world=world, chunk_size=options.chunk_size)
    assert [a.unique_id for a in model.ordered] == list(range(1, len(agents) + 1))
    indexes = IndexesByKind(max_items=scenario.duplicate_window, texts=_emission_texts(con))
    if done:
        _restore_model(con, model, run_id, done, indexes)
    heap.settle()  # the society is built: out of the collector's sight (sim/heap.py)
    for _ in range(done, steps):
        step_started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        model.step()
        result = model.last_result
        assert result is not None
        duplicates = _flag_duplicates(result, indexes)
        log.write_step(result, duplicates, step_started, model=client.label)
        heap.settle()
        if progress:
            progress("step", result.step, steps)
        reason = batch_failure(f"step {result.step}", result.n_active,
                               [error for _, error in result.failures], result.records,
                               options.max_failed_share)
        if reason is not None:  # the step is committed: the run stops resumable
            raise ModelRejected(f"run {run_id} stopped: {reason}; resume with "
                                f"personahub run --resume {run_id} --db {options.db}")
    summary = _summary(con, run_id, scenario, options, client, len(agents), edges)
    if summary.failed_actions and not summary.emissions_by_kind and not summary.answers:
        raise ModelRejected(f"run {run_id}: every one of its {summary.failed_actions} actions failed "
                            f"(most often: {most_common_error_in(con, run_id)}); resume with "
                            f"personahub run --resume {run_id} --db {options.db}")
    return summary


def _summary(con: Any, run_id: str, scenario: Scenario, options: RunOptions, client: StructuredCaller,
             agents: int, edges: int) -> RunSummary:
    """The run's totals, read back from the database (whole run, resumed or not)."""
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return con.execute(sql, [run_id]).fetchall()

    kinds = rows("SELECT kind, count(*) FROM emissions WHERE run_id = ? GROUP BY 1 ORDER BY 1")
    steps, failed = rows("SELECT coalesce(max(step), 0), coalesce(sum(n_failed), 0) FROM steps "
                         "WHERE run_id = ?")[0]
    summary = RunSummary(run_id=run_id, scenario=scenario.name, db=options.db, engine=client.label,
                         offline=client.is_offline, agents=agents, edges=edges, steps=int(steps))
    summary.emissions_by_kind = {k: int(n) for k, n in kinds}
    summary.duplicates = int(rows("SELECT count(*) FROM emissions WHERE run_id = ? AND is_duplicate")[0][0])
    summary.messages = int(rows("SELECT count(*) FROM messages WHERE run_id = ?")[0][0])
    summary.answers = int(rows("SELECT count(*) FROM survey_answers WHERE run_id = ?")[0][0])
    summary.events = int(rows("SELECT count(*) FROM events WHERE run_id = ?")[0][0])
    summary.failed_actions = int(failed)
    summary.rejected = rejected_counts(con, run_id=run_id)
    calls = rows("SELECT status, count(*) FROM llm_calls WHERE run_id = ? GROUP BY 1 ORDER BY 1")
    summary.calls = {status: n for status, n in calls}
    summary.prompt_tokens_per_action = _prompt_tokens_per_action(con, run_id)
    summary.kept = kept_lines(con, run_id=run_id)
    summary.prefix_reused = prefix_reused(con, run_id)
    summary.prefix_estimated = estimated_prefix_share(client.endpoints)
    return summary


def prefix_reused(con: Any, run_id: str) -> tuple[int, int] | None:
    """(cached, prompt) tokens over the run's own attempts (its steps and its persona expansion,
    not a later judge or interview) whose server reported prefix-cache reuse
    (``llm_calls.cached_prompt_tokens``); None when none did."""
    cached, prompt = con.execute(
        "SELECT sum(cached_prompt_tokens), sum(tokens_in) FROM llm_calls WHERE run_id = ? AND "
        "cached_prompt_tokens IS NOT NULL AND coalesce(job_kind, 'run') IN ('run', 'expansion')",
        [run_id]).fetchall()[0]
    return None if prompt is None else (int(cached), int(prompt))


def most_common_error_in(con: Any, run_id: str, *, purpose: str | None = None) -> str:
    """The most frequent error of a run's failed model calls (for the one-line stop message),
    of calls for ``purpose`` only when given."""
    rows = con.execute("SELECT error, count(*) AS n FROM llm_calls WHERE run_id = ? AND status <> 'ok' "
                       "AND error IS NOT NULL AND (? IS NULL OR purpose = ?) "
                       "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1",
                       [run_id, purpose, purpose]).fetchall()
    return str(rows[0][0])[:160] if rows else "no model call succeeded"


def estimated_prefix_share(endpoints: Sequence[Any]) -> float | None:
    """The share of prompt tokens the endpoints sent in a prefix shared with a recent prompt
    (``HttpEndpoint.prompt_prefix``); None for endpoints that do not estimate it (offline)."""
    meters = [m for m in (getattr(e, "prompt_prefix", None) for e in endpoints) if m is not None]
    total = sum(m.total_tokens for m in meters)
    return sum(m.shared_tokens for m in meters) / total if total else None


def _prompt_tokens_per_action(con: Any, run_id: str) -> float | None:
    """Mean prompt tokens of the run's answered actions and survey questions (None if unknown).

    One ``ok`` attempt answers each action (a repaired answer's ``ok`` attempt carries the
    repair prompt); calls outside steps (persona expansion) are left out. Offline runs count
    4 characters a token, as the offline engine does.
    """
    mean = con.execute("SELECT avg(tokens_in) FROM llm_calls WHERE run_id = ? AND status = 'ok' "
                       "AND step IS NOT NULL", [run_id]).fetchall()[0][0]
    return None if mean is None else float(mean)


def _emission_texts(con: Any) -> Callable[[Sequence[str]], list[str]]:
    """Committed emissions' texts by id: what the indexes read back instead of keeping
    every signature (personas/near_dup.py)."""
    def read(ids: Sequence[str]) -> list[str]:
        found: dict[str, str] = {}
        for lo in range(0, len(ids), 1000):  # constants: a filter in the scan, not a join
            part = list(ids[lo : lo + 1000])
            found.update(con.execute("SELECT emission_id, text FROM emissions WHERE emission_id "
                                     f"IN ({', '.join('?' * len(part))})", part).fetchall())
        return [found[i] for i in ids]
    return read


def _flag_duplicates(result: StepResult, indexes: IndexesByKind) -> dict[str, str | None]:
    """Per-kind MinHash near-duplicate flags, in agent-id order (earliest emission kept)."""
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for emission in result.emissions:  # agent-id order within each kind
        by_kind.setdefault(emission.kind, []).append((emission.emission_id, emission.text))
    flags: dict[str, str | None] = {}
    for kind, items in by_kind.items():
        flags.update(zip((key for key, _ in items), indexes[kind].check_and_add_many(items),
                         strict=True))
    return flags

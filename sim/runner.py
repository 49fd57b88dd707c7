"""Run a scenario end to end: personas → graph → Mesa steps → DuckDB run log.

Order of work, each part committed before the next starts: import the scenario's personas,
record the run, link acquaintances, expand persona-to-persona, then one transaction per step.
A failure at any point marks the run ``failed`` (or ``interrupted``) with its error and leaves
every committed step in place.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from agents.cache import CACHE_MODES, ResponseCache
from agents.llm import LLMClient, LLMSettings, check_reachable, redact_spec
from personas.errors import PersonahubError
from personas.expand import expand_hub
from personas.graph import Relation, load_graph, save_relations, social_view
from personas.importers import iter_personas
from personas.near_dup import NearDuplicateIndex
from personas.record import Persona
from personas.store import DEFAULT_DB, connect, fetch_personas, transaction, upsert_personas
from sim.runlog import RunLog
from sim.scenario import Scenario
from sim.society import SocietyModel, StepResult


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Command-line overrides of a scenario (None keeps the scenario's value)."""

    db: Path = Path(DEFAULT_DB)
    steps: int | None = None
    seed: int | None = None
    llm: str = "offline"
    concurrency: int = 16
    timeout_s: float = 60.0
    max_retries: int = 3
    chunk_size: int = 128
    cache: str = "off"  # off | record | replay (agents/cache.py)
    rps: float | None = None  # model requests per second, all endpoints together
    price_in: float | None = None  # USD per 1M input tokens (cost in v_run_cost)
    price_out: float | None = None  # USD per 1M output tokens

    def __post_init__(self) -> None:
        if self.cache not in CACHE_MODES:
            raise PersonahubError(f"--cache {self.cache!r}: use one of {', '.join(CACHE_MODES)}")
        for name in ("rps", "price_in", "price_out"):
            value = getattr(self, name)
            if value is not None and (value < 0 or (name == "rps" and value == 0)):
                raise PersonahubError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.steps is not None and self.steps < 1:
            raise PersonahubError(f"--steps must be >= 1, got {self.steps}")
        if self.chunk_size < 1:
            raise PersonahubError(f"chunk size must be >= 1, got {self.chunk_size}")


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
    calls: dict[str, int] = field(default_factory=dict)
    failed_actions: int = 0
    wall_s: float = 0.0


ProgressHook = Callable[[str, int, int], None]


def new_run_id() -> str:
    """A fresh run id: UTC time plus random suffix (sortable, unique)."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def load_scenario_personas(scenario: Scenario) -> list[Persona]:
    """The scenario's personas from its source file (at most ``limit``), in file order."""
    stream = iter_personas(scenario.persona_path(), fmt=scenario.personas.fmt)
    personas = list(itertools.islice(stream, scenario.personas.limit))
    unique = list({p.persona_id: p for p in reversed(personas)}.values())[::-1]
    if not unique:
        raise PersonahubError(f"scenario {scenario.name}: no personas in {scenario.persona_path()}")
    return unique


def acquaintance_links(ids: list[str], k: int, rewire: float, seed: int,
                       source: str) -> list[Relation]:
    """Seeded small-world links among ``ids`` (Watts-Strogatz; k neighbours each)."""
    n = len(ids)
    if k < 2 or n < 3:
        return []
    k = min(k, n - 1)
    graph = nx.watts_strogatz_graph(n, k, rewire, seed=seed)
    return [Relation(ids[u], ids[v], "acquaintance", 0, source) for u, v in sorted(graph.edges())]


def _config(scenario: Scenario, options: RunOptions, seed: int, steps: int) -> dict[str, Any]:
    """The run's configuration as stored in ``runs.config``: no secrets, spec redacted."""
    scenario_fields = asdict(scenario)
    scenario_fields["base_dir"] = str(scenario.base_dir)
    scenario_fields["events"] = {str(k): list(v) for k, v in scenario.events.items()}
    opts = asdict(options)
    opts["db"] = str(options.db)
    opts["llm"] = redact_spec(options.llm)
    return {"scenario": scenario_fields, "options": opts, "seed": seed, "steps": steps}


def run_scenario(
    scenario: Scenario,
    options: RunOptions,
    *,
    scenario_path: str = "",
    progress: ProgressHook | None = None,
    client: LLMClient | None = None,
) -> RunSummary:
    """Run ``scenario`` with ``options``; returns the summary or raises PersonahubError."""
    started = time.perf_counter()
    seed = scenario.seed if options.seed is None else options.seed
    steps = options.steps or scenario.steps
    if client is None:
        client = LLMClient(LLMSettings(spec=options.llm, seed=seed, timeout_s=options.timeout_s,
                                       concurrency=options.concurrency,
                                       max_retries=options.max_retries, rps=options.rps))
        if options.cache != "replay":  # a replay calls no model
            check_reachable(client)
    world = scenario.world_text()
    personas = load_scenario_personas(scenario)  # read fully before touching the database
    con = connect(options.db)
    run_id = new_run_id()
    log = RunLog(con, run_id)
    loop = asyncio.new_event_loop()
    try:
        if options.cache != "off":
            client.use_cache(ResponseCache.load(con, options.cache, client.cache_model))  # type: ignore[arg-type]
        with transaction(con):
            upsert_personas(con, personas)
        log.start(scenario=scenario.name, scenario_path=scenario_path, seed=seed,
                  llm=client.label, config=_config(scenario, options, seed, steps),
                  steps_planned=steps)
        try:
            summary = _simulate(con, log, loop, client, scenario, options, personas, world,
                                seed, steps, progress)
        except KeyboardInterrupt:
            log.finish("interrupted", "interrupted by the user")
            raise
        except Exception as exc:
            log.finish("failed", f"{type(exc).__name__}: {exc}"[:1000])
            if isinstance(exc, PersonahubError):
                raise
            raise PersonahubError(f"run {run_id} failed at step "
                                  f"{_steps_done(con, run_id) + 1}: {type(exc).__name__}: {exc}") from exc
        log.finish("finished")
        summary.wall_s = time.perf_counter() - started
        return summary
    finally:
        loop.close()
        con.close()


def _steps_done(con: Any, run_id: str) -> int:
    rows = con.execute("SELECT steps_done FROM runs WHERE run_id = ?", [run_id]).fetchall()
    return int(rows[0][0] or 0) if rows else 0


def _simulate(con: Any, log: RunLog, loop: asyncio.AbstractEventLoop, client: LLMClient,
              scenario: Scenario, options: RunOptions, personas: list[Persona], world: str,
              seed: int, steps: int, progress: ProgressHook | None) -> RunSummary:
    start_ids = [p.persona_id for p in personas]
    growth = scenario.graph
    with transaction(con):
        save_relations(con, acquaintance_links(start_ids, growth.acquaintances, growth.rewire,
                                               seed, f"scenario:{scenario.name}"))
    reached: tuple[str, ...] = ()
    if growth.hops:
        expansion = loop.run_until_complete(expand_hub(
            con, client, start_ids=start_ids, hops=growth.hops, fanout=growth.fanout,
            run_id=log.run_id,
            progress=(lambda h, n: progress("expand", h, n)) if progress else None,
        ))
        reached = expansion.reached_ids
    agent_ids = list(dict.fromkeys([*start_ids, *reached]))
    agents = fetch_personas(con, agent_ids)
    order = {pid: i for i, pid in enumerate(agent_ids)}
    agents.sort(key=lambda p: order[p.persona_id])
    graph = social_view(load_graph(con, agent_ids))
    model = SocietyModel(scenario=scenario, personas=agents, graph=graph, llm=client,
                         run_id=log.run_id, seed=seed, runner=loop.run_until_complete,
                         world=world, chunk_size=options.chunk_size)
    log.add_agents([a.persona_id for a in model.ordered], [a.unique_id for a in model.ordered])
    indexes: dict[str, NearDuplicateIndex] = {}
    summary = RunSummary(run_id=log.run_id, scenario=scenario.name, db=options.db,
                         engine=client.label, offline=client.is_offline, agents=len(agents),
                         edges=graph.number_of_edges(), steps=0)
    kinds: Counter[str] = Counter()
    for _ in range(steps):
        step_started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        model.step()
        result = model.last_result
        assert result is not None
        duplicates = _flag_duplicates(result, indexes)
        log.write_step(result, duplicates, client.drain_records(), step_started, model=client.label,
                       cache_entries=getattr(client, "drain_cache_entries", list)())
        kinds.update(e.kind for e in result.emissions)
        summary.steps = result.step
        summary.duplicates += sum(v is not None for v in duplicates.values())
        summary.messages += len(result.messages)
        summary.failed_actions += len(result.failures)
        if progress:
            progress("step", result.step, steps)
    summary.emissions_by_kind = dict(sorted(kinds.items()))
    rows = con.execute("SELECT status, count(*) FROM llm_calls WHERE run_id = ? GROUP BY 1 ORDER BY 1",
                       [log.run_id]).fetchall()
    summary.calls = {status: n for status, n in rows}
    return summary


def _flag_duplicates(result: StepResult,
                     indexes: dict[str, NearDuplicateIndex]) -> dict[str, str | None]:
    """Per-kind MinHash near-duplicate flags, in agent-id order (earliest emission kept)."""
    flags: dict[str, str | None] = {}
    for emission in result.emissions:
        index = indexes.get(emission.kind)
        if index is None:
            index = indexes[emission.kind] = NearDuplicateIndex()
        flags[emission.emission_id] = index.check_and_add(emission.emission_id, emission.text)
    return flags

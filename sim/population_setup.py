"""Start a run's column society: export its agents, start its shards, bring it to a step.

The run's database holds the truth: the agents (and, on a resume, their latest states) are
exported from DuckDB to Parquet pieces in the run's job folder, a range of agent ids each (so the
driver's DuckDB holds one range at a time, whatever the population), and each shard, in this
process or on a Ray actor, reads its own range of them. Each step's shard files go to a folder
of their own, removed once the step is committed; a resume removes what an interrupted step left.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

import duckdb

from personahub.core.contracts import StructuredCaller
from personahub.executors.shards import job_folder
from personahub.personas.near_dup import IndexesByKind
from personahub.personas.store import fetch_personas
from personahub.sim import runner, store
from personahub.sim.column_society import ColumnSociety, LocalShards, Shards
from personahub.sim.population_load import load_shard, shard_ranges
from personahub.sim.scenario import AgentRef, Scenario
from personahub.tasks import addressed_kinds

POPULATION = "population"


def step_folder(db: str | Path, run_id: str, step: int) -> Path:
    """Return the folder a step's shard files are written to."""
    return job_folder(db, run_id) / f"step-{step}"


def clear_step(db: str | Path, run_id: str, step: int) -> None:
    """Remove a committed step's shard files."""
    shutil.rmtree(step_folder(db, run_id, step), ignore_errors=True)


def _clear_uncommitted(db: str | Path, run_id: str) -> None:
    """Remove every step folder an interrupted run left (its rows were never committed)."""
    root = job_folder(db, run_id)
    if root.is_dir():
        for path in root.glob("step-*"):
            shutil.rmtree(path, ignore_errors=True)


def _refs(con: duckdb.DuckDBPyConnection, run_id: str,
          scenario: Scenario) -> dict[AgentRef, tuple[int, str]]:
    """Return the agents the scenario names, by the names it uses."""
    named: list[AgentRef] = [x.target for x in scenario.interventions]
    for audience in [*(e.audience for e in scenario.scheduled_events),
                     *(s.audience for s in scenario.surveys)]:
        named += list(audience.personas)
    refs: dict[AgentRef, tuple[int, str]] = {}
    for ref in dict.fromkeys(named):
        found = (store.run_agent(con, run_id, agent_id=ref)
                 if isinstance(ref, int) and not isinstance(ref, bool)
                 else store.run_agent(con, run_id, persona_id=str(ref)))
        if found is not None:
            refs[ref] = found
    return refs


def column_society(con: duckdb.DuckDBPyConnection, *, run_id: str, scenario: Scenario,
                   representatives: list[str], done: int, db: str | Path,
                   llm: StructuredCaller, seed: int, world: str, indexes: IndexesByKind,
                   chunk_size: int, shards: int | None, ray_workers: int | None,
                   held: ExitStack) -> ColumnSociety:
    """Return the run's column society at the end of committed step ``done``.

    Args:
        representatives: each archetype's representative persona id.
        shards: how many shards (default: one locally, ``ray_workers`` or the cluster's CPUs
            on Ray).
        ray_workers: None for a local run; on Ray, the workers asked for (0: the CPUs).
        held: the run's stack; the Ray actors end with it.
    """
    _clear_uncommitted(db, run_id)
    folder = job_folder(db, run_id) / POPULATION
    agents_file = str(folder / "agents")
    states_file = str(folder / "states") if done else None
    addressed = set(scenario.tasks) & set(addressed_kinds())  # messages need the graph
    adjacency_file = str(folder / "adjacency") if addressed else None
    # the export's joins and sorts, and the scans that find the representatives' texts and the
    # agents the scenario names, spill or evict past one room at any N
    with store.bounded_pool(con, store.RUN_ROOM):
        agents = store.export_population(con, run_id, agents_file)
        if states_file is not None:
            store.export_states(con, run_id, done, agents, states_file)
        if adjacency_file is not None:
            store.export_adjacency(con, run_id, agents, adjacency_file)
        texts = {p.persona_id: p.text for p in fetch_personas(con, representatives)}
        refs = _refs(con, run_id, scenario)
    population: Shards
    if ray_workers is None:
        ranges = shard_ranges(agents, shards or 1)
        population = LocalShards([
            load_shard(agents=agents_file, states=states_file, lo=lo, hi=hi, seed=seed,
                       memory=scenario.memory, inbox_size=scenario.inbox_size,
                       adjacency=adjacency_file)
            for lo, hi in ranges])
    else:
        from personahub.core.optional import ray
        from personahub.sim.population_ray import ray_shards

        count = shards or ray_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        population = held.enter_context(ray_shards(
            count=count, agents=agents, agents_file=agents_file, states_file=states_file,
            seed=seed, memory=scenario.memory, inbox_size=scenario.inbox_size, run_id=run_id,
            adjacency_file=adjacency_file))
    society = ColumnSociety(
        scenario=scenario, shards=population, representatives=representatives,
        representative_texts=[texts[r] for r in representatives], refs=refs, llm=llm,
        run_id=run_id, seed=seed, world=world,
        folder=lambda step: str(step_folder(db, run_id, step)), indexes=indexes,
        chunk_size=chunk_size)
    society.model_label = llm.label
    if done:
        with store.bounded_pool(con, store.RUN_ROOM):  # it reads the committed emissions back
            _catch_up(con, society, run_id, done)
    return society


def _catch_up(con: duckdb.DuckDBPyConnection, society: ColumnSociety, run_id: str,
              done: int) -> None:
    """Bring the driver's own state to step ``done``: the representatives' texts, the indexes
    and the numbers of injected events."""
    by_rep = {pid: a for a, pid in enumerate(society.representatives)}
    for x in society.scenario.interventions:
        if x.step <= done and x.action == "set_persona":
            persona_id = society.refs[x.target][1]
            if persona_id in by_rep:
                society.texts[by_rep[persona_id]] = x.text
    runner.restore_indexes(con, run_id, done, society.indexes)
    society.steps = done
    society.next_event_index, society.next_intervention_index = store.next_indexes(
        con, run_id, society.next_event_index, society.next_intervention_index)

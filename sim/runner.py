"""What a run does to its society: load personas, record the agents and starting graph (or read
them back on resume), and restore a model to a committed step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from personahub.core.errors import PersonahubError
from personahub.core.store import connect, transaction
from personahub.personas.archetypes import group_archetypes
from personahub.personas.gate_labels import INCLUDE_FLAG, drawn_gates
from personahub.personas.graph import SocialEdges, save_links, small_world_arrays, social_edges
from personahub.personas.hub_gate import fewer_than_asked
from personahub.personas.importers import iter_personas
from personahub.personas.near_dup import IndexesByKind
from personahub.personas.record import Persona
from personahub.personas.sampling import draw, gated_out
from personahub.personas.store import SCENARIO_LINKS, fetch_personas
from personahub.sim import store
from personahub.sim.scenario import RENAMED_FIELDS, Scenario, check_references, check_steps
from personahub.sim.society import SocietyModel, StepResult


def load_scenario_personas(scenario: Scenario, db: Path | str | None = None,
                           con: duckdb.DuckDBPyConnection | None = None, *,
                           offline: bool = False, notes: list[str] | None = None) -> list[Persona]:
    """Load the scenario's personas: from its file, or a seeded sample of the gated hub personas (a short
    draw adds a note on what the gate held back).
    """
    if scenario.personas.from_hub:
        return _hub_personas(scenario, db, con, offline, notes)
    stream = iter_personas(scenario.persona_path(), fmt=scenario.personas.fmt)
    personas = list(itertools.islice(stream, scenario.personas.limit))
    unique = list({p.persona_id: p for p in reversed(personas)}.values())[::-1]
    if not unique:
        raise PersonahubError(f"scenario {scenario.name}: no personas in {scenario.persona_path()}")
    return unique


def _hub_personas(scenario: Scenario, db: Path | str | None,
                  con: duckdb.DuckDBPyConnection | None, offline: bool = False,
                  notes: list[str] | None = None) -> list[Persona]:
    source = scenario.personas
    prefix = f"scenario {scenario.name}: personas"
    path = scenario.resolve(source.hub) if source.hub else (Path(db) if db is not None else None)
    if path is None:
        raise PersonahubError(f"{prefix}.path='hub' samples the run's database; give --db")
    if con is not None and db is not None and path.resolve() != Path(db).resolve():
        con = None  # another database
    if con is None and not path.exists():
        field_name = "hub" if source.hub else "path='hub'"
        raise PersonahubError(f"{prefix}.{field_name}: no database at {path} (import personas "
                              "into it first: personahub personas import FILE --db ...)")
    own = con is None
    hub = connect(path, read_only=True) if own else con
    assert hub is not None
    try:
        gates = drawn_gates(include_ungated=source.include_ungated, offline=offline)
        drawn = draw(hub, source.query(), source.limit, seed=source.seed, gates=gates)
        if notes is not None and source.limit is not None and len(drawn) < source.limit:
            held = gated_out(hub, source.query(), gates)
            if held:
                held = held.replace(INCLUDE_FLAG, f"{INCLUDE_FLAG} or personas.include_ungated")
            notes.append(fewer_than_asked(f"{prefix}.limit", source.limit, len(drawn), [held]))
        return drawn
    except PersonahubError as exc:
        raise PersonahubError(f"{prefix} from {path}: {exc}") from None
    finally:
        if own:
            hub.close()


def check_scenario(scenario: Scenario, personas: Sequence[Persona] | None) -> str:
    """Check what can be checked before a run is recorded; returns the world text."""
    check_steps(scenario)  # a Scenario built in code was not checked by load_scenario
    if personas is not None:
        check_references(scenario, personas)
    return scenario.world_text()  # a missing world file fails here, not after setup



def scenario_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a scenario file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _plain(value: object) -> str:
    """Return a description value as text that is the same in every process (functions by name)."""
    name = getattr(value, "__qualname__", None)
    return f"{getattr(value, '__module__', '')}.{name}" if name else str(value)


def scenario_key(scenario: Scenario) -> str:
    """Return the SHA-256 of a scenario's file, or of its description for one built in code."""
    if scenario.source is not None:
        return scenario_digest(scenario.source)
    # Hashed under the field names runs recorded before tasks= was named, so their resume matches.
    earlier = {new: old for old, new in RENAMED_FIELDS.items()}
    fields = {earlier.get(k, k): v for k, v in dataclasses.asdict(scenario).items()
              if k not in ("base_dir", "source")}
    text = json.dumps(fields, default=_plain, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verified_scenario_file(run_id: str, recorded_file: str | None, recorded_sha256: str | None,
                           scenario_path: str | None) -> Path:
    """Return the run's scenario file, if its bytes are the ones the run started with (an edited one would
    mix two versions in one run).
    """
    source = recorded_file or scenario_path
    if not source:
        raise PersonahubError(f"--resume {run_id}: the run does not record its scenario file "
                              "(its scenario was built in code); start a new run")
    if not recorded_sha256:
        raise PersonahubError(f"--resume {run_id}: the run does not record the sha256 of its scenario "
                              f"file {source}, so the file cannot "
                              "be checked; start a new run")
    path = Path(source)
    try:
        current = scenario_digest(path)
    except OSError:
        raise PersonahubError(f"scenario file {path} is missing since run {run_id} started "
                              f"(sha256 {recorded_sha256[:12]}); restore it or start a new run") from None
    if current != recorded_sha256:
        raise PersonahubError(f"scenario file {path} changed since run {run_id} started (sha256 "
                              f"{recorded_sha256[:12]}, now {current[:12]}); restore it or start a "
                              "new run")
    return path



def save_acquaintances(con: duckdb.DuckDBPyConnection, ids: list[str], k: int, rewire: float,
                       seed: int, source: str) -> int:
    """Store seeded Watts-Strogatz links among the ids; returns how many were offered."""
    near, far = small_world_arrays(len(ids), k, rewire, seed)
    return save_links(con, ids, near, far, relation="acquaintance", hop=0, source=source)


def link_acquaintances(con: duckdb.DuckDBPyConnection, scenario: Scenario,
                       personas: Sequence[Persona], seed: int) -> None:
    """Commit the scenario's acquaintance links among its personas."""
    growth = scenario.graph
    with transaction(con):
        save_acquaintances(con, [p.persona_id for p in personas], growth.acquaintances,
                           growth.rewire, seed, f"{SCENARIO_LINKS}{scenario.name}")


def own_acquaintances(scenario: Scenario, personas: Sequence[Persona], seed: int) -> pa.Table:
    """Build this seed's acquaintance links as columns (runs sharing a database must not see each other's)."""
    ids = [p.persona_id for p in personas]
    near, far = small_world_arrays(len(ids), scenario.graph.acquaintances, scenario.graph.rewire,
                                   seed)
    names = pa.array(ids, type=pa.string())
    return pa.table({"src": names.take(pa.array(near)), "dst": names.take(pa.array(far)),
                     "relation": pa.repeat(pa.scalar("acquaintance", pa.string()), near.size)})


def record_society(con: duckdb.DuckDBPyConnection, run_id: str, personas: list[Persona],
                   reached: Sequence[str], own_links: pa.Table) -> tuple[list[Persona], SocialEdges]:
    """Record the run's agents (personas, then whom the expansion reached) and starting graph."""
    start_ids = [p.persona_id for p in personas]
    agent_ids = list(dict.fromkeys([*start_ids, *reached]))
    if len(agent_ids) == len(personas):  # the expansion reached no one
        agents = list(personas)
    else:
        known = set(start_ids)
        extra = {p.persona_id: p
                 for p in fetch_personas(con, [i for i in agent_ids if i not in known])}
        by_id = {**{p.persona_id: p for p in personas}, **extra}
        agents = [by_id[i] for i in agent_ids]
    graph = social_edges(con, agent_ids, own_links)
    with transaction(con):
        store.add_agents(con, run_id, graph.ids, np.arange(1, len(agents) + 1), graph.columns())
    return agents, graph


def archetype_grouping(con: duckdb.DuckDBPyConnection, run_id: str, k: int | None,
                       agents: Sequence[Persona], seed: int) -> tuple[list[int], list[str]] | None:
    """Return the run's archetypes and representatives: read back, or grouped and recorded; None if unused."""
    if k is None:
        return None
    recorded = store.archetypes_of(con, run_id)
    ids = [p.persona_id for p in agents]
    if recorded is None:
        grouped = group_archetypes([p.text for p in agents], [p.attributes for p in agents],
                                   min(k, len(agents)), seed)
        labels = [int(a) for a in grouped.labels]
        representatives = [ids[i] for i in grouped.representatives]
        with transaction(con):
            store.add_archetypes(con, run_id, ids, labels, representatives,
                                 [int(n) for n in grouped.sizes], grouped.attribute_shares,
                                 f"{grouped.method}; k={k}")
        return labels, representatives
    of, representatives = recorded
    return [of[i] for i in ids], representatives


def restore_society(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[list[Persona], SocialEdges]:
    """Return the run's agents (in agent-id order) and its starting graph, as recorded."""
    ids = store.agent_persona_ids(con, run_id)
    by_id = {p.persona_id: p for p in fetch_personas(con, ids)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise PersonahubError(f"run {run_id}: personas {missing[:3]} are missing from the hub")
    found = store.starting_edges(con, run_id)
    edges = SocialEdges.from_positions(ids, np.asarray(found["pa"]), np.asarray(found["pb"]),
                                       [None if r is None else str(r) for r in found["r"].tolist()])
    return [by_id[i] for i in ids], edges


def restore_model(con: duckdb.DuckDBPyConnection, model: SocietyModel, run_id: str, done: int,
                  indexes: IndexesByKind) -> None:
    """Bring a fresh model to the end of a committed step."""
    for action, a, b, relation in store.applied_edge_changes(con, run_id, done):
        model.change_edge(action, a, b, relation)
    model.restore(done, store.latest_states(con, run_id, done))
    restore_indexes(con, run_id, done, indexes)


def restore_indexes(con: duckdb.DuckDBPyConnection, run_id: str, done: int,
                    indexes: IndexesByKind) -> None:
    """Index the run's kept emissions up to a step, as the near-duplicate check saw them."""
    for rows in store.kept_emissions(con, run_id, done):
        by_kind: dict[str, list[tuple[str, str]]] = {}
        for emission_id, kind, text in rows:
            by_kind.setdefault(kind, []).append((emission_id, text))
        for kind, items in by_kind.items():
            indexes[kind].add_many(items)


def flag_duplicates(result: StepResult, indexes: IndexesByKind) -> dict[str, str | None]:
    """Per-kind MinHash near-duplicate flags, in agent-id order (earliest emission kept)."""
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for emission in result.emissions:
        by_kind.setdefault(emission.task, []).append((emission.emission_id, emission.text))
    flags: dict[str, str | None] = {}
    for kind, items in by_kind.items():
        flags.update(zip((key for key, _ in items), indexes[kind].check_and_add_many(items),
                         strict=True))
    return flags


def estimated_prefix_share(endpoints: Sequence[object]) -> float | None:
    """Return the estimated share of prompt tokens sent in a prefix shared with a recent prompt (None
    offline)."""
    meters = [m for m in (getattr(e, "prompt_prefix", None) for e in endpoints) if m is not None]
    total = sum(m.total_tokens for m in meters)
    return sum(m.shared_tokens for m in meters) / total if total else None

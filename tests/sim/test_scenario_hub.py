"""A scenario whose personas are a seeded sample of the hub (PersonaSource(path="hub") or
hub=FILE), selected by carve conditions or SQL; bad sources fail at load naming the field."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from personahub.api import run_simulation
from personahub.core.errors import PersonahubError
from personahub.core.store import connect, transaction
from personahub.personas.record import Persona
from personahub.personas.sampling import HubQuery, draw_ids
from personahub.personas.store import upsert_personas
from personahub.pipelines.run import RunConfig
from personahub.sim.runner import load_scenario_personas
from personahub.sim.scenario import PersonaSource, ScenarioError, load_scenario

ROLES = ["nurse", "baker", "ferry pilot", "librarian"]


def fill(db: Path, n: int = 40) -> None:
    con = connect(db)
    try:
        with transaction(con):
            upsert_personas(con, [Persona(
                text=f"A {ROLES[i % 4]} aged {20 + i} who keeps a garden plot number {i}.",
                source="test", attributes={"age": 20 + i, "occupation": ROLES[i % 4]})
                for i in range(n)])
    finally:
        con.close()


def write(folder: Path, source: str) -> Path:
    path = folder / "hub_town.py"
    path.write_text(
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario\n\n"
        f"SCENARIO = Scenario(name='hub_town', personas={source},\n"
        "    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, seed=3,\n"
        "    world='A small river town with a ferry and a market.')\n")
    return path


def agents(db: Path, run_id: str) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT persona_id FROM run_agents WHERE run_id = ? "
                                          "ORDER BY agent_id", [run_id]).fetchall()]
    finally:
        con.close()


def expected(db: Path, query: HubQuery, n: int, seed: int) -> list[str]:
    con = connect(db, read_only=True)
    try:
        return draw_ids(con, query, n, seed=seed)
    finally:
        con.close()


def test_scenario_samples_the_runs_own_hub(tmp_path: Path) -> None:
    db = tmp_path / "run.duckdb"
    fill(db)
    path = write(tmp_path, "PersonaSource(path='hub', carve=('occupation=nurse',), limit=4, seed=7)")
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db))
    chosen = agents(db, summary.run_id)
    assert chosen == expected(db, HubQuery(carve=("occupation=nurse",)), 4, 7)
    con = connect(db, read_only=True)
    try:
        jobs = {r[0] for r in con.execute("SELECT json_extract_string(attributes, '$.occupation') "
                                          "FROM personas WHERE persona_id IN (SELECT unnest(?))",
                                          [chosen]).fetchall()}
        first = [r[0] for r in con.execute("SELECT persona_id FROM personas WHERE json_extract_"
                                           "string(attributes, '$.occupation') = 'nurse' ORDER BY "
                                           "seq LIMIT 4").fetchall()]
    finally:
        con.close()
    assert jobs == {"nurse"} and chosen != first  # a sample, not the hub's first nurses


def test_scenario_samples_a_named_hub_into_a_new_run_database(tmp_path: Path) -> None:
    fill(tmp_path / "people.duckdb")
    path = write(tmp_path, "PersonaSource(hub='people.duckdb', where='CAST(json_extract_string("
                           "attributes, \\'$.age\\') AS INT) >= 40', limit=5)")
    db = tmp_path / "fresh.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db))
    assert agents(db, summary.run_id) == expected(
        tmp_path / "people.duckdb", load_scenario(path).personas.query(), 5, 0)


def test_hub_personas_read_through_an_open_connection(tmp_path: Path) -> None:
    """A resume holds the run's database open; the sample is read through that connection."""
    db = tmp_path / "run.duckdb"
    fill(db)
    scenario = load_scenario(write(tmp_path, "PersonaSource(path='hub', limit=3, seed=1)"))
    con = connect(db)
    try:
        ids = [p.persona_id for p in load_scenario_personas(scenario, db, con)]
    finally:
        con.close()
    assert ids == expected(db, HubQuery(), 3, 1)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"path": "hub", "carve": ("age",)}, r"personas.carve 'age': expected KEY OP VALUE"),
    ({"carve": ("age>3",)}, r"personas.where and personas.carve select from the hub"),
    ({"path": "people.jsonl", "hub": "h.duckdb"}, r"personas.hub='h.duckdb' and personas.path"),
    ({"hub": "h.duckdb", "where": "1=1; DROP TABLE personas"}, r"personas.where: give one"),
    ({"hub": "h.duckdb", "seed": "x"}, r"personas.seed must be an integer"),
    ({"hub": ""}, r"personas.hub must be a database file path"),
])
def test_bad_hub_sources_name_the_field(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ScenarioError, match=fragment):
        PersonaSource(**kwargs)


def test_a_bare_carve_string_is_one_condition() -> None:
    assert PersonaSource(path="hub", carve="age>30").carve == ("age>30",)


def test_hub_errors_at_run_time_name_the_scenario_and_field(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, "PersonaSource(hub='missing.duckdb')"))
    with pytest.raises(PersonahubError, match=r"scenario hub_town: personas.hub: no database"):
        run_simulation(RunConfig(scenario=scenario, db=tmp_path / "run.duckdb"))
    assert not (tmp_path / "run.duckdb").exists()
    db = tmp_path / "people.duckdb"
    fill(db)
    scenario = load_scenario(write(tmp_path, "PersonaSource(hub='people.duckdb', "
                                             "carve=('occupation=astronaut',))"))
    with pytest.raises(PersonahubError, match=r"personas.carve 'occupation=astronaut': no personas"):
        run_simulation(RunConfig(scenario=scenario, db=tmp_path / "run.duckdb"))
    scenario = load_scenario(write(tmp_path, "PersonaSource(hub='people.duckdb', "
                                             "carve=('occupation~[',))"))
    with pytest.raises(PersonahubError, match=r"personas.carve 'occupation~\[': .*missing"):
        run_simulation(RunConfig(scenario=scenario, db=tmp_path / "run.duckdb"))

"""A column society's setup: built from columns a chunk of personas at a time, with DuckDB held
to a bounded pool, into the tables the agent society's setup writes for the same seed.
"""

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from personahub.api import run_simulation
from personahub.core.store import connect
from personahub.personas import archetypes
from personahub.personas.embedding import HashEmbedder
from personahub.pipelines.run import RunConfig
from personahub.sim import population_build, runner, store
from personahub.sim.population_build import PersonaColumns, read_personas
from personahub.sim.scenario import load_scenario
from tests.conftest import persona_texts

N = 40
CHUNK = 7

SCENARIO = """
from personahub.sim.scenario import (Audience, Event, GraphGrowth, PersonaSource, Scenario,
                                     Survey)

SCENARIO = Scenario(
    name="setup", personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=4), steps=1, tasks=("instruction",),
    activation=0.5, archetypes=5, seed=9,
    events=(Event(step=1, text="The ferry stops.", audience=Audience(personas=(2, PERSONA))),),
    surveys=(Survey(id="mood", steps=(1,), question="How is the town?", answer="choice",
                    options=("well", "badly")),))
"""

#: the tables a run's setup writes, and the columns compared (created_at differs)
SETUP_TABLES = {
    "personas": "persona_id, seq, text, source, source_ref, attributes::VARCHAR, hop, gate",
    "relations": "src, dst, relation, hop, source",
    "run_agents": "agent_id, persona_id",
    "run_edges": "src, dst, relation",
    "run_archetypes": "archetype, size, representative, attribute_shares::VARCHAR, method",
    "run_agent_archetypes": "persona_id, archetype",
}


def _people(folder: Path) -> Path:
    """Write N personas with attributes, two of them repeated (the repeats' fields differ)."""
    cities = ("Leeds", "Lagos", "Lima")
    rows = [{"persona": t, "city": cities[i % 3], **({"age": 20 + i} if i % 4 else {})}
            for i, t in enumerate(persona_texts(N))]
    rows.insert(11, {**rows[3], "city": "Oslo"})  # first kept, placed by its last line
    rows.append({**rows[20], "note": "again"})
    (folder / "people.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = persona_texts(N)[5]
    from personahub.personas.record import persona_id_for
    path = folder / "setup.py"
    path.write_text(SCENARIO.replace("PERSONA", repr(persona_id_for(first))))
    return path


def _setup_tables(db: Path) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        run_id = con.execute("SELECT run_id FROM runs").fetchall()[0][0]
        return {table: json.loads(json.dumps(con.execute(
            f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall(),
            default=str).replace(run_id, "RUN")) for table, columns in SETUP_TABLES.items()}
    finally:
        con.close()


def _run(scenario: Path, db: Path, society: str) -> None:
    run_simulation(RunConfig(scenario=load_scenario(scenario), db=db, society=society))


def test_columns_keep_the_personas_the_agent_society_keeps(tmp_path):
    scenario = load_scenario(_people(tmp_path))
    columns = read_personas(scenario)
    listed = runner.load_scenario_personas(scenario)
    assert columns.table.equals(PersonaColumns.of(listed).table)
    assert columns.keys == {"city", "age"} and len(columns) == N  # a repeat's fields go
    assert [(p.persona_id, dict(p.attributes)) for p in columns.personas()] == \
        [(p.persona_id, dict(p.attributes)) for p in listed]


def test_written_personas_keep_only_their_ids_in_memory(tmp_path):
    """Once in the hub, the texts and attributes the setup reads are read back from a file."""
    scenario = load_scenario(_people(tmp_path))
    columns = read_personas(scenario)
    con = connect(tmp_path / "hub.duckdb")
    kept = population_build.write_personas(con, columns)
    assert kept.table.column_names == ["persona_id"] and kept.ids().equals(columns.ids())
    assert kept.rows(3, 17) == columns.rows(3, 17)
    at = np.array([0, 5, 6, 30, N - 1])
    assert kept.pick(at) == columns.pick(at)


@pytest.mark.slow
def test_the_setup_writes_the_agent_societys_tables_a_chunk_at_a_time(tmp_path, monkeypatch):
    scenario = _people(tmp_path)
    _run(scenario, tmp_path / "agents.duckdb", "agents")
    monkeypatch.setattr(population_build, "CHUNK", CHUNK)
    monkeypatch.setattr(population_build, "LINKS_AT_A_TIME", 9)
    monkeypatch.setattr(population_build, "LINKS_A_COMMIT", 20)
    monkeypatch.setattr(archetypes, "FEATURE_ROWS", 3)
    written: list[int] = []
    embedded: list[int] = []
    linked: list[int] = []
    upsert, embed = population_build.upsert_persona_table, HashEmbedder.embed
    add_relations = population_build.add_relations

    def upsert_watched(con, batch):
        written.append(batch.num_rows)
        return upsert(con, batch)

    def add_watched(con, columns, **kwargs):
        linked.append(len(columns["src"]))
        if len(linked) > 1 and sum(linked[:-1]) % 20 == 0:  # a commit's first statement
            assert con.execute("SELECT count(*) FROM relations").fetchall() == [(sum(linked[:-1]),)]
        return add_relations(con, columns, **kwargs)

    def embed_watched(self, texts):
        embedded.append(len(texts))
        return embed(self, texts)

    monkeypatch.setattr(population_build, "upsert_persona_table", upsert_watched)
    monkeypatch.setattr(HashEmbedder, "embed", embed_watched)
    monkeypatch.setattr(population_build, "add_relations", add_watched)
    _run(scenario, tmp_path / "columns.duckdb", "columns")
    assert max(written) == CHUNK and sum(written) == N
    assert max(embedded) == 3 and sum(embedded) == 2 * N  # the fit sample, then every chunk
    assert linked[:3] == [9, 9, 2] and max(linked) == 9  # 9 at a time, 20 a commit
    assert _setup_tables(tmp_path / "columns.duckdb") == _setup_tables(tmp_path / "agents.duckdb")


@pytest.mark.slow
def test_the_setup_holds_duckdb_to_a_bounded_pool(tmp_path, monkeypatch):
    limits: list[str] = []

    def watched(original):
        def call(con, *args, **kwargs):
            limits.append(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
            return original(con, *args, **kwargs)
        return call

    for name in ("add_agents", "add_archetypes"):
        monkeypatch.setattr(store, name, watched(getattr(store, name)))
    _run(_people(tmp_path), tmp_path / "bounded.duckdb", "columns")
    assert len(limits) == 2
    default = _bytes(duckdb.connect().execute("SELECT current_setting('memory_limit')")
                     .fetchone()[0])
    assert all(_bytes(limit) < 1 << 30 < default for limit in limits)


def _bytes(setting: str) -> float:
    """Return a DuckDB memory setting ('257.0 MiB') in bytes."""
    number, unit = setting.split()
    return float(number) * 1024 ** ["bytes", "KiB", "MiB", "GiB", "TiB"].index(unit)


@pytest.mark.slow
def test_a_hub_draw_sets_up_the_agent_societys_tables_too(tmp_path):
    from tests.sim.test_scenario_hub import fill

    scenario = tmp_path / "hub.py"
    scenario.write_text(
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey\n"
        "SCENARIO = Scenario(name='hub', personas=PersonaSource(path='hub', limit=30, seed=2),\n"
        "    graph=GraphGrowth(hops=0, acquaintances=4), steps=1, seed=3, archetypes=4,\n"
        "    tasks=('instruction',), surveys=(Survey(id='q', steps=(1,), question='Well?',\n"
        "    answer='choice', options=('yes', 'no')),))\n")
    tables = {}
    for society in ("agents", "columns"):
        db = tmp_path / f"{society}.duckdb"
        fill(db)
        _run(scenario, db, society)
        tables[society] = _setup_tables(db)
    assert len(tables["columns"]["run_agents"]) == 30
    assert tables["columns"] == tables["agents"]

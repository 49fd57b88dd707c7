"""The column society: a run with archetypes whose population lives in column shards.

It asks what ``SocietyModel`` asks of archetypes (one call per archetype and kind, one per
archetype and survey), stores a row per agent, and gives the same tables for any number of
shards, locally or on Ray, and after a resume, a ``kill -9`` included.
"""

import dataclasses
import json
import signal
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from personahub.api import resume_run, run_simulation
from personahub.core.errors import PersonahubError, UsageError
from personahub.pipelines.run import RunConfig
from personahub.sim import population, store
from personahub.sim.memory_table import MemoryTable
from personahub.sim.population_load import shard_ranges
from personahub.sim.run_plan import step_prices
from personahub.sim.scenario import Memory, load_scenario
from tests.cli_helpers import cli, env, kill_in_step_two_and_resume, kill_when
from tests.conftest import persona_texts
from tests.fakes import FakeClient, unreachable_from_step
from tests.optional import need_ray

SEED = 5
N = 30

SCENARIO = """
from personahub.sim.scenario import (Activation, Audience, Event, GraphGrowth, Intervention,
                                     PersonaSource, Scenario, Survey)

SCENARIO = Scenario(
    name="columns",
    personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=4),
    steps=3,
    tasks=("instruction", "tool_spec"),
    task_weights=(2.0, 1.0),
    activation=Activation(mode="probability", p=0.6),
    archetypes=4,
    events=(Event(step=1, text="The ferry fares go up next month."),
            Event(step=2, text="A storm closes the market.",
                  audience=Audience(attributes={"city": "Leeds"})),
            Event(step=3, text="The library opens late.",
                  audience=Audience(text_contains=("nurse",)))),
    interventions=(Intervention(step=2, action="add_memory", target=3, text="I lost my job."),
                   Intervention(step=2, action="set_persona", target=4,
                                text="A retired ferry captain."),
                   Intervention(step=3, action="forget", target=5)),
    surveys=(Survey(id="mood", steps=(1, 3), question="How is the town doing?", answer="choice",
                    options=("well", "badly", "unsure"), remember=True),
             Survey(id="trust", steps=(2,), question="How much do you trust the council?",
                    answer="scale", low=1, high=5, audience=Audience(personas=(1, 2, 3, 7)))),
    seed=SEED_VALUE,
)
""".replace("SEED_VALUE", str(SEED))

TABLES = {
    "emissions": "step, agent_id, persona_id, task, content, text, archetype, is_duplicate, "
                 "duplicate_of",
    "survey_answers": "step, survey_id, persona_id, agent_id, answer_choice, answer_scale, content",
    "steps": "step, n_active, n_emissions, n_failed, n_answers, n_archetype_calls, n_drawn",
    "agent_states": "agent_id, step, state",
    "events": "step, event_index, text, audience, n_recipients, recipients::VARCHAR",
    "interventions": "step, intervention_index, action, persona_id, agent_id, text, applied",
}


def _scenario(tmp_path: Path) -> Path:
    cities = ("Leeds", "Lagos", "Lima")
    (tmp_path / "people.jsonl").write_text("".join(
        json.dumps({"persona": t, "city": cities[i % 3]}) + "\n"
        for i, t in enumerate(persona_texts(N))))
    path = tmp_path / "columns.py"
    path.write_text(SCENARIO)
    return path


def _snapshot(db: Path, run_id: str) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {table: json.loads(json.dumps(con.execute(
            f"SELECT {columns} FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id]).fetchall(),
            default=str).replace(run_id, "RUN")) for table, columns in TABLES.items()}
        out["llm_calls"] = con.execute(
            "SELECT step, purpose, status, count(*) FROM llm_calls WHERE run_id = ? "
            "AND status <> 'discarded' GROUP BY ALL ORDER BY ALL", [run_id]).fetchall()
        return out
    finally:
        con.close()


def _run(path: Path, db: Path, client: FakeClient | None = None, **options: object) -> str:
    options.setdefault("society", "columns")
    return run_simulation(RunConfig(scenario=load_scenario(path), db=db, **options),
                          client=client).run_id


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list]]:
    """The scenario and its uninterrupted column run's tables (one shard)."""
    folder = tmp_path_factory.mktemp("whole")
    path = _scenario(folder)
    return path, _snapshot(folder / "run.duckdb", _run(path, folder / "run.duckdb"))


def test_one_call_per_archetype_and_kind_and_a_row_per_agent(whole):
    _, tables = whole
    calls = {(s, p): n for s, p, _, n in tables["llm_calls"]}
    steps = {row[0]: row[1:] for row in tables["steps"]}
    archetype_calls = {s: sum(n for (step, _), n in calls.items() if step == s) for s in steps}
    for step, (active, emitted, failed, answers, pooled, drawn) in steps.items():
        assert failed == 0 and pooled == archetype_calls[step]
        assert emitted == active  # every active agent emits its pool's action
        assert pooled <= 4 * 2 + 4  # at most K x kinds + K a survey
        assert drawn == emitted + answers
    answered = {(s, survey): n for s, survey, *_ in [r[:2] for r in tables["survey_answers"]]
                for n in [1]}
    assert {s for s, _ in answered} == {1, 2, 3}
    per_step = {s: sum(1 for r in tables["survey_answers"] if r[0] == s) for s in (1, 2, 3)}
    assert per_step == {1: N, 2: 4, 3: N}  # a row per asked agent, drawn from its archetype
    pooled = {(r[0], r[3], r[6]) for r in tables["emissions"]}
    texts = {(r[0], r[3], r[6]): set() for r in tables["emissions"]}
    for r in tables["emissions"]:
        texts[(r[0], r[3], r[6])].add(r[5])
    assert all(len(t) == 1 for t in texts.values()) and pooled  # a pool's members emit its text
    firsts = [r for r in tables["emissions"] if not r[7]]
    assert all(r[8] in {f"RUN:{f[0]}:{f[1]}" for f in firsts} for r in tables["emissions"] if r[7])


@pytest.mark.slow
def test_events_and_interventions_reach_whom_the_agent_society_reaches(whole, tmp_path):
    """Audiences and interventions are not draws: their rows equal the agent society's."""
    path, tables = whole
    db = tmp_path / "agents.duckdb"
    agents = _snapshot(db, _run(path, db, society="agents"))
    for table in ("events", "interventions"):
        assert [[*r[:-1], json.loads(r[-1]) if table == "events" else r[-1]]
                for r in tables[table]] == \
            [[*r[:-1], json.loads(r[-1]) if table == "events" else r[-1]] for r in agents[table]]
    reached = {r[1]: r[4] for r in tables["events"]}
    assert reached[0] == N and 0 < reached[1] < N


@pytest.mark.slow
def test_any_number_of_shards_gives_the_same_tables(whole, tmp_path):
    path, tables = whole
    db = tmp_path / "three.duckdb"
    assert _snapshot(db, _run(path, db, shards=3)) == tables


@pytest.mark.slow
def test_resume_after_a_failure_gives_the_uninterrupted_tables(whole, tmp_path):
    path, tables = whole
    db = tmp_path / "broken.duckdb"
    with pytest.raises(PersonahubError, match="unreachable"):
        _run(path, db, FakeClient(unreachable_from_step(2), seed=SEED), shards=2)
    con = duckdb.connect(str(db), read_only=True)
    run_id, done = con.execute("SELECT run_id, steps_done FROM runs").fetchone()
    con.close()
    assert done == 1
    resume_run(run_id, db=db)
    assert _snapshot(db, run_id) == tables
    assert not Path(f"{db}.jobs").exists()  # the shards' files went with the run


@pytest.mark.slow
def test_kill_9_mid_step_resumes_to_the_uninterrupted_tables(whole, tmp_path):
    path, tables = whole
    db = tmp_path / "killed.duckdb"
    run_id = kill_in_step_two_and_resume(path, db, tmp_path)
    assert _snapshot(db, run_id) == tables
    print("\nkilled in step 2; resumed to the uninterrupted tables")


def _bytes(setting: str) -> float:
    """Return a DuckDB memory setting ('257.0 MiB') in bytes."""
    number, unit = setting.split()
    return float(number) * 1024 ** ["bytes", "KiB", "MiB", "GiB", "TiB"].index(unit)


@pytest.mark.slow
def test_the_export_and_each_step_hold_duckdb_to_a_bounded_pool(whole, tmp_path, monkeypatch):
    path, tables = whole
    limits: dict[str, list[str]] = {"export": [], "commit": []}

    def watched(name: str, original):
        def call(con, *args, **kwargs):
            limits[name].append(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
            return original(con, *args, **kwargs)
        return call

    monkeypatch.setattr(store, "export_population",
                        watched("export", store.export_population))
    monkeypatch.setattr(store, "commit_step_files",
                        watched("commit", store.commit_step_files))
    db = tmp_path / "bounded.duckdb"
    run_id = _run(path, db)
    assert len(limits["export"]) == 1 and len(limits["commit"]) == 3
    default = _bytes(duckdb.connect().execute("SELECT current_setting('memory_limit')").fetchone()[0])
    for limit in limits["export"] + limits["commit"]:
        assert _bytes(limit) < 1 << 30 < default  # what DuckDB held, plus a bounded room
    con = duckdb.connect(str(db))  # the limit is the run's, not the database's
    assert _bytes(con.execute("SELECT current_setting('memory_limit')").fetchone()[0]) == default
    con.close()
    assert _snapshot(db, run_id) == tables


def test_the_export_and_the_steps_get_the_same_room_at_any_population(whole, tmp_path,
                                                                     monkeypatch):
    """The room is fixed: the export, each of the three steps and the summary get the same one
    (fails on a room that grew with the agents)."""
    path, _ = whole
    rooms: list[int] = []
    original = store.bounded_pool

    def watched(con, room=store.RUN_ROOM):
        rooms.append(room)
        return original(con, room)

    monkeypatch.setattr(store, "bounded_pool", watched)
    db = tmp_path / "rooms.duckdb"
    _run(path, db)
    setup, run = rooms[:5], rooms[5:]  # the setup's five bulk phases, then the run's
    assert len(run) == 5 and set(run) == {store.RUN_ROOM}
    assert store.RUN_ROOM < store.BULK_ROOM <= min(setup)


def test_a_column_run_checkpoints_in_its_room_after_its_summary(whole, tmp_path, monkeypatch):
    """The run's last checkpoint is its own, in the run's room, after the summary's reads: left
    to the connection's close, DuckDB checkpointed under its default limit (at 3M agents the
    driver went from 411 to 793 MB there)."""
    path, _ = whole
    events: list[tuple[str, int]] = []
    checkpoint, lines = store.release_cached_blocks, store.archetype_lines

    def watched_checkpoint(con, **kwargs):
        events.append(("checkpoint", kwargs.get("room", 64 << 20)))
        return checkpoint(con, **kwargs)

    def watched_lines(con, run_id):
        events.append(("summary", 0))
        return lines(con, run_id)

    monkeypatch.setattr(store, "release_cached_blocks", watched_checkpoint)
    monkeypatch.setattr(store, "archetype_lines", watched_lines)
    _run(path, tmp_path / "last.duckdb")
    assert events[-2:] == [("summary", 0), ("checkpoint", store.RUN_ROOM)]


def test_export_ranges_cover_every_agent_once_a_range_at_a_time():
    for agents, size in [(1, 7), (7, 7), (30, 7), (30, 100), (131_073, None)]:
        ranges = store.export_ranges(agents, size)
        assert [a for lo, hi in ranges for a in range(lo, hi)] == list(range(1, agents + 1))
        assert max(hi - lo for lo, hi in ranges) == min(agents, size or store.EXPORT_RANGE)
    assert store.export_ranges(0) == []
    with pytest.raises(ValueError, match="at least one agent"):
        store.export_ranges(30, 0)


@pytest.mark.slow
def test_an_export_in_ranges_of_seven_agents_gives_the_same_tables_and_resumes(whole, tmp_path,
                                                                               monkeypatch):
    """The agents and, on a resume, their states go to a Parquet piece per range of agent ids,
    each its own statement; the shards read theirs across pieces (fails on one export file)."""
    path, tables = whole
    monkeypatch.setattr(store, "EXPORT_RANGE", 7)
    pieces: dict[str, list[int]] = {}

    def watched(name: str):
        original = getattr(store, name)

        def call(con, *args):
            found = original(con, *args)
            pieces.setdefault(name, []).extend(pq.ParquetFile(f).metadata.num_rows
                                               for f in sorted(Path(args[-1]).glob("*.parquet")))
            return found
        return call

    for name in ("export_population", "export_states"):
        monkeypatch.setattr(store, name, watched(name))
    db = tmp_path / "ranges.duckdb"
    with pytest.raises(PersonahubError, match="unreachable"):
        _run(path, db, FakeClient(unreachable_from_step(2), seed=SEED), shards=2)
    con = duckdb.connect(str(db), read_only=True)
    run_id = con.execute("SELECT run_id FROM runs").fetchone()[0]
    con.close()
    resume_run(run_id, db=db)
    assert _snapshot(db, run_id) == tables
    assert pieces["export_population"] == [7, 7, 7, 7, 2] * 2  # the run's, then the resume's
    assert len(pieces["export_states"]) == 5 and 0 < sum(pieces["export_states"]) <= N


@pytest.mark.slow
def test_a_shard_writes_its_rows_a_slice_at_a_time_with_the_same_tables(whole, tmp_path,
                                                                        monkeypatch):
    path, tables = whole
    monkeypatch.setattr(population, "ROWS_A_PART", 7, raising=False)
    groups: dict[str, list[int]] = {}
    original = store.commit_step_files

    def commit(con, run_id, step, files):
        for table, paths in files.items():
            for file in paths:
                meta = pq.ParquetFile(file).metadata
                groups.setdefault(table, []).extend(
                    meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        return original(con, run_id, step, files)

    monkeypatch.setattr(store, "commit_step_files", commit)
    db = tmp_path / "sliced.duckdb"
    run_id = _run(path, db)
    assert max(groups["survey_answers"]) <= 7 and len(groups["survey_answers"]) >= N // 7 * 2
    assert max(groups["agent_states"]) <= 7
    assert _snapshot(db, run_id) == tables


@pytest.mark.slow
def test_ray_shards_give_the_local_tables(whole, tmp_path):
    need_ray()
    path, tables = whole
    db = tmp_path / "ray.duckdb"
    assert _snapshot(db, _run(path, db, executor="ray", ray_workers=2)) == tables


@pytest.mark.slow
def test_a_ray_run_killed_mid_step_resumes_on_ray_to_the_local_tables(whole, tmp_path,
                                                                      monkeypatch):
    need_ray()
    monkeypatch.setenv("RAY_ADDRESS", "local")  # a Ray of its own, not another on the machine
    path, tables = whole
    db = tmp_path / "ray-killed.duckdb"
    said = tmp_path / "stderr.txt"
    with said.open("w") as err:  # the driver killed in step 2: step 1 is committed
        code = kill_when(["run", str(path), "--db", str(db), "--society", "columns",
                          "--executor", "ray", "--ray-workers", "2", "--offline-latency", "0.4"],
                         lambda: "step 1/3 committed" in said.read_text(), "step 1 committed",
                         stderr=err, delay_s=0.2, within_s=300)
    assert code == -signal.SIGKILL, said.read_text()
    con = duckdb.connect(str(db))
    run_id, done = con.execute("SELECT run_id, steps_done FROM runs").fetchone()
    con.close()
    assert done < 3
    resumed = subprocess.run(  # the shards rebuilt from the database, three of them now
        cli("run", "--resume", run_id, "--db", str(db), "--executor", "ray", "--ray-workers", "3"),
        env=env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _snapshot(db, run_id) == tables


def test_columns_refuse_a_scenario_that_needs_an_object_per_agent(tmp_path):
    path = _scenario(tmp_path)
    path.write_text(SCENARIO.replace('activation=Activation(mode="probability", p=0.6)',
                                     'activation=Activation(mode="count", count=5)'))
    with pytest.raises(UsageError, match=r"--society columns: .*activation mode") as caught:
        _run(path, tmp_path / "run.duckdb")
    assert "\n" not in str(caught.value)


def test_memory_table_shares_a_memory_between_agents_with_one_history():
    table = MemoryTable(lambda: Memory(observations=2).new_agent_memory(3))
    held = np.zeros(6, dtype=np.int32)
    table.apply(held, np.array([True, True, True, False, False, False]),
                ("observe", 1, "storm", "event"))
    table.apply(held, np.array([3, 4]), ("observe", 1, "storm", "event"))
    table.apply_each(held, np.array([0, 1, 2]), np.array([0, 1, 0]),
                     [("own", 1, "instruction", "a"), ("own", 1, "instruction", "b")])
    assert held[0] == held[2] != held[1] and held[3] == held[4] and held[5] == 0
    assert len(table) == 4
    table.apply(held, np.arange(6), ("forget",))
    table.compact(held)
    assert len(table) == 1 and not held.any()
    memory = table.memories[0]
    assert memory.prompt_lines(5) == []


def test_shard_ranges_cover_every_agent_once():
    for agents, shards in ((10, 3), (7, 7), (3, 8), (1_000_000, 13)):
        ranges = shard_ranges(agents, shards)
        assert ranges[0][0] == 1 and ranges[-1][1] == agents + 1
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        assert len(ranges) == min(agents, shards)


def test_the_plan_counts_calls_per_archetype_and_per_agent(tmp_path):
    scenario = load_scenario(_scenario(tmp_path))
    pooled = step_prices(scenario, 1_000_000, "A nurse.", archetypes=100)
    each = step_prices(dataclasses.replace(scenario, archetypes=None), 1_000_000, "A nurse.")
    assert [round(p.active) for p in pooled] == [600_000] * 3
    assert [round(p.calls) for p in pooled] == [300, 300, 300]  # every pool has members
    assert [round(p.calls) for p in each] == [1_600_000, 1_600_000, 1_600_000]
    assert all(p.prompt_tokens > 0 and p.completion_tokens_max > 0 for p in pooled)


def test_run_plan_prints_each_steps_price_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from personahub.cli.app import app

    path = _scenario(tmp_path)
    db = tmp_path / "plan.duckdb"
    result = CliRunner().invoke(app, ["run", str(path), "--plan", "--db", str(db)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert lines[0].startswith(f"plan: {N} agents, 4 archetypes")
    assert [line.split(":")[0] for line in lines[1:4]] == ["step 1", "step 2", "step 3"]
    assert "calls (" in lines[1] and "prompt tokens" in lines[1] and lines[4].startswith("run:")
    assert not db.exists()

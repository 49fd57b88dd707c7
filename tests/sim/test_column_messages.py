"""Messages between agents of a column society: an addressed kind pooled by archetype, its
messages crossing shards through the step's outbox, the same tables for any number of shards,
locally or on Ray, and after a ``kill -9``."""

import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig
from personahub.sim import store
from personahub.sim.population import PopulationShard
from personahub.sim.population_load import shard_ranges
from personahub.sim.population_plan import StepOpen
from personahub.sim.scenario import Memory, load_scenario
from tests.cli_helpers import kill_in_step_two_and_resume
from tests.conftest import persona_texts
from tests.optional import need_ray

SEED = 7
N = 24

SCENARIO = """
from personahub.sim.scenario import Activation, Event, GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(
    name="talk",
    personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=4),
    steps=3,
    tasks=("instruction", "conversation"),
    task_weights=(1.0, 2.0),
    activation=Activation(mode="probability", p=0.7),
    archetypes=3,
    events=(Event(step=1, text="The ferry fares go up next month."),),
    seed=SEED_VALUE,
)
""".replace("SEED_VALUE", str(SEED))

TABLES = {
    "emissions": "emission_id, step, agent_id, persona_id, task, content, text, "
                 "target_persona_id, archetype, is_duplicate, duplicate_of",
    "messages": "message_id, step, sender_id, receiver_id, text, reply_to, emission_id, "
                "thread_id",
    "steps": "step, n_active, n_emissions, n_failed, n_archetype_calls, n_drawn, n_messages",
    "agent_states": "agent_id, step, state",
}


def _scenario(tmp_path: Path) -> Path:
    (tmp_path / "people.jsonl").write_text("".join(
        json.dumps({"persona": t}) + "\n" for t in persona_texts(N)))
    path = tmp_path / "talk.py"
    path.write_text(SCENARIO)
    return path


def _snapshot(db: Path, run_id: str) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {table: json.loads(json.dumps(con.execute(
            f"SELECT {columns} FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id]).fetchall(),
            default=str).replace(run_id, "RUN")) for table, columns in TABLES.items()}
    finally:
        con.close()


def _run(path: Path, db: Path, **options: object) -> str:
    options.setdefault("society", "columns")
    return run_simulation(RunConfig(scenario=load_scenario(path), db=db, **options)).run_id


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list]]:
    """The scenario and its uninterrupted column run's tables (one shard)."""
    folder = tmp_path_factory.mktemp("talk")
    path = _scenario(folder)
    return path, _snapshot(folder / "run.duckdb", _run(path, folder / "run.duckdb"))


@pytest.fixture(scope="module")
def three(talk: tuple[Path, dict[str, list]],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    """The same run's tables with its agents in three shards."""
    db = tmp_path_factory.mktemp("three") / "three.duckdb"
    return _snapshot(db, _run(talk[0], db, shards=3))


@pytest.mark.slow
def test_an_addressed_kind_is_asked_once_per_archetype_and_said_to_a_neighbour(talk):
    _, tables = talk
    talks = [r for r in tables["emissions"] if r[4] == "conversation"]
    messages = {r[6]: r for r in tables["messages"]}
    assert talks and len(messages) == len(talks)  # a message per addressed emission
    for r in talks:
        message = messages[r[0]]
        assert message[2] == r[3] and message[3] == r[7] != r[3]  # to its addressee
        turns = json.loads(r[5])["turns"]  # the pool's talk, its speakers filled in after
        assert turns[0]["speaker"] == r[3] and turns[1]["speaker"] == r[7]
    for step, active, emitted, failed, calls, drawn, sent in tables["steps"]:
        assert failed == 0 and emitted == active == drawn and calls <= 3 * 2
        assert sent == sum(1 for m in tables["messages"] if m[1] == step) > 0
    assert any(m[5] is not None for m in tables["messages"])  # some keep a thread going
    for m in tables["messages"]:
        if m[5] is not None:
            assert m[7] != m[0]


@pytest.mark.slow
def test_a_reply_answers_the_newest_message_in_its_senders_inbox(talk):
    """Fails when the column inbox gives a reply an older message, or another agent's."""
    _, tables = talk
    states: dict[str, list[tuple[int, dict]]] = {}
    for _, step, text in tables["agent_states"]:
        state = json.loads(text)
        states.setdefault(state["persona_id"], []).append((step, state["memory"]))
    replies = [m for m in tables["messages"] if m[5] is not None]
    assert replies
    for m in replies:
        before = max((s for s in states[m[2]] if s[0] < m[1]), key=lambda s: s[0])[1]
        newest = before["inbox"][-1]
        assert m[5] == newest["message_id"] and m[3] == newest["sender_id"]
        assert m[7] == (newest["thread_id"] or newest["message_id"])
    kept = [len(s["inbox"]) for held in states.values() for _, s in held]
    assert max(kept) == 5  # the scenario's inbox_size: full inboxes push their oldest out


@pytest.mark.slow
def test_a_message_to_another_shards_agent_is_in_its_inbox_at_the_next_step(three):
    tables = three
    ranges = shard_ranges(N, 3)
    shard_of = {agent: i for i, (lo, hi) in enumerate(ranges) for agent in range(lo, hi)}
    agent_of = {json.loads(s)["persona_id"]: a for a, _, s in tables["agent_states"]}
    crossing = [m for m in tables["messages"]
                if shard_of[agent_of[m[2]]] != shard_of[agent_of[m[3]]]]
    assert crossing
    states = {(a, step): json.loads(s) for a, step, s in tables["agent_states"]}
    for m in crossing:
        receiver = agent_of[m[3]]
        inbox = states[(receiver, m[1])]["memory"]["inbox"]
        assert m[0] in [x["message_id"] for x in inbox]


@pytest.mark.slow
def test_one_shard_and_three_shards_give_the_same_tables(talk, three):
    assert three == talk[1]


@pytest.mark.slow
def test_the_graph_exported_in_ranges_of_four_agents_gives_the_same_tables(talk, tmp_path,
                                                                           monkeypatch):
    """Each range's neighbours, both ways, are one piece (fails on one adjacency file)."""
    path, tables = talk
    monkeypatch.setattr(store, "EXPORT_RANGE", 4)
    pieces: list[int] = []
    original = store.export_adjacency

    def watched(con, run_id, agents, folder):
        original(con, run_id, agents, folder)
        pieces.extend(pq.ParquetFile(f).metadata.num_rows
                      for f in sorted(Path(folder).glob("*.parquet")))

    monkeypatch.setattr(store, "export_adjacency", watched)
    db = tmp_path / "ranges.duckdb"
    assert _snapshot(db, _run(path, db, shards=3)) == tables
    assert len(pieces) == -(-N // 4) and all(pieces)


@pytest.mark.slow
def test_ray_shards_give_the_local_tables_with_messages(talk, tmp_path):
    need_ray()
    path, tables = talk
    db = tmp_path / "ray.duckdb"
    assert _snapshot(db, _run(path, db, executor="ray", ray_workers=2, shards=3)) == tables


@pytest.mark.slow
def test_kill_9_mid_step_resumes_to_the_same_messages_and_inboxes(talk, tmp_path):
    path, tables = talk
    db = tmp_path / "killed.duckdb"
    run_id = kill_in_step_two_and_resume(path, db, tmp_path)
    assert _snapshot(db, run_id) == tables


def _shard(degrees: list[int]) -> PopulationShard:
    n = len(degrees)
    ids = [f"p{i}" for i in range(n)]
    offsets = np.r_[0, np.cumsum(degrees)]
    return PopulationShard(
        agent_ids=np.arange(1, n + 1), persona_ids=pa.array(ids), texts=pa.array(ids),
        attributes=pa.array(["{}"] * n), archetypes=np.zeros(n), seed=SEED,
        new_memory=lambda: Memory().new_agent_memory(5), offsets=offsets,
        neighbours=np.ones(int(offsets[-1]), dtype=np.int32))


def _open(addressed: tuple[str, ...], alone: tuple[float, ...] | None) -> StepOpen:
    return StepOpen(step=1, changes=(), events=(), injected=(), activation=("all", 1.0),
                    kinds=("instruction", "conversation"), cumulative=(0.1, 1.0), surveys=(),
                    read=3, addressed=addressed, alone=alone)


def test_an_agent_without_neighbours_never_draws_an_addressed_kind():
    shard = _shard([0, 2] * 50)
    active, kinds = shard._kinds(_open(("conversation",), (1.0, 1.0)), np.arange(100))
    assert active.size == 100 and set(kinds[0::2].tolist()) == {0}
    assert set(kinds[1::2].tolist()) == {0, 1}
    active, kinds = shard._kinds(_open(("conversation",), None), np.arange(100))
    assert (active % 2 == 1).all() and active.size == 50  # nothing to do alone: not active


def test_the_plan_prices_an_addressed_kind_per_archetype_under_society_columns(tmp_path):
    """Fails before the plan knew the column society: it priced conversation per agent."""
    from typer.testing import CliRunner

    from personahub.cli.app import app

    path = _scenario(tmp_path)

    def calls(*options: str) -> list[int]:
        result = CliRunner().invoke(app, ["run", str(path), "--plan", "--db",
                                          str(tmp_path / "plan.duckdb"), *options],
                                    terminal_width=200)
        assert result.exit_code == 0, result.output
        return [int(line.split(" active, ")[1].split(" calls")[0])
                for line in result.output.splitlines() if line.startswith("  step ")]

    pooled = calls("--society", "columns")
    assert pooled == calls("--society", "auto")
    assert len(pooled) == 3 and all(c <= 3 * 2 for c in pooled)  # archetypes x kinds
    each = calls()  # the default society asks every conversation of every agent
    assert all(c > 3 * 2 for c in each)
    assert not (tmp_path / "plan.duckdb").exists()

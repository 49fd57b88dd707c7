"""A column step's commit: a row per agent without a key index, and a step committed at most once.

At a million agents a step inserts a million ``survey_answers`` rows; a key index over them made the
commit slow and grew with every step, so the table has none. What refuses a step committed twice
is the ``steps`` row written in the same transaction.
"""

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from personahub.core.store import connect, insert_rows, transaction
from personahub.sim import store

RUN = "run-1"
AGENTS = 50


def _answers_file(folder: Path, step: int) -> str:
    """Write one shard's answers for a step, as a column shard writes them."""
    import pyarrow.parquet as pq

    path = folder / f"survey_answers-{step}.parquet"
    pq.write_table(pa.table({
        "run_id": [RUN] * AGENTS, "step": pa.array([step] * AGENTS, pa.int32()),
        "survey_id": ["ferry"] * AGENTS, "question": ["Keep the ferry?"] * AGENTS,
        "persona_id": [f"p{i}" for i in range(AGENTS)],
        "agent_id": pa.array(range(AGENTS), pa.int32()),
        "answer_kind": ["choice"] * AGENTS, "answer_choice": ["yes", "no"] * (AGENTS // 2),
        "answer_scale": pa.nulls(AGENTS, pa.int32()), "answer_text": pa.nulls(AGENTS, pa.string()),
        "content": ['{"answer": "yes", "reason": "drawn"}'] * AGENTS}), path)
    return str(path)


def _commit(con: duckdb.DuckDBPyConnection, step: int, answers: str) -> None:
    """Commit a step as the run's kernel does: its steps row, then its shards' files, at once."""
    now = dt.datetime.now()
    with transaction(con):
        insert_rows(con, "steps", [{"run_id": RUN, "step": step, "n_answers": AGENTS,
                                    "started_at": now, "finished_at": now}])
        store.commit_step_files(con, RUN, step, {"survey_answers": [answers]})


def test_survey_answers_carry_no_key_index(tmp_path):
    con = connect(tmp_path / "run.duckdb")
    keys = con.execute("SELECT constraint_type FROM duckdb_constraints() "
                       "WHERE table_name = 'survey_answers' "
                       "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')").fetchall()
    indexes = con.execute("SELECT index_name FROM duckdb_indexes() "
                          "WHERE table_name = 'survey_answers'").fetchall()
    con.close()
    assert keys == [] and indexes == []


def test_a_step_committed_twice_is_refused_whole(tmp_path):
    con = connect(tmp_path / "run.duckdb")
    answers = _answers_file(tmp_path, 1)
    _commit(con, 1, answers)
    with pytest.raises(duckdb.ConstraintException):
        _commit(con, 1, answers)
    _commit(con, 2, _answers_file(tmp_path, 2))
    counts = con.execute("SELECT step, count(*) FROM survey_answers GROUP BY step "
                         "ORDER BY step").fetchall()
    con.close()
    assert counts == [(1, AGENTS), (2, AGENTS)]


def test_emissions_messages_and_states_carry_no_key_index(tmp_path):
    con = connect(tmp_path / "run.duckdb")
    keyed = con.execute("SELECT DISTINCT table_name FROM duckdb_constraints() "
                        "WHERE table_name IN ('emissions', 'messages', 'agent_states') "
                        "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')").fetchall()
    con.close()
    assert keyed == []


def _step_files(folder: Path, step: int, agents: int) -> dict[str, list[str]]:
    """Write a step's emissions and agent states for ``agents`` agents, as column shards do."""
    import pyarrow.parquet as pq

    ids = pa.array(range(agents), pa.int32())
    texts = pa.array([f"a line said by agent {i} at step {step}" for i in range(agents)])
    emissions = folder / f"emissions-{step}.parquet"
    pq.write_table(pa.table({
        "emission_id": pa.array([f"{RUN}:{step}:{i}" for i in range(agents)]),
        "run_id": [RUN] * agents, "step": pa.array([step] * agents, pa.int32()),
        "agent_id": ids, "persona_id": pa.array([f"p{i}" for i in range(agents)]),
        "task": ["instruction"] * agents, "content": pa.array(['{"instruction": "x"}'] * agents),
        "text": texts, "target_persona_id": pa.nulls(agents, pa.string()),
        "model": ["offline"] * agents, "is_duplicate": [False] * agents,
        "duplicate_of": pa.nulls(agents, pa.string()), "archetype": pa.array([0] * agents,
                                                                            pa.int32())}),
        emissions)
    states = folder / f"agent_states-{step}.parquet"
    pq.write_table(pa.table({"run_id": [RUN] * agents, "agent_id": ids,
                             "step": pa.array([step] * agents, pa.int32()),
                             "state": pa.array(['{"memory": []}'] * agents)}), states)
    return {"emissions": [str(emissions)], "agent_states": [str(states)]}


@pytest.mark.slow
def test_a_large_step_commits_within_a_small_pool(tmp_path):
    """DuckDB holds a key's index outside its memory limit: with keys on emissions and
    agent_states two steps of 200,000 agents' rows do not commit in 32 MiB (and a million a step
    did not in the run's room); without them the insert spills (bench/RESULTS.md)."""
    agents = 200_000
    con = connect(tmp_path / "run.duckdb")
    for step in (1, 2):
        files = _step_files(tmp_path, step, agents)
        now = dt.datetime.now()
        with store.bounded_pool(con, room=32 << 20), transaction(con):
            insert_rows(con, "steps", [{"run_id": RUN, "step": step, "n_emissions": agents,
                                        "started_at": now, "finished_at": now}])
            store.commit_step_files(con, RUN, step, files)
    counts = con.execute("SELECT step, count(*), count(DISTINCT emission_id) FROM emissions "
                         "GROUP BY step ORDER BY step").fetchall()
    states = con.execute("SELECT count(*) FROM agent_states").fetchone()
    con.close()
    assert counts == [(1, agents, agents), (2, agents, agents)]
    assert states == (2 * agents,)

"""An export runs its query once and writes a Parquet piece per range of agent ids from its rows,
in agent-id order, an empty piece for a range without rows; its join and its sort fit a small
pool at a population where one statement on two threads did not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from personahub.sim import store


class Recording:
    """A DuckDB connection that notes each query it is given."""

    def __init__(self) -> None:
        self.con = duckdb.connect()
        self.queries: list[str] = []

    def execute(self, sql: str, *args: Any) -> Any:
        self.queries.append(sql)
        return self.con.execute(sql, *args)

    def sql(self, sql: str) -> Any:
        self.queries.append(sql)
        return self.con.sql(sql)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def _pieces(folder: Path) -> list[tuple[str, list[int]]]:
    return [(f.name, pq.read_table(f).column("agent_id").to_pylist())
            for f in sorted(folder.glob("*.parquet"))]


def _export(tmp_path: Path, agents: int, ids: list[int], monkeypatch, batch: int = 3
            ) -> tuple[list[tuple[str, list[int]]], Recording]:
    monkeypatch.setattr(store, "EXPORT_RANGE", 7)
    monkeypatch.setattr(store, "EXPORT_BATCH", batch)
    con = Recording()
    con.con.execute("CREATE TABLE t AS SELECT unnest(?::INTEGER[]) AS agent_id", [ids])
    folder = tmp_path / "pieces"
    store._export(con, str(folder), agents,  # type: ignore[arg-type]
                  "SELECT agent_id, agent_id * 10 AS x FROM t")
    return _pieces(folder), con


def test_one_query_writes_a_piece_a_range_in_order(tmp_path, monkeypatch):
    """Fails where each range was its own statement (five here)."""
    pieces, con = _export(tmp_path, 30, list(range(30, 0, -1)), monkeypatch)
    assert len([q for q in con.queries if "FROM t" in q]) == 1
    assert [name for name, _ in pieces] == [f"part-{lo:012d}.parquet" for lo in (1, 8, 15, 22, 29)]
    assert [ids for _, ids in pieces] == [list(range(lo, min(lo + 7, 31)))
                                          for lo in (1, 8, 15, 22, 29)]


@pytest.mark.parametrize("batch", [1, 3, 16_384])
def test_a_range_without_rows_gets_an_empty_piece(tmp_path, monkeypatch, batch):
    pieces, _ = _export(tmp_path, 30, [3, 20, 21, 22], monkeypatch, batch)
    assert [ids for _, ids in pieces] == [[3], [], [20, 21], [22], []]
    assert all(pq.read_schema(tmp_path / "pieces" / name).names == ["agent_id", "x"]
               for name, _ in pieces)


def test_no_agents_write_one_empty_piece(tmp_path, monkeypatch):
    pieces, _ = _export(tmp_path, 0, [], monkeypatch)
    assert pieces == [("part-000000000001.parquet", [])]


def test_an_agent_past_the_run_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="agent id 31 is past the run's 30 agents"):
        _export(tmp_path, 30, [1, 31], monkeypatch)


@pytest.mark.slow
def test_a_join_and_its_sort_fit_a_small_pool_where_one_statement_did_not(tmp_path):
    """200,000 agents joined to their personas' texts and sorted in a 32 MiB pool with two
    threads. Fails where the join fed the sort in one statement ("failed to pin block"), as the
    10,000,000-agent export did in the run's 96 MiB room."""
    n = 200_000
    con = duckdb.connect(str(tmp_path / "big.duckdb"))
    con.execute(f"""CREATE TABLE personas AS SELECT 'p' || lpad(i::VARCHAR, 9, '0') AS persona_id,
        'A ferry pilot who reads at the library by the river, number ' || i AS text
        FROM range({n}) t(i)""")
    con.execute(f"""CREATE TABLE agents AS SELECT i + 1 AS agent_id,
        'p' || lpad(((i * 7919) % {n})::VARCHAR, 9, '0') AS persona_id FROM range({n}) t(i)""")
    con.execute("SET threads = 2")
    with store.memory_limit(con, "32MiB"):
        store._export(con, str(tmp_path / "pieces"), n,
                      "SELECT a.agent_id, p.text FROM agents a JOIN personas p USING (persona_id)")
    assert int(con.execute("SELECT current_setting('threads')").fetchone()[0]) == 2
    ids = pq.read_table(tmp_path / "pieces").column("agent_id").to_pylist()
    assert ids == list(range(1, n + 1))

"""``release_cached_blocks``: DuckDB's pool lets go of table blocks already on disk (what keeps a
long run's memory flat), and the memory limit is DuckDB's default again."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from personahub.core.sandbox import lock_settings
from personahub.core.store import connect, scalar
from personahub.sim.store import release_cached_blocks


def _table_bytes(con: duckdb.DuckDBPyConnection) -> int:
    return int(scalar(con, "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                           "WHERE tag = 'BASE_TABLE'"))


def _filled(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / "pool.duckdb")
    con.execute("CREATE TABLE t AS SELECT i, md5(i::VARCHAR) || md5((-i)::VARCHAR) AS s "
                "FROM range(1000000) r(i)")
    con.execute("CHECKPOINT")
    assert scalar(con, "SELECT sum(length(s)) FROM t") > 0  # the blocks are in the pool now
    return con


@pytest.mark.slow
def test_blocks_on_disk_leave_the_pool_and_the_limit_stays(tmp_path: Path) -> None:
    con = _filled(tmp_path)
    limit = scalar(con, "SELECT current_setting('memory_limit')")
    before = _table_bytes(con)
    assert before > 24 << 20
    release_cached_blocks(con)
    assert _table_bytes(con) < before // 2
    assert scalar(con, "SELECT current_setting('memory_limit')") == limit
    assert scalar(con, "SELECT count(*) FROM t WHERE s = md5('7') || md5('-7')") == 1  # from disk
    con.close()


@pytest.mark.slow  # test_blocks_on_disk_leave_the_pool_and_the_limit_stays keeps the module fast
def test_locked_settings_change_nothing(tmp_path: Path) -> None:
    con = _filled(tmp_path)
    before = _table_bytes(con)
    lock_settings(con, external=True)
    release_cached_blocks(con)  # SET is refused: no error, the pool keeps its blocks
    assert _table_bytes(con) == before
    con.close()

"""``memory_limit``: DuckDB's pool is held while a block runs, then given back the limit it had,
the caller's own included; the run's bulk phases and the hub commands hold it through it."""

from __future__ import annotations

import duckdb
import pytest

from personahub.core.store import memory_limit, scalar
from personahub.personas.hub_memory import held_memory
from personahub.sim.store import bounded_pool, release_cached_blocks


def _limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(scalar(con, "SELECT current_setting('memory_limit')"))


def test_the_block_runs_under_the_limit_and_the_callers_own_comes_back() -> None:
    con = duckdb.connect()
    con.execute("SET memory_limit = '300MiB'")
    with memory_limit(con, "96MiB"):
        assert _limit(con) == "96.0 MiB"
    assert _limit(con) == "300.0 MiB"


def test_the_limit_comes_back_when_the_block_fails() -> None:
    con = duckdb.connect()
    before = _limit(con)
    with pytest.raises(ZeroDivisionError), memory_limit(con, "96MiB"):
        _ = 1 / 0
    assert _limit(con) == before


@pytest.mark.parametrize("hold", [
    lambda con: bounded_pool(con, 96 << 20),
    lambda con: held_memory(con, 96),
], ids=["bounded_pool", "held_memory"])
def test_a_callers_own_limit_outlives_the_runs_and_the_hubs_bounded_phases(hold) -> None:
    """Fails where bounded_pool ended with RESET memory_limit (DuckDB's default came back)."""
    con = duckdb.connect()
    con.execute("SET memory_limit = '300MiB'")
    with hold(con):
        assert _limit(con) != "300.0 MiB"
    assert _limit(con) == "300.0 MiB"


def test_release_cached_blocks_gives_back_a_callers_own_limit() -> None:
    """Fails where it ended with RESET memory_limit."""
    con = duckdb.connect()
    con.execute("SET memory_limit = '300MiB'")
    release_cached_blocks(con)
    assert _limit(con) == "300.0 MiB"


def test_a_refused_limit_changes_nothing() -> None:
    con = duckdb.connect()
    before = _limit(con)
    with pytest.raises(duckdb.Error), memory_limit(con, "lots"):
        pass
    assert _limit(con) == before

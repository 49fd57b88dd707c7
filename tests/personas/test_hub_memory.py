"""The hub commands' DuckDB memory limits (personas/hub_memory.py)."""

from __future__ import annotations

from typing import Any

import duckdb

from personahub.personas.hub_memory import bound_memory, held_memory


class Refusing:
    """A connection whose DuckDB refuses the first lower limit, as it does when a key's index it
    cannot evict (the relations key's, after an expansion's batches) is larger than the limit."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.refused = con, 0

    def execute(self, sql: str, *args: Any) -> duckdb.DuckDBPyConnection:
        if sql.startswith("SET memory_limit") and "64MiB" in sql and not self.refused:
            self.refused += 1
            raise duckdb.OutOfMemoryException("Failed to change memory limit to 67108864: could "
                                              "not free up enough memory for the new limit")
        return self.con.execute(sql, *args)


def limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])


def test_a_limit_below_what_duckdb_cannot_evict_is_that_share_over_it() -> None:
    """On main the refusal ended the command (an expansion's summary, after its batches, at 1M
    personas); now the limit is the share over what DuckDB holds outside its evictable blocks."""
    con = duckdb.connect()
    con.execute("SET memory_limit = '3GiB'")
    con.execute("CREATE TEMP TABLE held AS SELECT range AS i FROM range(1000000)")
    unevicted = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory() "
                            "WHERE tag <> 'BASE_TABLE'").fetchall()[0][0]
    refusing = Refusing(con)
    with held_memory(refusing, 64):  # type: ignore[arg-type]
        during = limit(con)
    assert refusing.refused == 1 and limit(con) == "3.0 GiB"
    mib = float(during.split()[0]) * (1024 if during.endswith("GiB") else 1)
    assert during.endswith("MiB") and 64 + unevicted / 2**20 <= mib <= 64 + unevicted / 2**20 + 2


def test_a_limit_duckdb_can_reach_is_set_as_asked() -> None:
    con = duckdb.connect()
    bound_memory(con, 100)
    assert limit(con) == "100.0 MiB"
    bound_memory(con, 10)  # at least 64
    assert limit(con) == "64.0 MiB"

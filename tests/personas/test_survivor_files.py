"""The survivors written to Parquet a range of seq at a time (stage 1 on Ray reads them there):
the rows the hub's ORDER BY streams, numbered in that order across files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from personahub.core.store import connect
from personahub.personas.record import Persona
from personahub.personas.store import copy_survivor_ranges, survivor_batches, upsert_personas


def test_survivor_files_hold_survivor_batches_numbered_in_hub_order(tmp_path: Path) -> None:
    """Duplicates are left out, a gap in seq and a range of duplicates only make no file, no
    file passes its range's size, and the index runs 0..n-1 across files."""
    con = connect(tmp_path / "hub.duckdb")
    upsert_personas(con, [Persona(text=f"person {i} of the hub, {i * 7} words", source="test")
                          for i in range(500)])
    con.execute("UPDATE personas SET is_duplicate = true WHERE seq % 11 = 4 "
                "OR seq BETWEEN 200 AND 260")
    con.execute("DELETE FROM personas WHERE seq BETWEEN 300 AND 380")  # a gap in seq
    ids, texts = next(survivor_batches(con, 1000))
    folder = tmp_path / "files"
    folder.mkdir()
    written = list(copy_survivor_ranges(con, 37, folder))
    tables = [pq.read_table(path) for path, _ in written]
    whole = pa.concat_tables(tables)
    assert whole.column_names == ["index", "persona_id", "text"]
    assert whole.column("persona_id").to_pylist() == ids
    assert whole.column("text").to_pylist() == texts
    assert whole.column("index").to_pylist() == list(range(len(ids)))
    assert [rows for _, rows in written] == [t.num_rows for t in tables]
    assert max(t.num_rows for t in tables) <= 37 and min(t.num_rows for t in tables) > 0
    assert sorted(folder.iterdir()) == [path for path, _ in written]
    con.close()

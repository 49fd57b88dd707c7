"""An import's memory must not grow with the hub: each batch's Arrow data is freed before the
next batch (the import is one transaction), and the personas table has no key, whose index
DuckDB would hold in memory whatever its memory_limit."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from personahub.core.store import connect, insert_columns, transaction
from personahub.personas.hub_memory import personas_keyed
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from tests.cli_helpers import invoke

BATCH = 500


def _batch(start: int) -> list[Persona]:
    return [Persona(text=f"A welder number {i} from Cork who keeps bees and rows on weekends "
                         + "x" * 600, source="hub.jsonl", source_ref=f"line {i + 1}")
            for i in range(start, start + BATCH)]


@pytest.mark.slow
def test_batches_in_one_transaction_do_not_accumulate(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    try:
        with transaction(con):
            upsert_personas(con, _batch(0))
            after_first = pa.total_allocated_bytes()
            for n in range(1, 8):
                upsert_personas(con, _batch(n * BATCH))
                insert_columns(con, "persona_texts", {
                    "source": ["hub.jsonl"] * BATCH, "row_no": list(range(n * BATCH, (n + 1) * BATCH)),
                    "persona_id": [f"p{i}" for i in range(BATCH)], "raw": ["{}" * 100] * BATCH})
            grown = pa.total_allocated_bytes() - after_first
        count = con.execute("SELECT count(*) FROM personas").fetchall()[0][0]
    finally:
        con.close()
    assert count == 8 * BATCH
    # one batch's texts alone are about 0.3 MB: seven retained batches would be several MB
    assert grown < 256 * 1024, f"{grown:,} bytes of Arrow data still held inside the transaction"


@pytest.mark.slow
def test_a_new_hub_has_no_key_and_imports_stay_distinct(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    lines = [f"A baker number {i % 50} from Leeds who sings in a choir" for i in range(120)]
    path = tmp_path / "hub.txt.jsonl"
    path.write_text("".join(f'{{"persona": "{t}"}}\n' for t in lines), encoding="utf-8")
    for _ in range(2):  # the repeats in the file and the whole file again collapse
        result = invoke("personas", "import", path, "--db", db, "--batch-size", "7")
        assert result.exit_code == 0, result.output
    con = connect(db)
    try:
        assert not personas_keyed(con)
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT persona_id) FROM personas").fetchall()[0]
    finally:
        con.close()
    assert total == distinct == 50

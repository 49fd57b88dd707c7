"""An import is one transaction: each batch's Arrow data must be freed before the next batch."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from personahub.core.store import connect, insert_columns, transaction
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas

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

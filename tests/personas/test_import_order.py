"""The hub's order of arrival (seq) follows the imported file, however it is chunked."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cli_helpers import invoke

LINES = 4000


def _texts() -> list[str]:
    """Distinct templated texts, with every 7th line repeating an earlier one (it collapses)."""
    texts = [f"A carpenter number {i} who restores boat {i * 7 % 13} on the river" for i in range(LINES)]
    for i in range(7, LINES, 7):
        texts[i] = texts[i - 5]
    return texts


def _first_lines(texts: list[str]) -> list[int]:
    """The 1-based line of each text's first occurrence, in file order."""
    seen: dict[str, int] = {}
    for number, text in enumerate(texts, 1):
        seen.setdefault(text, number)
    return list(seen.values())


def _imported_lines(db: Path) -> list[int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        refs = [r[0] for r in con.execute("SELECT source_ref FROM personas ORDER BY seq").fetchall()]
    finally:
        con.close()
    return [int(ref.split()[1]) for ref in refs]


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_seq_follows_the_file_in_small_chunks(tmp_path: Path, suffix: str) -> None:
    texts = _texts()
    path = tmp_path / f"hub.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts), encoding="utf-8")
    else:
        pq.write_table(pa.table({"text": texts}), path, row_group_size=300)
    db = tmp_path / "hub.duckdb"
    result = invoke("personas", "import", path, "--db", db, "--batch-size", "500")
    assert result.exit_code == 0, result.output
    assert _imported_lines(db) == _first_lines(texts)

"""An import stages its batches and collapses exact repeats once at the end, in its transaction:
repeats in the file and of the hub keep their first row, whatever the number of passes."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from personahub.core.store import connect, transaction
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from tests.cli_helpers import invoke
from tests.conftest import persona_texts

JUNK = "Lilith Maddox"  # a bare name: the gate fails it


def _people(texts: list[str], source: str) -> list[Persona]:
    return [Persona(text=t, source=source, source_ref=f"line {i + 1}") for i, t in enumerate(texts)]


def _rows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    return [(r[0], r[1], r[2]) for r in con.execute(
        "SELECT text, source, gate FROM personas ORDER BY seq").fetchall()]


@pytest.mark.slow
@pytest.mark.parametrize("pass_rows", [4, 1000])
def test_repeats_keep_their_first_row_in_every_pass(tmp_path: Path, pass_rows: int) -> None:
    from personahub.personas.hub_import import ImportWrites, insert_staged, stage_personas

    texts = persona_texts(12)
    con = connect(tmp_path / "hub.duckdb")
    try:
        upsert_personas(con, _people([texts[0], texts[1], JUNK], "old"))
        # the hub's own, repeats within a batch and across batches, the failed text twice
        batches = [texts[2:6] + [texts[0], texts[2]], [texts[6], JUNK, texts[3], texts[7]],
                   [texts[7], texts[8], texts[1]] + texts[9:12]]
        writes = ImportWrites()
        with transaction(con):
            for n, batch in enumerate(batches):
                stage_personas(con, _people(batch, f"file{n}"), writes)
            added, failed = insert_staged(con, writes, pass_rows=pass_rows)
        rows = _rows(con)
        left = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE "
                           "'_import%'").fetchall()[0][0]
    finally:
        con.close()
    assert added == 10
    assert failed == 1  # JUNK, labelled failed in the hub already, counted once
    assert rows == [(texts[0], "old", "passed"), (texts[1], "old", "passed"),
                    (JUNK, "old", "failed"),
                    *[(t, "file0", "passed") for t in texts[2:6]],
                    (texts[6], "file1", "passed"), (texts[7], "file1", "passed"),
                    *[(t, "file2", "passed") for t in [texts[8], *texts[9:12]]]]
    assert left == 0


@pytest.mark.slow
def test_a_failed_text_repeated_across_batches_is_counted_once(tmp_path: Path) -> None:
    good = persona_texts(3)
    source = tmp_path / "people.jsonl"
    source.write_text("".join(json.dumps({"persona": t}) + "\n"
                              for t in [good[0], JUNK, good[1], JUNK, good[2], JUNK]),
                      encoding="utf-8")
    db = tmp_path / "hub.duckdb"
    result = invoke("personas", "import", str(source), "--db", str(db), "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "4 new in" in result.stdout
    assert "1 of them fail the quality gate" in result.stdout
    again = invoke("personas", "import", str(source), "--db", str(db), "--batch-size", "2")
    assert again.exit_code == 0, again.output
    assert "0 new in" in again.stdout
    assert "1 of them fail the quality gate" in again.stdout


@pytest.mark.slow
def test_an_import_failing_in_a_later_batch_leaves_nothing(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"persona": persona_texts(1)[0]}) + "\n", encoding="utf-8")
    assert invoke("personas", "import", str(first), "--db", str(db)).exit_code == 0
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(6)[1:])
                      + "{not json\n", encoding="utf-8")
    result = invoke("personas", "import", str(broken), "--db", str(db), "--batch-size", "2")
    assert result.exit_code != 0
    con = connect(db, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM personas").fetchall()[0][0] == 1
    finally:
        con.close()

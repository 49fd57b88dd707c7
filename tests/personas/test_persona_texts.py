"""Persona Hub synthesis rows survive import whole (persona_texts) and export back row for row."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from personahub.analysis.export import export_source_file
from personahub.core.errors import PersonahubError
from personahub.personas.importers import KeptRow, iter_personas
from tests.cli_helpers import invoke, one_line_error, usage_error
from tests.official_sample import require_sample

ROWS = [
    {"input persona": "A harbour pilot in Rotterdam", "synthesized text": '"{\\n\\"a\\": 1\\n}"',
     "description": "tool development"},
    {"input persona": "A beekeeper who sells honey at markets",
     "synthesized text": "How many jars fill 3 crates?", "description": "math problem"},
    # the same persona again (one persona row, two text rows) and a non-ASCII text
    {"input persona": "A harbour pilot in Rotterdam", "synthesized text": "Hafenlotse, überall",
     "description": "instruction"},
]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_importer_hands_over_synthesis_rows_whole(tmp_path: Path) -> None:
    kept: list[KeptRow] = []
    personas = list(iter_personas(write_rows(tmp_path / "s.jsonl", ROWS), synth_rows=kept))
    assert [(n, row) for n, row, _ in kept] == list(enumerate(ROWS, 1))
    assert [p for _, _, p in kept] == personas
    plain = write_rows(tmp_path / "p.jsonl", [{"persona": "A nurse"}])
    list(iter_personas(plain, synth_rows=kept))
    assert len(kept) == 3  # only synthesis files have rows to keep


def test_import_keeps_texts_and_export_writes_the_file_back(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "synth.jsonl", ROWS)
    db = tmp_path / "h.duckdb"
    result = invoke("personas", "import", source, "--db", db)
    assert "kept 3 synthesized texts" in result.stdout
    invoke("personas", "import", source, "--db", db)  # a re-import adds nothing
    con = duckdb.connect(str(db), read_only=True)
    stored = con.execute("SELECT row_no, persona_id, synthesized_text, description "
                         "FROM persona_texts ORDER BY row_no").fetchall()
    personas = con.execute("SELECT count(*) FROM personas").fetchall()[0][0]
    con.close()
    assert [(r[0], r[2], r[3]) for r in stored] == [
        (n, row["synthesized text"], row["description"]) for n, row in enumerate(ROWS, 1)]
    assert stored[0][1] == stored[2][1] and personas == 2
    back = tmp_path / "back.jsonl"
    result = invoke("export", "--source-file", "synth.jsonl", "--db", db, "--out", back)
    assert "wrote 3 records" in result.stdout
    assert read_rows(back) == ROWS
    assert back.read_bytes() == source.read_bytes()  # json.dumps wrote both


def test_source_file_errors_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    invoke("personas", "import", write_rows(tmp_path / "synth.jsonl", ROWS), "--db", db)
    missing = invoke("export", "--source-file", "other.jsonl", "--db", db, "--out",
                     tmp_path / "o.jsonl")
    assert "not an imported synthesis file" in one_line_error(missing)
    both = invoke("export", "--source-file", "synth.jsonl", "--job", "x", "--db", db, "--out",
                  tmp_path / "o.jsonl")
    assert "exactly one of --job, --run or --source-file" in usage_error(both)
    con = duckdb.connect(str(db), read_only=True)
    with pytest.raises(PersonahubError, match="--format personahub"):
        export_source_file(con, tmp_path / "o.jsonl", "synth.jsonl", fmt="chat")
    con.close()


@pytest.mark.slow
def test_official_sample_round_trips_row_for_row(tmp_path: Path) -> None:
    sample = require_sample()
    local = tmp_path / sample.name
    local.write_bytes(sample.read_bytes())
    db = tmp_path / "h.duckdb"
    invoke("personas", "import", local, "--db", db)
    back = tmp_path / "back.jsonl"
    invoke("export", "--source-file", local, "--db", db, "--out", back)
    original = read_rows(local)
    assert len(original) == 5000
    assert read_rows(back) == original

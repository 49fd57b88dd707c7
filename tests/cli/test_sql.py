"""``personahub sql`` output formats (issue 12, item 5): CSV lines end in ``\\n``; ``json`` is one
array and ``jsonl`` JSON Lines, JSON columns as values (not JSON text encoded again)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import invoke, usage_error

QUERY = ("select * from (values (1, 'a,b', '{\"k\": [1, 2]}'::JSON), (2, 'c', 'null'::JSON)) "
         "t(n, s, j) order by n")


@pytest.fixture
def db(tmp_path: Path, persona_file) -> Path:
    path = tmp_path / "hub.duckdb"
    assert invoke("personas", "import", persona_file(3), "--db", path).exit_code == 0
    return path


def test_csv_lines_end_in_newline_not_crlf(db: Path) -> None:
    result = invoke("sql", "--db", db, "--format", "csv", QUERY)
    assert result.exit_code == 0
    assert "\r" not in result.stdout
    assert result.stdout.split("\n") == ["n,s,j", '1,"a,b","{""k"": [1, 2]}"', "2,c,null", ""]


def test_json_is_one_array_with_json_columns_as_values(db: Path) -> None:
    result = invoke("sql", "--db", db, "--format", "json", QUERY)
    assert json.loads(result.stdout) == [{"n": 1, "s": "a,b", "j": {"k": [1, 2]}},
                                         {"n": 2, "s": "c", "j": None}]
    empty = invoke("sql", "--db", db, "--format", "json", "select 1 as x where false")
    assert json.loads(empty.stdout) == []


def test_jsonl_is_one_object_per_line(db: Path) -> None:
    result = invoke("sql", "--db", db, "--format", "jsonl", QUERY)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["j"] == {"k": [1, 2]} and len(rows) == 2


def test_unknown_format_names_all_four(db: Path) -> None:
    line = usage_error(invoke("sql", "--db", db, "--format", "yaml", "select 1"))
    assert "table, csv, json or jsonl" in line


def test_table_cells_print_verbatim(db: Path) -> None:
    result = invoke("sql", "--db", db, "select 'pip install ''personahub[embed]''' as hint, "
                    "'a[/]b [bold]x' as path")
    assert "pip install 'personahub[embed]'" in result.stdout
    assert "a[/]b [bold]x" in result.stdout

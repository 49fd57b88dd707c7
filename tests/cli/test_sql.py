"""``personahub sql`` output formats: CSV lines end in ``\\n``; ``json`` is one
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


def test_unknown_format_names_every_format(db: Path) -> None:
    line = usage_error(invoke("sql", "--db", db, "--format", "yaml", "select 1"))
    assert "--format 'yaml': use one of table, csv, json, jsonl, markdown" in line


def test_table_cells_print_verbatim(db: Path) -> None:
    result = invoke("sql", "--db", db, "select 'pip install ''personahub[embed]''' as hint, "
                    "'a[/]b [bold]x' as path")
    assert "pip install 'personahub[embed]'" in result.stdout
    assert "a[/]b [bold]x" in result.stdout


# --- every statement's result, full width, --no-header, --scalar, markdown ----------

TWO = "select 1 as a; set variable x = 2; select getvariable('x') as b, 'y' as c"


def test_every_statement_with_rows_prints_in_order_separated_by_an_empty_line(db: Path) -> None:
    csv_out = invoke("sql", "--db", db, "--format", "csv", TWO).stdout
    assert csv_out == "a\n1\n\nb,c\n2,y\n"  # the SET's status is not a result
    json_out = invoke("sql", "--db", db, "--format", "json", TWO).stdout
    assert [json.loads(part) for part in json_out.split("\n\n")] == [[{"a": 1}], [{"b": 2, "c": "y"}]]
    jsonl_out = invoke("sql", "--db", db, "--format", "jsonl", TWO).stdout
    assert jsonl_out == '{"a": 1}\n\n{"b": 2, "c": "y"}\n'
    table = invoke("sql", "--db", db, TWO).stdout
    first, second = table.split("\n\n")
    assert "a" in first and "1" in first and "b" in second and "y" in second
    markdown = invoke("sql", "--db", db, "--format", "markdown", TWO).stdout
    assert markdown == "| a |\n| ---: |\n| 1 |\n\n| b | c |\n| ---: | --- |\n| 2 | y |\n"


def test_a_piped_table_is_as_wide_as_its_rows(db: Path) -> None:
    long_text = "word " * 60 + "end"
    result = invoke("sql", "--db", db, f"select 'someone.with.a.long.address@example.com' as email, "
                    f"'{long_text}' as text")
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout
    assert len(lines) == 5  # top rule, header, rule, one row on one line, bottom rule
    assert "someone.with.a.long.address@example.com" in lines[3] and long_text in lines[3]
    assert len(lines[3]) > 300


def test_no_header_leaves_out_the_column_names(db: Path) -> None:
    assert invoke("sql", "--db", db, "--format", "csv", "--no-header",
                  "select 1 as a union all select 2").stdout == "1\n2\n"
    table = invoke("sql", "--db", db, "--no-header", "select 'value' as heading").stdout
    assert "value" in table and "heading" not in table


def test_scalar_prints_one_bare_value(db: Path) -> None:
    assert invoke("sql", "--db", db, "--scalar", "select count(*) from personas").stdout == "3\n"
    assert invoke("sql", "--db", db, "--scalar", "select null").stdout == "\n"
    assert invoke("sql", "--db", db, "--scalar", "select true").stdout == "true\n"
    assert invoke("sql", "--db", db, "--scalar", "select [1, 2]").stdout == "[1, 2]\n"
    assert invoke("sql", "--db", db, "--scalar",
                  "select persona_id from personas order by persona_id limit 1").stdout.strip()


def test_scalar_refuses_any_other_shape(db: Path) -> None:
    from tests.cli_helpers import one_line_error

    assert "returned no row" in one_line_error(invoke("sql", "--db", db, "--scalar",
                                                      "select 1 where false"))
    assert "2 rows of 1 column" in one_line_error(invoke("sql", "--db", db, "--scalar",
                                                         "select 1 union all select 2"))
    assert "1 row of 2 columns" in one_line_error(invoke("sql", "--db", db, "--scalar",
                                                         "select 1, 2"))
    assert "2 results" in one_line_error(invoke("sql", "--db", db, "--scalar",
                                                "select 1; select 2"))


def test_markdown_escapes_pipes_and_line_breaks(db: Path) -> None:
    result = invoke("sql", "--db", db, "--format", "markdown",
                    "select 'a|b' as s, 'x' || chr(10) || 'y' as t, null as n, 1.5 as f")
    assert result.stdout.splitlines() == ["| s | t | n | f |", "| --- | --- | --- | ---: |",
                                          "| a\\|b | x<br>y | NULL | 1.5 |"]


def test_the_limit_note_goes_to_stderr(db: Path) -> None:
    result = invoke("sql", "--db", db, "--limit", "1", "select * from range(3)")
    assert "3 rows, first 1 shown" in result.stderr and "rows, first" not in result.stdout

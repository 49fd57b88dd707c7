"""The database as a stranger reads it: after the quick start's
``personahub run``, the user's own commands (``personahub sql``, ``personahub jobs``) show one
name per thing."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from personahub.cli.common import out
from personahub.core.dbcheck import DatabaseFileError
from personahub.core.store import SCHEMA_VERSION, connect, schema_version
from tests.cli_helpers import ROOT, invoke, one_line_error


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick start's run (one step), offline."""
    db = tmp_path_factory.mktemp("quick") / "personahub.duckdb"
    result = invoke("run", ROOT / "scenarios" / "riverside_town.py", "--db", db, "--steps", "1",
                    "--preview", "0")
    assert result.exit_code == 0, result.output
    return db


def sql_rows(db: Path, query: str) -> list[list[str]]:
    """``personahub sql --format csv --no-header QUERY``, as rows."""
    result = invoke("sql", "--db", db, "--format", "csv", "--no-header", query)
    assert result.exit_code == 0, result.output
    return list(csv.reader(io.StringIO(result.stdout)))


def test_show_tables_lists_every_view_once(quick_start: Path) -> None:
    names = [row[0] for row in sql_rows(quick_start, "show tables")]
    views = [n for n in names if n.startswith("v_")]
    assert "v_runs" in views and len(views) >= 13
    assert len(views) == len(set(views)), sorted(views)


def test_seed_personas_have_one_source_name(quick_start: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's seed personas and the rest of the seed file imported by its relative path (the
    README's walk-through) are all ``seed``: not an absolute path here and a relative one there."""
    db = tmp_path / "hub.duckdb"
    shutil.copy(quick_start, db)
    monkeypatch.chdir(ROOT)
    imported = invoke("personas", "import", "personas/data/seed_personas.jsonl", "--db", db)
    assert imported.exit_code == 0, imported.output
    sources = sql_rows(db, "select source, count(*) from personas where source <> 'expand' "
                           "group by 1")
    assert [s for s, _ in sources] == ["seed"]
    assert int(sources[0][1]) == sum(1 for line in (ROOT / "personas" / "data" /
                                                    "seed_personas.jsonl").open() if line.strip())


def test_jobs_listing_names_the_jobs_tables_columns(quick_start: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``personahub jobs``'s columns are the ``jobs`` table's by name, but ``what``, which the
    listing and docs/database.md both say is no column."""
    monkeypatch.setattr(out, "width", 160)  # a terminal wide enough for every name
    columns = {row[0] for row in sql_rows(quick_start, "select column_name from "
                                                       "information_schema.columns where "
                                                       "table_name = 'jobs'")}
    result = invoke("jobs", "--db", quick_start)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "kind" in line and "┃" in line)
    shown = [cell.strip() for cell in header.split("┃") if cell.strip()]
    assert "what" in shown and set(shown) - {"what"} <= columns, shown
    assert "what: a few words from the job's config, not a column" in " ".join(
        result.stdout.split())
    listed = json.loads(invoke("jobs", "--db", quick_start, "--json").stdout)
    assert set(listed[0]) - {"what"} <= columns, listed[0]
    doc = (ROOT / "docs" / "database.md").read_text(encoding="utf-8")
    assert "`what`, which is not a column" in doc


def test_llm_calls_name_the_engine_llm_and_the_served_model_model_name(quick_start: Path) -> None:
    """One name per thing: ``llm`` is the engine label (as ``runs.llm``), ``model_name`` the
    served model's name; no ``model`` column beside them."""
    columns = [row[0] for row in sql_rows(quick_start, "select column_name from "
                                                       "(describe llm_calls)")]
    assert "llm" in columns and "model_name" in columns and "model" not in columns
    assert sql_rows(quick_start, "select distinct l.llm, l.model_name, r.llm from llm_calls l "
                                 "join runs r using (run_id)") == [["offline", "offline", "offline"]]


def another_version(quick_start: Path, path: Path, version: str | None) -> Path:
    """A copy of the quick start's file stamped with another schema version (None: no
    ``schema_meta`` at all, as a personahub file before the table)."""
    shutil.copy(quick_start, path)
    con = duckdb.connect(str(path))
    if version is None:
        con.execute("DROP TABLE schema_meta")
    else:
        con.execute("UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", [version])
    con.close()
    return path


@pytest.mark.parametrize("version", ["5", "4", None])
def test_a_file_of_another_schema_version_is_refused_unchanged(
        quick_start: Path, tmp_path: Path, version: str | None) -> None:
    """Readers (``sql``, ``jobs``) and writers (``run``, ``personas import``) refuse a file of a
    schema version they cannot upgrade in one line naming the file, its version and this one, and
    what to do; not a byte of it changes."""
    db = another_version(quick_start, tmp_path / "old.duckdb", version)
    before = db.read_bytes()
    found = "no schema version" if version is None else f"schema version {version}"
    seeds = ROOT / "personas" / "data" / "seed_personas.jsonl"
    for args in (("sql", "--db", db, "select count(*) from personas"),
                 ("jobs", "--db", db),
                 ("run", ROOT / "scenarios" / "riverside_town.py", "--db", db, "--steps", "1"),
                 ("personas", "import", seeds, "--db", db)):
        line = one_line_error(invoke(*args))
        assert str(db) in line and f"({found}; " in line, line
        assert f"schema version {SCHEMA_VERSION} and upgrades versions 1 and 2" in line
        assert "give a new --db" in line and "personahub export, personahub sql" in line
    assert db.read_bytes() == before


def test_the_store_refuses_another_version_to_readers_and_writers(quick_start: Path,
                                                                  tmp_path: Path) -> None:
    """The same refusal from Python (``core.store.connect``), read-only or not; this version's
    file opens both ways."""
    raw = duckdb.connect(str(quick_start), read_only=True)
    assert schema_version(raw) == str(SCHEMA_VERSION) == "3"
    raw.close()
    db = another_version(quick_start, tmp_path / "old.duckdb", "4")
    for read_only in (True, False):
        with pytest.raises(DatabaseFileError, match=rf"old.duckdb: written by another personahub "
                                                    rf"\(schema version 4; this one reads schema "
                                                    rf"version {SCHEMA_VERSION} and upgrades "
                                                    rf"versions 1 and 2\)"):
            connect(db, read_only=read_only)
    for read_only in (True, False):
        connect(quick_start, read_only=read_only).close()


def test_llm_calls_run_id_holds_a_scenario_runs_id_only(quick_start: Path, tmp_path: Path) -> None:
    """``llm_calls.run_id`` is the run a call is part of (its own, its expansion's, its
    interviews'); a synthesis job's and a judge's calls (even of the run) have none, and
    ``v_run_usage`` counts those under their own job."""
    db = tmp_path / "jobs.duckdb"
    shutil.copy(quick_start, db)
    run_id = sql_rows(db, "select run_id from runs")[0][0]
    for args in (("interview", "What now?", "--run", run_id, "--agent", "1"),
                 ("judge", "--run", run_id, "--sample", "2"),
                 ("synthesize", "instruction", "--n", "2")):
        result = invoke(*args, "--db", db)
        assert result.exit_code == 0, result.output
    tags = sql_rows(db, "select job_kind, run_id, job_id = run_id from llm_calls "
                        "group by all order by all")
    assert tags == [["expansion", run_id, "False"], ["interview", run_id, "False"],
                    ["judge", "", ""], ["run", run_id, "True"], ["synthesis", "", ""]]
    usage = dict(sql_rows(db, "select j.kind, u.calls from v_run_usage u "
                              "join jobs j on j.job_id = u.run_id"))
    calls = dict(sql_rows(db, "select job_kind, count(*) from llm_calls group by 1"))
    assert usage == {"run": str(sum(int(calls[k]) for k in ("run", "expansion", "interview"))),
                     "judge": calls["judge"], "synthesis": calls["synthesis"]}

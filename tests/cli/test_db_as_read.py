"""The database as a stranger reads it (issue 44, item 6): after the quick start's
``personahub run``, the user's own commands (``personahub sql``, ``personahub jobs``) show one
name per thing."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from personahub.cli.common import out
from tests.cli_helpers import ROOT, invoke


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

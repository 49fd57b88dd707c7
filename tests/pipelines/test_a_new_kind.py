"""A new job kind is its files and one row; the tests that go through every kind take it from the row.

``tests/pipelines/demo_kind.py`` holds what a kind's spec, prompt, table, command and job
function would; ``DEMO`` below is its row, as ``pipelines/labels.py`` would hold it. Registered
from that row, the kind is stopped and resumed, and run on Ray, by the same checks as every
shipped kind; its tables have their family and owner; its sample is a stored config of its
kind; its command is registered at its row's path; and the database page's table of kinds and
the config-fields pins would take it in, the check failing until they are written. A row
without its table or its sample config fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from personahub import runtime
from personahub.cli import app as cli_app
from personahub.core.kernel import spec_for
from personahub.pipelines.labels import SHIPPED, ShippedKind
from tests.pipeline_helpers import rows
from tests.pipelines.every_kind import Kind
from tests.pipelines.test_config_fields import fields_line, pinned, sample_problems, unpinned
from tests.pipelines.test_every_kind_on_ray import runs_on_ray_as_it_does_locally
from tests.pipelines.test_every_kind_resumes import resumes_to_the_same_rows
from tests.test_layers import ROOT
from tests.test_shipped_kinds import (
    DATABASE_PAGE,
    documented_kinds,
    kinds_table,
    missing_commands,
)
from tests.test_sql_owners import (
    FAMILIES,
    created_tables,
    kind_families,
    module_path,
    scan,
    unfamilied,
)

KIND = "demo_count"


def words(config: Mapping[str, Any]) -> str:
    """Describe a word count in a few words (its label in personahub jobs)."""
    return f"{len(config.get('texts') or [])} text(s)"


#: the kind's row, as pipelines/labels.py would hold it
DEMO = ShippedKind(
    module="tests.pipelines.demo_kind", label=words,
    command="tests.pipelines.demo_kind:count_command", command_path=("demo-count",),
    api=("tests.pipelines.demo_kind:count_words",), noun="word count", unit="texts",
    id_prefix="demo",
    tables=("demo_counts",),
    sql_owners=("tests.pipelines.demo_kind",),
    sample={"texts": [f"text {i}: " + " ".join(["word"] * (i + 1)) for i in range(7)],
            "batch_size": 2})

CASE = Kind(KIND, DEMO)


@pytest.fixture(autouse=True)
def registered() -> None:
    runtime.register_kinds([DEMO])


def test_a_new_kind_is_registered_from_its_row() -> None:
    spec = spec_for(KIND)
    assert spec is not None and type(spec).__module__ == DEMO.module
    assert (spec.noun, spec.unit) == ("word count", "texts")
    assert spec.label(DEMO.sample) == "7 text(s)"
    assert spec.resume_hint("J1", Path("x.duckdb")) == "personahub resume J1 --db x.duckdb"
    assert spec.new_id().startswith("demo-")
    assert KIND not in SHIPPED  # the package does not ship it


@pytest.mark.slow
def test_a_new_kind_stops_and_resumes_as_every_shipped_kind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resumes_to_the_same_rows(CASE, tmp_path, monkeypatch)


@pytest.mark.slow
def test_a_new_kind_runs_on_ray_as_every_shipped_kind(
        local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs_on_ray_as_it_does_locally(CASE, tmp_path, monkeypatch)


def test_a_new_kind_s_tables_have_their_family_and_its_sql_its_owner() -> None:
    module = ROOT / module_path(DEMO.module)
    families = {**FAMILIES, **kind_families({KIND: DEMO})}
    from tests.pipelines import demo_kind

    made = created_tables(demo_kind.TABLE)
    assert made == {"demo_counts"}
    assert unfamilied(made, kind_families({KIND: DEMO})) == []
    assert scan([module], families) == ({}, {})
    # a row without its table: the table is in no family, and its SQL reaches into nobody's
    lacking = kind_families({KIND: DEMO.replace(tables=())})
    assert unfamilied(made, lacking) == [
        "demo_counts: in no family (add it to its kind's row, tables=...)"]
    # a row naming another module as its owner: the kind's own SQL is a crossing
    elsewhere = kind_families({KIND: DEMO.replace(sql_owners=("personahub.sim.store",))})
    crossings, _ = scan([module], {**FAMILIES, **elsewhere})
    assert list(crossings) == [("tests/pipelines/demo_kind.py", KIND)]


def test_a_new_kind_s_sample_is_a_stored_config_and_its_fields_want_a_pinned_line() -> None:
    spec = runtime.registered_spec(KIND)
    assert spec is not None
    config_type = spec.config_type
    assert sample_problems(KIND, DEMO, config_type) == []
    assert sample_problems(KIND, DEMO.replace(sample={}), config_type) == [
        f"{KIND}: no sample config (the row's sample=)"]
    assert fields_line(config_type).endswith(" texts seed batch_size*")
    assert unpinned({**SHIPPED, KIND: DEMO}, pinned()) == [KIND]


@pytest.mark.slow
def test_a_new_kind_s_command_is_registered_at_its_row_s_path(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("jobs")(lambda: None)  # a second command, so the app keeps its command names
    cli_app.register({(): app}, cli_app.kind_commands({KIND: DEMO}), {})
    assert missing_commands({KIND: DEMO}, app) == []
    db = tmp_path / "hub.duckdb"
    done = CliRunner().invoke(app, ["demo-count", "one two", "three", "--db", str(db)])
    assert done.exit_code == 0, done.output
    assert "2 texts counted" in done.output
    assert rows(db, "SELECT text, words >= 0 FROM demo_counts ORDER BY position") == [
        ("one two", True), ("three", True)]


def test_the_database_page_s_table_of_kinds_would_take_a_new_kind_in() -> None:
    table = kinds_table({**SHIPPED, KIND: DEMO})
    assert table.endswith("| `demo_count` | `personahub demo-count` | `demo_counts` |\n")
    assert documented_kinds(DATABASE_PAGE.read_text(encoding="utf-8")) != table

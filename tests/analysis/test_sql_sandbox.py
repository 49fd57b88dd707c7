"""`personahub sql` is read-only for the machine too: no files, no extensions, no settings.

One database (a short offline run through the CLI) is shared by every case; each case checks
that the database file is byte-identical afterwards and that nothing appeared on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from personahub.analysis.views import VIEW_NAMES, query_files
from tests.cli_helpers import invoke, one_line_error

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

FILES = "sql: file access is disabled; use --allow-files to read or write files"
EXTENSIONS = "sql: installing, loading or updating extensions is disabled"
LOCKED = "cannot be changed here (SET, RESET and PRAGMA settings are locked)"




def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A database from one offline step of the default scenario, and its SHA-256."""
    db = tmp_path_factory.mktemp("hub") / "hub.duckdb"
    result = invoke("run", ROOT / "scenarios" / "riverside_town.py", "--db", db, "--steps", "1")
    assert result.exit_code == 0, result.output
    return {"db": db, "sha": digest(db)}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder holding one small CSV, for the cases that read or write files."""
    (tmp_path / "in.csv").write_text("name,n\nferry,3\nmarket,5\n", encoding="utf-8")
    return tmp_path


@pytest.fixture(autouse=True)
def database_untouched(hub: dict):
    """Every case leaves the database byte-identical and without a WAL."""
    yield
    assert digest(hub["db"]) == hub["sha"]
    assert not Path(f"{hub['db']}.wal").exists()


REFUSED = [
    # (case, SQL with {dir} for the test's folder, the refusal it gets)
    ("copy-to", "COPY (SELECT 1 AS a) TO '{dir}/x.csv'", FILES),
    ("copy-to-parquet", "COPY emissions TO '{dir}/e.parquet' (FORMAT parquet)", FILES),
    ("export-database", "EXPORT DATABASE '{dir}/dump'", FILES),
    ("copy-after-select", "SELECT 1; COPY (SELECT 2) TO '{dir}/y.csv'", FILES),
    ("read-csv", "SELECT * FROM read_csv('{dir}/in.csv')", FILES),
    ("read-csv-etc", "SELECT * FROM read_csv('/etc/passwd', sep = ':')", FILES),
    ("read-text", "SELECT content FROM read_text('/etc/passwd')", FILES),
    ("read-blob", "SELECT size FROM read_blob('{dir}/in.csv')", FILES),
    ("glob", "SELECT * FROM glob('{dir}/*')", FILES),
    ("sniff-csv", "SELECT * FROM sniff_csv('{dir}/in.csv')", FILES),
    ("url", "SELECT * FROM read_parquet('https://example.com/x.parquet')", FILES),
    ("attach", "ATTACH '{dir}/other.duckdb' AS other", FILES),
    ("install", "INSTALL httpfs", EXTENSIONS),
    ("force-install", "FORCE INSTALL httpfs", EXTENSIONS),
    ("install-community", "INSTALL h3 FROM community", EXTENSIONS),
    ("load", "LOAD httpfs", EXTENSIONS),
    ("update-extensions", "UPDATE EXTENSIONS", EXTENSIONS),
    ("load-after-select", "SELECT 1; LOAD httpfs", EXTENSIONS),
    ("set-external-access", "SET enable_external_access = true", LOCKED),
    ("set-lock", "SET lock_configuration = false", LOCKED),
    ("set-autoinstall", "SET autoinstall_known_extensions = true", LOCKED),
    ("set-global", "SET GLOBAL autoload_known_extensions = true", LOCKED),
    ("reset", "RESET enable_external_access", LOCKED),
    ("set-temp-dir", "SET temp_directory = '{dir}/spill'", LOCKED),
    ("pragma-profiling", "PRAGMA enable_profiling", LOCKED),
    ("pragma-output", "PRAGMA profiling_output = '{dir}/profile.json'", LOCKED),
    ("call-logging", "CALL enable_logging()", LOCKED),
]


@pytest.mark.parametrize(("sql", "refusal"), [(s, r) for _, s, r in REFUSED],
                         ids=[case for case, _, _ in REFUSED])
def test_refused_in_one_line_and_nothing_written(hub: dict, files: Path, sql: str,
                                                 refusal: str) -> None:
    before = listing(files)
    line = one_line_error(invoke("sql", "--db", hub["db"], sql.format(dir=files)))
    assert refusal in line
    assert listing(files) == before


LOCKED_WITH_FILES = [
    # --allow-files gives files back, nothing else
    ("install", "INSTALL httpfs", EXTENSIONS),
    ("load", "LOAD httpfs", EXTENSIONS),
    ("set-external-access", "SET enable_external_access = false", LOCKED),
    ("set-autoload", "SET autoload_known_extensions = true", LOCKED),
    ("pragma-profiling", "PRAGMA enable_profiling", LOCKED),
    ("delete", "DELETE FROM emissions", "read-only"),
    ("create-table", "CREATE TABLE t AS SELECT * FROM read_csv('{dir}/in.csv')", "read-only"),
    ("attach-new", "ATTACH '{dir}/other.duckdb' AS other", "read-only"),
]


@pytest.mark.parametrize(("sql", "refusal"), [(s, r) for _, s, r in LOCKED_WITH_FILES],
                         ids=[case for case, _, _ in LOCKED_WITH_FILES])
def test_allow_files_keeps_the_rest_locked(hub: dict, files: Path, sql: str,
                                           refusal: str) -> None:
    before = listing(files)
    line = one_line_error(invoke("sql", "--db", hub["db"], "--allow-files",
                                 sql.format(dir=files)))
    assert refusal in line
    assert "--allow-files" not in line
    assert listing(files) == before


def rows(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


WORKS = [
    # (case, SQL, check on the JSON rows)
    ("select", "SELECT count(*) AS n FROM emissions", lambda r: r[0]["n"] > 0),
    ("duplicate-rate", "SELECT sum(n) AS n FROM v_duplicate_rate", lambda r: r[0]["n"] > 0),
    ("run-usage", "SELECT sum(calls) AS calls FROM v_run_usage", lambda r: r[0]["calls"] > 0),
    ("run-cost", "SELECT cost_usd FROM v_run_cost", lambda r: r == [{"cost_usd": 0.0}]),
    ("json-functions", "SELECT json_extract_string(config, '$.scenario') IS NOT NULL AS ok "
                       "FROM jobs WHERE kind = 'run'", lambda r: r == [{"ok": True}]),
    ("pragma-table-info", "PRAGMA table_info('emissions')",
     lambda r: "kind" in {c["name"] for c in r}),
    ("variables", "SET VARIABLE k = 'npc_dialogue'; "
                  "SELECT count(*) > 0 AS ok FROM emissions WHERE kind = getvariable('k')",
     lambda r: r == [{"ok": True}]),
    ("current-setting", "SELECT current_setting('enable_external_access') AS on",
     lambda r: r == [{"on": False}]),
]


@pytest.mark.parametrize(("sql", "check"), [(s, c) for _, s, c in WORKS],
                         ids=[case for case, _, _ in WORKS])
def test_plain_queries_work(hub: dict, sql: str, check) -> None:
    got = rows(invoke("sql", "--db", hub["db"], "--format", "jsonl", sql))
    assert check(got), got


@pytest.mark.parametrize("view", VIEW_NAMES)
def test_every_view_runs(hub: dict, view: str) -> None:
    result = invoke("sql", "--db", hub["db"], "--format", "csv", f"SELECT * FROM {view}")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0]  # the header row


# every query both ways in the full suite; the fast subset passes all by --file and one as a path
@pytest.mark.parametrize(("name", "how"), [
    pytest.param(name, how, id=f"{how}-{name}",
                 marks=pytest.mark.slow if how == "path" and i else ())
    for how in ("--file", "path") for i, name in enumerate(sorted(query_files()))])
def test_ready_queries_run(hub: dict, name: str, how: str) -> None:
    path = query_files()[name]
    args = ["--file", path] if how == "--file" else [path]
    result = invoke("sql", "--db", hub["db"], "--format", "csv", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0]


def test_allow_files_reads_a_csv(hub: dict, files: Path) -> None:
    got = rows(invoke("sql", "--db", hub["db"], "--allow-files", "--format", "jsonl",
                      f"SELECT name, n FROM read_csv('{files}/in.csv') ORDER BY n"))
    assert got == [{"name": "ferry", "n": 3}, {"name": "market", "n": 5}]


def test_allow_files_copies_to_a_file(hub: dict, files: Path) -> None:
    out = files / "kinds.csv"
    result = invoke("sql", "--db", hub["db"], "--allow-files",
                    f"COPY (SELECT DISTINCT kind FROM emissions ORDER BY kind) TO '{out}'")
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "kind" and "npc_dialogue" in lines[1:]


def test_allow_files_joins_a_csv_with_a_view(hub: dict, files: Path) -> None:
    (files / "kinds.csv").write_text("kind\nnpc_dialogue\n", encoding="utf-8")
    got = rows(invoke("sql", "--db", hub["db"], "--allow-files", "--format", "jsonl",
                      f"SELECT k.kind, sum(v.n) > 0 AS seen FROM read_csv('{files}/kinds.csv') k "
                      "JOIN v_duplicate_rate v USING (kind) GROUP BY 1"))
    assert got == [{"kind": "npc_dialogue", "seen": True}]


def test_help_documents_allow_files() -> None:
    result = invoke("sql", "--help")
    assert result.exit_code == 0
    assert "--allow-files" in result.output

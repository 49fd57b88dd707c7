"""`personahub sql` never reaches the database file, and reaches other files only as its flags say.

One database (a short offline run through the CLI) is shared by every case, with a hard link and
a symbolic link to it beside it. Each case checks that the database (and so its hard link) is
byte-identical afterwards, that no WAL or temp folder appeared beside it, that nothing new
appeared in its folder, and, for a refused statement, that nothing appeared in the test's folder.
The escapes are those of the second audit and the ones found while closing them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from personahub.analysis.views import VIEW_NAMES, query_files
from tests.cli_helpers import invoke, one_line_error

ROOT = Path(__file__).resolve().parents[2]

FILES = "sql: file access is disabled; use --allow-files to read other files"
WRITES = "needs --allow-writes DIR (it writes files)"
INSIDE = "can be read or written (--allow-writes)"
EXTENSIONS = "sql: installing, loading or updating extensions is disabled"
LOCKED = "cannot be changed here (SET, RESET and PRAGMA settings are locked)"
READ_ONLY = "read-only mode"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A database from one offline step of the default scenario, a hard link and a symbolic
    link to it in its folder, its SHA-256 and its folder's listing."""
    db = tmp_path_factory.mktemp("hub") / "hub.duckdb"
    result = invoke("run", ROOT / "scenarios" / "riverside_town.py", "--db", db, "--steps", "1")
    assert result.exit_code == 0, result.output
    os.link(db, db.with_name("hard.duckdb"))
    db.with_name("sym.duckdb").symlink_to(db)
    return {"db": db, "sha": digest(db), "folder": listing(db.parent)}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder holding one small CSV and a file with a secret, for the cases that read or
    write files, and an empty output folder ``out``."""
    (tmp_path / "in.csv").write_text("name,n\nferry,3\nmarket,5\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.fixture(autouse=True)
def database_untouched(hub: dict):
    """Every case leaves the database byte-identical, without a WAL or a temp folder, and adds
    nothing to its folder."""
    yield
    db = hub["db"]
    assert digest(db) == hub["sha"]
    assert digest(db.with_name("hard.duckdb")) == hub["sha"]
    assert not Path(f"{db}.wal").exists()
    assert not Path(f"{db}.tmp").exists()
    assert listing(db.parent) == hub["folder"]


def fill(sql: str, hub: dict, files: Path) -> str:
    db = hub["db"]
    return sql.format(db=db, hard=db.with_name("hard.duckdb"), sym=db.with_name("sym.duckdb"),
                      dir=files, out=files / "out", up=f"{files / 'out'}/../../{db.parent.name}")


NO_FLAGS: list[tuple[str, str, str]] = [
    # (case, SQL with {db} {hard} {sym} {dir} {out}, the refusal it gets), no flag given
    ("copy-to-db", "COPY (SELECT 1) TO '{db}'", WRITES),
    ("copy-to-db-in-place", "COPY (SELECT 1) TO '{db}' (USE_TMP_FILE false)", WRITES),
    ("copy-to-wal", "COPY (SELECT 1) TO '{db}.wal'", WRITES),
    ("copy-to-temp-folder", "COPY (SELECT 1) TO '{db}.tmp/x.csv'", WRITES),
    ("copy-to-hard-link", "COPY (SELECT 1) TO '{hard}' (USE_TMP_FILE false)", WRITES),
    ("copy-to", "COPY (SELECT 1 AS a) TO '{dir}/x.csv'", WRITES),
    ("copy-to-parquet", "COPY emissions TO '{dir}/e.parquet' (FORMAT parquet)", WRITES),
    ("copy-to-expression", "COPY (SELECT 1) TO ('{db}' || '.wal')", WRITES),
    ("copy-after-select", "SELECT 1; COPY (SELECT 2) TO '{dir}/y.csv'", WRITES),
    ("explain-analyze-copy", "EXPLAIN ANALYZE COPY (SELECT 1) TO '{db}.wal'", WRITES),
    ("export-database", "EXPORT DATABASE '{dir}/dump'", WRITES),
    ("export-to-temp-folder", "EXPORT DATABASE '{db}.tmp'", WRITES),
    ("import-database", "IMPORT DATABASE '{dir}'", WRITES),
    ("copy-from-database", "COPY FROM DATABASE hub TO memory", WRITES),
    ("prepare-copy", "PREPARE p AS COPY (SELECT 1) TO '{db}.wal'", "PREPARE statements"),
    ("execute", "EXECUTE p", "EXECUTE statements"),
    ("query-function", "SELECT * FROM query('COPY (SELECT 1) TO ''{db}.wal''')",
     "single SELECT"),
    ("read-db-bytes", "SELECT size FROM read_blob('{db}')", FILES),
    ("read-wal", "SELECT size FROM read_blob('{db}.wal')", FILES),
    ("glob-temp-folder", "SELECT * FROM glob('{db}.tmp/*')", FILES),
    ("read-csv", "SELECT * FROM read_csv('{dir}/in.csv')", FILES),
    ("read-csv-etc", "SELECT * FROM read_csv('/etc/passwd', sep = ':')", FILES),
    ("read-text", "SELECT content FROM read_text('{dir}/secret.txt')", FILES),
    ("read-blob", "SELECT size FROM read_blob('{dir}/in.csv')", FILES),
    ("read-duckdb", "SELECT * FROM read_duckdb('{hard}', table_name = 'runs')", FILES),
    ("glob", "SELECT * FROM glob('{dir}/*')", FILES),
    ("sniff-csv", "SELECT * FROM sniff_csv('{dir}/in.csv')", FILES),
    ("url", "SELECT * FROM read_parquet('https://example.com/x.parquet')", FILES),
    ("attach", "ATTACH '{dir}/other.duckdb' AS other", "ATTACH needs --allow-files"),
    ("attach-db-rw", "ATTACH '{db}' AS again (READ_WRITE)", "ATTACH needs --allow-files"),
    ("attach-hard-link-rw", "ATTACH '{hard}' AS h (READ_WRITE)", "ATTACH needs --allow-files"),
    ("attach-symlink-rw", "ATTACH '{sym}' AS s (READ_WRITE)", "ATTACH needs --allow-files"),
    ("attach-wal", "ATTACH '{db}.wal' AS w (READ_WRITE)", "ATTACH needs --allow-files"),
    ("persistent-secret", "CREATE PERSISTENT SECRET s (TYPE http)", "ersistent secrets"),
    ("install", "INSTALL httpfs", EXTENSIONS),
    ("force-install", "FORCE INSTALL httpfs", EXTENSIONS),
    ("install-community", "INSTALL h3 FROM community", EXTENSIONS),
    ("load", "LOAD httpfs", EXTENSIONS),
    ("update-extensions", "UPDATE EXTENSIONS", EXTENSIONS),
    ("load-after-select", "SELECT 1; LOAD httpfs", EXTENSIONS),
    ("set-external-access", "SET enable_external_access = true", LOCKED),
    ("set-lock", "SET lock_configuration = false", LOCKED),
    ("set-allowed-paths", "SET allowed_paths = ['{db}']", LOCKED),
    ("set-allowed-directories", "SET allowed_directories = ['{dir}']", LOCKED),
    ("set-filesystems", "SET disabled_filesystems = ''", LOCKED),
    ("set-autoinstall", "SET autoinstall_known_extensions = true", LOCKED),
    ("set-global", "SET GLOBAL autoload_known_extensions = true", LOCKED),
    ("reset", "RESET enable_external_access", LOCKED),
    ("set-temp-dir", "SET temp_directory = '{dir}/spill'", LOCKED),
    ("pragma-profiling", "PRAGMA enable_profiling", LOCKED),
    ("pragma-output", "PRAGMA profiling_output = '{dir}/profile.json'", LOCKED),
    ("log-query-path", "SET log_query_path = '{dir}/queries.log'", LOCKED),
    ("call-logging", "CALL enable_logging()", LOCKED),
    ("call-logging-to-file",
     "CALL enable_logging(storage = 'file', storage_config = {{'path': '{dir}/logs'}})", LOCKED),
]

ALLOW_FILES: list[tuple[str, str, str]] = [
    # --allow-files reads other files: nothing is written, nothing else is unlocked
    ("copy-to-db", "COPY (SELECT 1) TO '{db}'", WRITES),
    ("copy-to-db-in-place", "COPY (SELECT 1) TO '{db}' (USE_TMP_FILE false)", WRITES),
    ("copy-to-wal", "COPY (SELECT 1) TO '{db}.wal'", WRITES),
    ("copy-to-file", "COPY (SELECT 1) TO '{dir}/x.csv'", WRITES),
    ("export-database", "EXPORT DATABASE '{dir}/dump'", WRITES),
    ("import-database", "IMPORT DATABASE '{dir}'", WRITES),
    ("attach-hard-link-rw", "ATTACH '{hard}' AS h (READ_WRITE)", WRITES),
    ("attach-symlink-rw", "ATTACH '{sym}' AS s (READ_WRITE)", WRITES),
    ("attach-read-only-false", "ATTACH '{hard}' AS h (READ_ONLY false)", WRITES),
    ("attach-access-mode", "ATTACH '{hard}' AS h (ACCESS_MODE 'read_write')", WRITES),
    ("attach-hard-link-then-delete", "ATTACH '{hard}' AS h; DELETE FROM h.emissions",
     READ_ONLY),
    ("attach-expression", "ATTACH ('{hard}' || '') AS h", "give the database as a quoted path"),
    ("attach-other-option", "ATTACH '{hard}' AS h (BLOCK_SIZE 16384)", "is not available"),
    ("attach-new", "ATTACH '{dir}/other.duckdb' AS other", READ_ONLY),
    ("persistent-secret", "CREATE PERSISTENT SECRET s (TYPE http)", "ersistent secrets"),
    ("delete", "DELETE FROM emissions", "read-only"),
    ("create-table", "CREATE TABLE t AS SELECT * FROM read_csv('{dir}/in.csv')", "read-only"),
    ("install", "INSTALL httpfs", EXTENSIONS),
    ("load", "LOAD httpfs", EXTENSIONS),
    ("set-external-access", "SET enable_external_access = false", LOCKED),
    ("set-autoload", "SET autoload_known_extensions = true", LOCKED),
    ("pragma-profiling", "PRAGMA enable_profiling", LOCKED),
    ("call-logging-to-file",
     "CALL enable_logging(storage = 'file', storage_config = {{'path': '{dir}/logs'}})", LOCKED),
]

ALLOW_WRITES: list[tuple[str, str, str]] = [
    # --allow-writes DIR: reads and writes inside DIR only (DuckDB's own check), on a copy
    ("copy-to-db", "COPY (SELECT 1) TO '{db}'", INSIDE),
    ("copy-to-db-in-place", "COPY (SELECT 1) TO '{db}' (USE_TMP_FILE false)", INSIDE),
    ("copy-to-wal", "COPY (SELECT 1) TO '{db}.wal'", INSIDE),
    ("copy-to-temp-folder", "COPY (SELECT 1) TO '{db}.tmp/x.csv'", INSIDE),
    ("copy-up-and-out", "COPY (SELECT 1) TO '{up}/hub.duckdb.wal'", INSIDE),
    ("copy-to-hard-link", "COPY (SELECT 1) TO '{hard}' (USE_TMP_FILE false)", INSIDE),
    ("attach-db-rw", "ATTACH '{db}' AS again (READ_WRITE)", INSIDE),
    ("attach-hard-link-rw", "ATTACH '{hard}' AS h (READ_WRITE)", INSIDE),
    ("attach-symlink-rw", "ATTACH '{sym}' AS s (READ_WRITE)", INSIDE),
    ("export-to-temp-folder", "EXPORT DATABASE '{db}.tmp'", INSIDE),
    ("read-outside", "SELECT content FROM read_text('{dir}/secret.txt')", INSIDE),
    ("read-db-bytes", "SELECT size FROM read_blob('{db}')", INSIDE),
    ("install", "INSTALL httpfs", EXTENSIONS),
    ("set-allowed-directories", "SET allowed_directories = ['/']", LOCKED),
    ("set-external-access", "SET enable_external_access = true", LOCKED),
]

# the first case of each flag set runs in the fast subset, the rest in the full suite
CASES = [pytest.param(flags, s, r, id=f"{name}-{c}", marks=() if i == 0 else pytest.mark.slow)
         for name, flags, cases in (("none", (), NO_FLAGS), ("files", ("--allow-files",), ALLOW_FILES),
                                    ("writes", ("--allow-writes", "{out}"), ALLOW_WRITES))
         for i, (c, s, r) in enumerate(cases)]


@pytest.mark.parametrize(("flags", "sql", "refusal"), CASES)
def test_refused_in_one_line_and_nothing_written(hub: dict, files: Path, flags: tuple[str, ...],
                                                 sql: str, refusal: str) -> None:
    before = listing(files)
    args = [fill(f, hub, files) for f in flags]
    line = one_line_error(invoke("sql", "--db", hub["db"], *args, fill(sql, hub, files)))
    assert refusal in line
    assert "Traceback" not in line
    assert listing(files) == before


def test_refused_statements_stop_the_whole_query(hub: dict, files: Path) -> None:
    """A refusal comes before anything runs: the first statement's table never appears."""
    line = one_line_error(invoke("sql", "--db", hub["db"], "--allow-writes", files / "out",
                                 f"COPY (SELECT 1) TO '{files}/out/first.csv'; "
                                 "INSTALL httpfs"))
    assert EXTENSIONS in line
    assert not (files / "out" / "first.csv").exists()


@pytest.mark.parametrize(("case", "make"), [
    ("the-database-folder", lambda db, out: db.parent),
    ("a-parent-of-it", lambda db, out: db.parent.parent),
    ("its-temp-folder", lambda db, out: (db.parent / "hub.duckdb.tmp").mkdir() or db.parent
     / "hub.duckdb.tmp"),
    ("a-hard-link-inside", lambda db, out: os.link(db, out / "copy.duckdb") or out),
    ("a-symlink-inside", lambda db, out: (out / "db.duckdb").symlink_to(db) or out),
    ("a-folder-link-inside", lambda db, out: (out / "up").symlink_to(db.parent) or out),
    ("a-missing-folder", lambda db, out: out / "nope"),
])
@pytest.mark.slow
def test_a_write_folder_that_reaches_the_database_is_refused(hub: dict, files: Path, case: str,
                                                             make) -> None:
    db = hub["db"]
    folder = make(db, files / "out")
    try:
        line = one_line_error(invoke("sql", "--db", db, "--allow-writes", folder, "SELECT 1"))
    finally:
        for extra in (db.parent / "hub.duckdb.tmp",):
            if extra.is_dir():
                extra.rmdir()
    assert f"--allow-writes {folder}" in line


def test_allow_files_and_allow_writes_together_is_a_usage_error(hub: dict, files: Path) -> None:
    result = invoke("sql", "--db", hub["db"], "--allow-files", "--allow-writes", files,
                    "SELECT 1")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot be combined" in lines[0]


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
     lambda r: "task" in {c["name"] for c in r}),
    ("variables", "SET VARIABLE k = 'npc_dialogue'; "
                  "SELECT count(*) > 0 AS ok FROM emissions WHERE task = getvariable('k')",
     lambda r: r == [{"ok": True}]),
    ("current-setting", "SELECT current_setting('enable_external_access') AS on",
     lambda r: r == [{"on": False}]),
    ("temp-table", "CREATE TEMP TABLE k AS SELECT DISTINCT task FROM emissions; "
                   "SELECT count(*) > 0 AS ok FROM k", lambda r: r == [{"ok": True}]),
    ("pivot", "PIVOT (SELECT task FROM emissions) ON task USING count(*)",
     lambda r: len(r) == 1),
    ("explain", "EXPLAIN SELECT count(*) FROM emissions", lambda r: len(r) == 1),
]


@pytest.mark.parametrize(("sql", "check"), [(s, c) for _, s, c in WORKS],
                         ids=[case for case, _, _ in WORKS])
@pytest.mark.slow
def test_plain_queries_work(hub: dict, sql: str, check) -> None:
    got = rows(invoke("sql", "--db", hub["db"], "--format", "jsonl", sql))
    assert check(got), got


@pytest.mark.parametrize("view", VIEW_NAMES)
@pytest.mark.slow
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


def test_allow_files_attaches_another_database_read_only(hub: dict, files: Path) -> None:
    got = rows(invoke("sql", "--db", hub["db"], "--allow-files", "--format", "jsonl",
                      f"ATTACH '{hub['db'].with_name('hard.duckdb')}' AS h; "
                      "SELECT count(*) > 0 AS ok, bool_and(readonly) AS ro "
                      "FROM h.emissions, duckdb_databases() WHERE database_name = 'h'"))
    assert got == [{"ok": True, "ro": True}]


def test_allow_files_joins_a_csv_with_a_view(hub: dict, files: Path) -> None:
    (files / "kinds.csv").write_text("task\nnpc_dialogue\n", encoding="utf-8")
    got = rows(invoke("sql", "--db", hub["db"], "--allow-files", "--format", "jsonl",
                      f"SELECT k.task, sum(v.n) > 0 AS seen FROM read_csv('{files}/kinds.csv') k "
                      "JOIN v_duplicate_rate v USING (task) GROUP BY 1"))
    assert got == [{"task": "npc_dialogue", "seen": True}]


def test_allow_writes_copies_exports_and_attaches_inside_its_folder(hub: dict,
                                                                   files: Path) -> None:
    out = files / "out"
    result = invoke("sql", "--db", hub["db"], "--allow-writes", out,
                    f"COPY (SELECT DISTINCT task FROM emissions ORDER BY task) TO '{out}/kinds.csv'")
    assert result.exit_code == 0, result.output
    lines = (out / "kinds.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "task" and "npc_dialogue" in lines[1:]
    assert invoke("sql", "--db", hub["db"], "--allow-writes", out,
                  f"EXPORT DATABASE '{out}/dump'").exit_code == 0
    assert (out / "dump" / "schema.sql").is_file()
    got = rows(invoke("sql", "--db", hub["db"], "--allow-writes", out, "--format", "jsonl",
                      f"ATTACH '{out}/mine.duckdb' AS mine (READ_WRITE); "
                      "CREATE TABLE mine.kinds AS SELECT * FROM read_csv('" + f"{out}/kinds.csv'); "
                      "SELECT count(*) > 0 AS ok FROM mine.kinds"))
    assert got == [{"ok": True}]
    assert (out / "mine.duckdb").is_file()


def test_help_documents_both_flags() -> None:
    result = invoke("sql", "--help")
    assert result.exit_code == 0
    assert "--allow-files" in result.output and "--allow-writes" in result.output

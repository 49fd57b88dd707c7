"""User-written selection conditions run in the sandbox: no condition can read a file.

The audit read a file one answer at a time through ``synthesize --personas
"(select content from read_text('FILE')) like 'x%'"``: the condition ran on the writer's
connection, which has file access. Every way to write a condition is tried here, through the
commands: SQL conditions (``--personas`` of synthesize and interview, a scenario's ``where``)
must be refused in one line with nothing written; parameterised ones (``--carve``, ``personas
sample`` conditions) must answer the same whatever the file holds.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from personahub.core.errors import PersonahubError
from personahub.core.sandbox import referenced_columns
from personahub.core.store import connect
from personahub.personas.carve import Selection, select_ids
from personahub.personas.record import Persona
from personahub.personas.sampling import HubQuery, draw_ids, matching_ids
from personahub.personas.selection_sandbox import persona_sandbox
from personahub.personas.store import upsert_personas
from tests.cli_helpers import invoke, one_line_error

ROOT = Path(__file__).resolve().parents[2]
REFUSED = "selection conditions cannot read files"

# conditions that would reveal something of a file if they ran with file access
READS = [
    ("read-text", "(SELECT content FROM read_text('{secret}')) LIKE 's%'"),
    ("read-csv", "EXISTS (SELECT * FROM read_csv('{secret}', header = false) "
                 "WHERE column0 LIKE 's%')"),
    ("read-blob", "(SELECT size FROM read_blob('{secret}')) > 0"),
    ("glob", "EXISTS (SELECT * FROM glob('{folder}/*'))"),
    ("read-json", "EXISTS (SELECT * FROM read_json_objects('{folder}/x.json'))"),
    ("ids-from-a-file", "persona_id IN (SELECT column0 FROM read_csv('{folder}/ids.csv', "
                        "header = false))"),
    ("query-function", "EXISTS (SELECT * FROM query('SELECT * FROM read_text(''{secret}'')'))"),
    ("the-database-itself", "EXISTS (SELECT * FROM read_duckdb('{db}', table_name = 'runs'))"),
    ("comment-out-the-rest", "(SELECT content FROM read_text('{secret}')) LIKE 's%' --"),
]


def table_counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}
    finally:
        con.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One offline step of the default scenario (personas, a run), and a folder of files."""
    root = tmp_path_factory.mktemp("hub")
    db = root / "hub.duckdb"
    result = invoke("run", ROOT / "scenarios" / "riverside_town.py", "--db", db, "--steps", "1")
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    run_id = con.execute("SELECT run_id FROM runs").fetchall()[0][0]
    ids = [r[0] for r in con.execute("SELECT persona_id FROM personas LIMIT 3").fetchall()]
    con.close()
    folder = root / "files"
    folder.mkdir()
    (folder / "secret.txt").write_text("s3cret\n", encoding="utf-8")
    (folder / "x.json").write_text('{"a": 1}\n', encoding="utf-8")
    (folder / "ids.csv").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
    return {"db": db, "run": run_id, "folder": folder}


def fill(text: str, hub: dict) -> str:
    return text.format(secret=hub["folder"] / "secret.txt", folder=hub["folder"], db=hub["db"])


COMMANDS = {
    "synthesize": lambda hub, cond: ["synthesize", "math_problem", "--n", "2", "--db", hub["db"],
                                     "--personas", cond],
    "interview": lambda hub, cond: ["interview", "--db", hub["db"], "--run", hub["run"],
                                    "--personas", cond, "What do you see?"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("condition", [c for _, c in READS], ids=[n for n, _ in READS])
@pytest.mark.slow
def test_sql_conditions_cannot_read_files(hub: dict, command: str, condition: str) -> None:
    before = table_counts(hub["db"])
    line = one_line_error(invoke(*COMMANDS[command](hub, fill(condition, hub))))
    assert "--personas" in line and REFUSED in line
    assert "s3cret" not in line
    assert table_counts(hub["db"]) == before


# parameterised conditions: a value is data, never SQL; the answer must not depend on the file
PARAMETERISED = [
    ("synthesize-carve", ["synthesize", "math_problem", "--n", "1", "--carve",
                          "text~') OR (SELECT content FROM read_text('{secret}')) LIKE 's%' --"]),
    ("synthesize-carve-key", ["synthesize", "math_problem", "--n", "1", "--carve",
                              "(SELECT content FROM read_text('{secret}'))=s3cret"]),
    ("interview-carve", ["interview", "--run", "{run}", "--carve",
                         "hop=0 OR (SELECT content FROM read_text('{secret}')) LIKE 's%'", "Hi?"]),
    ("sample-where", ["personas", "sample", "--where",
                      "source=x' OR (SELECT content FROM read_text('{secret}')) LIKE 's%' --"]),
    ("sample-contains", ["personas", "sample", "--contains",
                         "') OR (SELECT content FROM read_text('{secret}')) LIKE 's%' --"]),
    ("sample-regex", ["personas", "sample", "--regex", ".*') OR (read_text('{secret}'"]),
    ("sample-ilike", ["personas", "sample", "--ilike",
                      "%' OR (SELECT content FROM read_text('{secret}')) LIKE 's%' --"]),
]


@pytest.mark.parametrize("args", [a for _, a in PARAMETERISED], ids=[n for n, _ in PARAMETERISED])
@pytest.mark.slow
def test_parameterised_conditions_answer_the_same_whatever_the_file_holds(hub: dict,
                                                                         args: list[str]) -> None:
    secret = hub["folder"] / "secret.txt"
    filled = [a.format(secret=secret, run=hub["run"]) for a in args]
    answers = []
    for content in ("s3cret\n", "x3cret\n"):
        secret.write_text(content, encoding="utf-8")
        before = table_counts(hub["db"])
        result = invoke(*filled[:1], *filled[1:], "--db", hub["db"]) if filled[0] != "personas" \
            else invoke(*filled[:2], "--db", hub["db"], *filled[2:])
        answers.append((result.exit_code, result.stdout, result.stderr))
        assert "Traceback" not in result.output
        if result.exit_code:
            assert table_counts(hub["db"]) == before
    secret.write_text("s3cret\n", encoding="utf-8")
    assert answers[0] == answers[1]


# -- the selection functions themselves, on a writer's connection --------------------------

def people(n: int = 8) -> list[Persona]:
    return [Persona(text=f"Person {i}, a {'nurse' if i % 2 else 'baker'}.", source="test",
                    attributes={"age": 20 + i}, hop=i % 3) for i in range(n)]


@pytest.fixture
def writer(tmp_path: Path):
    con = connect(tmp_path / "hub.duckdb")
    upsert_personas(con, people())
    (tmp_path / "secret.txt").write_text("s3cret\n", encoding="utf-8")
    yield con, tmp_path / "secret.txt"
    con.close()


@pytest.mark.parametrize("condition", [c for _, c in READS], ids=[n for n, _ in READS])
@pytest.mark.slow
def test_draw_and_match_refuse_reading_conditions_on_a_writer(writer, condition: str) -> None:
    con, secret = writer
    where = condition.format(secret=secret, folder=secret.parent, db=secret.parent / "hub.duckdb")
    for select in (lambda q: draw_ids(con, q, None), lambda q: matching_ids(con, q)):
        with pytest.raises(PersonahubError, match=REFUSED):
            select(HubQuery(where=where))
    with pytest.raises(PersonahubError, match=REFUSED):
        draw_ids(con, HubQuery(where=where, where_label="personas.where"), 2)
    # the writer's own connection is untouched: it still has file access
    assert con.execute("SELECT current_setting('enable_external_access')").fetchall() == [(True,)]


def test_conditions_still_see_the_whole_personas_table(writer) -> None:
    con, _ = writer
    nurses = HubQuery(where="persona_id IN (SELECT persona_id FROM personas "
                            "WHERE text ILIKE '%nurse%') AND typeof(attributes) = 'JSON'")
    assert len(draw_ids(con, nurses, None)) == 4
    assert matching_ids(con, HubQuery(carve=("age>=26",))) == draw_ids(
        con, HubQuery(carve=("age>=26",)), None, mode="head")
    assert len(draw_ids(con, HubQuery(where="hop = 0 -- a comment"), None)) == 3
    assert select_ids(con, Selection(where=["age>=26"], contains="nurse")) == [
        p for p in matching_ids(con, HubQuery(carve=("age>=26",)))
        if p in matching_ids(con, HubQuery(where="text ILIKE '%nurse%'"))]


def test_the_sandbox_has_no_file_system_and_only_the_named_columns(writer) -> None:
    con, secret = writer
    with persona_sandbox(con, ["hop >= 1"]) as sandbox:
        assert sandbox.sql("SELECT * FROM personas LIMIT 0").columns == [
            "persona_id", "seq", "hop", "is_duplicate", "gate"]
        settings = dict(sandbox.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
            "'lock_configuration')").fetchall())
        assert settings == {"enable_external_access": "false", "lock_configuration": "true"}
        with pytest.raises(duckdb.Error):
            sandbox.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.PermissionException, match="LocalFileSystem has been disabled"):
            sandbox.execute(f"SELECT * FROM read_text('{secret}')")


@pytest.mark.parametrize(("fragments", "named"), [
    (["hop >= 1"], ["hop"]),
    (["\"text\" ILIKE '%a%' AND source = 'x'"], ["text", "source"]),
    (["'text' = 'hop'"], []),  # strings name no column
    (["p.* IS NOT NULL"], None), (["COLUMNS('te.*') IS NOT NULL"], None),
    (["to_json(personas) LIKE '%a%'"], None), (["#1 = 'x'"], None),
])
def test_referenced_columns(fragments: list[str], named: list[str] | None) -> None:
    columns = ["persona_id", "text", "source", "hop"]
    assert referenced_columns(fragments, columns) == (columns if named is None else named)

"""Exports (round trips, validation, atomic writes), analysis views, `sql --file`, reports."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from personahub.analysis.diversity import distinct_n, exact_jaccard, pair_similarities
from personahub.analysis.export import (
    export,
    load_items,
    validate_export,
    write_export,
)
from personahub.analysis.report import write_report
from personahub.analysis.views import VIEW_NAMES, install_views, query_files
from personahub.api import run_synthesis
from personahub.cli.app import app
from personahub.core.errors import PersonahubError
from personahub.personas.importers import iter_personas
from personahub.pipelines.synthesize import SynthConfig
from personahub.tasks.tool_spec import ToolSpec
from tests.cli_helpers import invoke
from tests.synth_helpers import run_default_scenario

SHARED_SAMPLE = Path(__file__).resolve().parents[3] / "shared/data/personahub_tool_sample.jsonl"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One database with a short default-scenario run and three synthesis jobs."""
    db = tmp_path_factory.mktemp("db") / "hub.duckdb"
    run = run_default_scenario(db, steps=2)
    # Agents now see their own recent output, so two steps may flag no near-duplicate tool spec;
    # flag one by hand so the export filter below has something to drop.
    con = duckdb.connect(str(db))
    first, second = con.execute("SELECT emission_id FROM emissions WHERE task = 'tool_spec' "
                                "ORDER BY step, agent_id LIMIT 2").fetchall()
    con.execute("UPDATE emissions SET is_duplicate = true, duplicate_of = ? WHERE emission_id = ?",
                [first[0], second[0]])
    con.close()
    tool = run_synthesis(SynthConfig(task="tool_spec", n=12, db=str(db)))
    math = run_synthesis(SynthConfig(task="math_problem", n=5, solve=True, db=str(db)))
    chat = run_synthesis(SynthConfig(task="multi_turn", n=5, with_assistant=True, db=str(db)))
    return {"db": db, "run": run.run_id, "tool": tool.job_id, "math": math.job_id,
            "chat": chat.job_id}


def ro(db: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db), read_only=True)


@pytest.mark.slow
def test_tool_export_round_trips(data: dict, tmp_path: Path) -> None:
    con = ro(data["db"])
    out = tmp_path / "tools.jsonl"
    assert export(con, out, "personahub", job=data["tool"]) == 12
    stored = {r[0]: (json.loads(r[1]), r[2]) for r in con.execute(
        "SELECT i.item_id, i.content, p.text FROM synth_items i JOIN personas p "
        "USING (persona_id) WHERE job_id = ? ORDER BY i.created_at, item_id",
        [data["tool"]]).fetchall()}
    con.close()
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    decoded = [json.loads(json.loads(row["synthesized text"])) for row in lines]
    assert decoded == [content for content, _ in stored.values()]
    assert all(row["description"] == "tool development" for row in lines)
    for tool in decoded:
        assert ToolSpec.model_validate(tool).model_dump(by_alias=True) == tool
    personas = [p.text for p in iter_personas(out)]  # auto-detected as personahub-synth
    assert personas == [persona for _, persona in stored.values()]


@pytest.mark.skipif(not SHARED_SAMPLE.exists(), reason="shared Persona Hub sample not present")
def test_export_encoding_matches_persona_hub_sample(data: dict, tmp_path: Path) -> None:
    ours = tmp_path / "tools.jsonl"
    con = ro(data["db"])
    export(con, ours, "personahub", job=data["tool"])
    con.close()
    theirs = json.loads(SHARED_SAMPLE.read_text(encoding="utf-8").splitlines()[0])
    mine = json.loads(ours.read_text(encoding="utf-8").splitlines()[0])
    assert set(theirs) == set(mine)
    for row in (theirs, mine):  # both decode the same way: twice
        assert set(json.loads(json.loads(row["synthesized text"]))) >= {"name", "function_name"}


def test_npc_chat_rows_hold_the_npc_line_as_the_assistant_turn(tmp_path: Path) -> None:
    """``export --format chat`` of an NPC job: the player meets the character (user turn, with
    its name, role and background) and the NPC's line is the assistant's turn."""
    db = tmp_path / "npc.duckdb"
    assert invoke("synthesize", "npc", "--n", 3, "--db", db, "--preview", 0).exit_code == 0
    con = ro(db)
    job = con.execute("SELECT job_id FROM synth_jobs").fetchone()[0]  # type: ignore[index]
    items = {i.item_id: i for i in load_items(con, job=job)}
    con.close()
    out = tmp_path / "npc.chat.jsonl"
    result = invoke("export", "--db", db, "--job", job, "--format", "chat", "--out", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    lines = sorted(i.content["line"] for i in items.values())
    assert sorted(r["messages"][1]["content"] for r in rows) == lines
    for row in rows:
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert assistant["content"] not in user["content"]
        assert "You meet the player" in user["content"]
    validate_export(out, "chat")


def test_chat_and_parquet_exports_validate(data: dict, tmp_path: Path) -> None:
    con = ro(data["db"])
    for job in ("math", "chat", "tool"):
        path = tmp_path / f"{job}.chat.jsonl"
        assert export(con, path, "chat", job=data[job]) > 0
        for line in path.read_text(encoding="utf-8").splitlines():
            roles = [m["role"] for m in json.loads(line)["messages"]]
            assert roles[0] == "user" and all(
                a != b for a, b in zip(roles, roles[1:], strict=False))
    math_rows = [json.loads(x) for x in (tmp_path / "math.chat.jsonl").read_text().splitlines()]
    assert all(len(r["messages"]) == 2 for r in math_rows)  # problem + solution
    parquet = tmp_path / "run.parquet"
    written = export(con, parquet, "parquet", run=data["run"])
    n_emissions = con.execute("SELECT count(*) FROM emissions WHERE run_id = ?",
                              [data["run"]]).fetchall()[0][0]
    con.close()
    assert written == n_emissions
    assert duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)",
                                    [str(parquet)]).fetchall()[0][0] == written


def test_parquet_holds_structs_typed_per_column(data: dict, tmp_path: Path) -> None:
    """content and solution are structs, not JSON text: a tool's spec with its
    arguments as a list of structs, a problem's solution a struct, a run's solution a typed
    struct of nulls (not a null column); a multi-kind run has one struct of every kind's fields.
    Each row's content reads back as stored."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    con = ro(data["db"])
    paths = {}
    for name, which in (("tool", {"job": data["tool"]}), ("math", {"job": data["math"]}),
                        ("run", {"run": data["run"]})):
        paths[name] = tmp_path / f"{name}.parquet"
        export(con, paths[name], "parquet", **which)
    stored = {r[0]: json.loads(r[1]) for r in con.execute(
        "SELECT item_id, content FROM synth_items WHERE job_id = ? UNION ALL "
        "SELECT emission_id, content FROM emissions WHERE run_id = ?",
        [data["tool"], data["run"]]).fetchall()}
    con.close()
    solution = pa.struct([("solution", pa.string()), ("answer", pa.string())])
    tool = pq.read_table(paths["tool"])
    arg = pa.struct([("name", pa.string()), ("type", pa.string()), ("description", pa.string())])
    assert tool.schema.field("content").type == pa.struct([
        ("name", pa.string()), ("description", pa.string()), ("function_name", pa.string()),
        ("input_args", pa.list_(arg)),
        ("return", pa.struct([("type", pa.string()), ("description", pa.string())])),
        ("depend", pa.list_(pa.string()))])
    assert tool.schema.field("solution").type == solution
    math = pq.read_table(paths["math"])
    assert math.schema.field("content").type == pa.struct([("problem", pa.string()),
                                                           ("question", pa.string())])
    assert all(row["answer"] for row in math.column("solution").to_pylist())
    run = pq.read_table(paths["run"])
    assert run.schema.field("solution").type == solution
    assert run.column("solution").null_count == run.num_rows
    fields = {f.name for f in run.schema.field("content").type}
    assert {"function_name", "input_args", "line", "tone", "instruction"} <= fields
    for table in (tool, run):
        for item_id, content in zip(table.column("item_id").to_pylist(),
                                    table.column("content").to_pylist(), strict=True):
            assert {k: v for k, v in content.items() if v is not None} == stored[item_id]
    # nested fields are queryable as they are, with no JSON function
    names = duckdb.connect().execute(
        "SELECT content.function_name, content.input_args[1].name FROM read_parquet(?)",
        [str(paths["tool"])]).fetchall()
    assert all(name for name, _ in names) and any(arg_name for _, arg_name in names)


def test_chat_rows_carry_the_assistant_turn_where_the_kind_has_one(data: dict, tmp_path: Path) -> None:
    """A line said or a tool designed is the assistant's answer to a request to the persona; an
    instruction is the user's turn and has no answer to export."""
    con = ro(data["db"])
    rows = {}
    for kind in ("npc_dialogue", "tool_spec", "instruction"):
        path = tmp_path / f"{kind}.chat.jsonl"
        assert export(con, path, "chat", run=data["run"], task=kind) > 0
        rows[kind] = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    path = tmp_path / "tool_job.chat.jsonl"
    export(con, path, "chat", job=data["tool"])
    rows["tool"] = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    items = {i.item_id: i for i in load_items(con, run=data["run"], task="npc_dialogue")}
    con.close()
    for kind in ("npc_dialogue", "tool_spec", "tool"):
        for row in rows[kind]:
            user, assistant = row["messages"]
            assert (user["role"], assistant["role"]) == ("user", "assistant")
            assert user["content"].startswith("You are this person: ") and assistant["content"]
    first = next(iter(items.values()))
    assert rows["npc_dialogue"][0]["messages"][1]["content"] == first.content["line"]
    assert first.persona in rows["npc_dialogue"][0]["messages"][0]["content"]
    tool = json.loads(rows["tool"][0]["messages"][1]["content"])
    assert tool["function_name"] == rows["tool"][0]["tools"][0]["function"]["name"]
    assert all([m["role"] for m in r["messages"]] == ["user"] for r in rows["instruction"])


def test_run_export_filters(data: dict, tmp_path: Path) -> None:
    con = ro(data["db"])
    all_tools = load_items(con, run=data["run"], task="tool_spec")
    kept = load_items(con, run=data["run"], task="tool_spec", drop_duplicates=True)
    assert all(i.kind == "tool_spec" for i in all_tools)
    assert len(kept) == sum(not i.is_duplicate for i in all_tools) < len(all_tools)
    path = tmp_path / "run_tools.jsonl"
    assert export(con, path, "personahub", run=data["run"], task="tool_spec",
                  drop_duplicates=True) == len(kept)
    for line in path.read_text().splitlines():
        ToolSpec.model_validate(json.loads(json.loads(json.loads(line)["synthesized text"])))
    with pytest.raises(PersonahubError, match="exactly one"):
        load_items(con, job=data["tool"], run=data["run"])
    with pytest.raises(PersonahubError, match="--run nope"):
        load_items(con, run="nope")
    con.close()


def test_validation_and_atomic_writes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.chat.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "a"},
                                            {"role": "user", "content": "b"}]}) + "\n")
    with pytest.raises(PersonahubError, match=r"bad.chat.jsonl:1: .*alternate"):
        validate_export(bad, "chat")
    bad.write_text('{"input persona": "x"\n')
    with pytest.raises(PersonahubError, match="not valid JSON"):
        validate_export(bad, "personahub")
    target = tmp_path / "out.jsonl"
    target.write_text("previous complete export\n")
    with pytest.raises(AttributeError):  # an item that is not an ExportItem fails mid-write
        write_export([None], target, "personahub", overwrite=True)  # type: ignore[list-item]
    assert target.read_text() == "previous complete export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.chat.jsonl", "out.jsonl"]
    with pytest.raises(PersonahubError, match="--format"):
        write_export([], tmp_path / "x", "xml")


EMPTY_VIEWS = ["v_rejected"]  # nothing in the fixture is rejected by the quality gate


def test_views_on_read_only_connection(data: dict) -> None:
    con = ro(data["db"])
    def user_views(temporary: bool) -> set[str]:
        return {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() "
                                          "WHERE temporary = ? AND NOT internal",
                                          [temporary]).fetchall()}

    names = install_views(con)
    # the file holds this version's views: no TEMP copy over them (each view is listed once)
    assert not user_views(True)
    assert set(names) == user_views(False) == set(VIEW_NAMES)  # every documented view
    empty = [view for view in VIEW_NAMES if not con.execute(f"SELECT * FROM {view} LIMIT 1").fetchall()]
    assert empty == EMPTY_VIEWS  # a run plus three jobs fill every view but the reject log
    rate = con.execute("SELECT n, n_duplicates FROM v_duplicate_rate WHERE source = 'run' "
                       "AND task = 'npc_dialogue'").fetchall()[0]
    direct = con.execute("SELECT count(*), count(*) FILTER (WHERE is_duplicate) FROM emissions "
                         "WHERE task = 'npc_dialogue'").fetchall()[0]
    assert rate == direct
    messages, along = con.execute("SELECT messages, along_relations FROM v_message_edges "
                                  "WHERE run_id = ?", [data["run"]]).fetchall()[0]
    assert 0 < along <= messages
    usage = con.execute("SELECT run_id, calls FROM v_run_usage").fetchall()
    assert {data["run"], data["tool"]} <= {r[0] for r in usage}
    queries = query_files()
    assert len(queries) >= 5
    for name, path in queries.items():
        assert con.execute(path.read_text()).fetchall(), f"query {name} returned no rows"
    con.close()


def test_views_on_database_without_synth_tables(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    # the personas columns every released schema has had (v_persona_demographics reads them)
    con.execute("CREATE TABLE personas (persona_id VARCHAR, text VARCHAR, source VARCHAR, "
                "attributes JSON, is_duplicate BOOLEAN)")
    con.close()
    con = ro(db)
    install_views(con)
    assert con.execute("SELECT count(*) FROM v_duplicate_rate").fetchall() == [(0,)]
    con.close()


def test_sql_command_accepts_files(data: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    query = tmp_path / "q.sql"
    query.write_text("-- two statements: both print, in order\nSELECT 1 AS one;\n"
                     "SELECT task, n FROM v_duplicate_rate WHERE source = 'job' ORDER BY task;\n")
    for args in (["sql", str(query)], ["sql", "--file", str(query)]):
        result = runner.invoke(app, [*args, "--db", str(data["db"]), "--format", "csv"])
        assert result.exit_code == 0, result.output
        first, second = result.stdout.split("\n\n")
        assert first == "one\n1" and second.splitlines()[0] == "task,n"
        assert "math_problem,5" in second
    result = runner.invoke(app, ["sql", "--db", str(data["db"]), "--format", "jsonl",
                                 str(query_files()["synth_jobs"])])
    assert result.exit_code == 0
    assert {json.loads(x)["task"] for x in result.stdout.splitlines()} >= {"tool_spec", "multi_turn"}
    result = runner.invoke(app, ["sql", "--db", str(data["db"]), str(tmp_path / "none.sql")])
    assert result.exit_code == 1 and "none.sql" in result.output


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.mark.slow
def test_report_images_exist_and_are_png(data: dict, tmp_path: Path) -> None:
    con = ro(data["db"])
    index = write_report(con, tmp_path / "report", run_id=data["run"])
    con.close()
    parser = _Images()
    parser.feed(index.read_text(encoding="utf-8"))
    assert {"emissions_over_steps.png", "duplicate_rate.png", "degree_distribution.png",
            "relationship_graph.png", "diversity.png"} <= set(parser.sources)
    for source in parser.sources:
        png = index.parent / source
        assert png.stat().st_size > 100
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "survey" not in index.read_text().lower()


@pytest.mark.slow
def test_report_cli_and_survey_section(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    run_synthesis(SynthConfig(task="instruction", n=4, db=str(db)))
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO survey_answers (run_id, step, survey_id, question, persona_id, agent_id, "
                "answer_kind, answer_choice) VALUES ('r', 1, 's', 'q?', 'p1', 1, 'choice', 'yes'), "
                "('r', 2, 's', 'q?', 'p1', 1, 'choice', 'no')")
    con.close()
    result = CliRunner().invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r" / "index.html").read_text()
    # no run in the file: the report is the synthesis job's, and stray survey rows are not its
    assert "synthesis job synth-" in html and "Survey answers" not in html
    assert not (tmp_path / "r" / "survey_answers.png").exists()


def test_diversity_measures() -> None:
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n([], 2) == 0.0
    personas = ["a nurse in leeds who runs", "a nurse in leeds who swims", "a pilot in oslo"]
    outputs = ["plan my marathon training week", "plan my swim training week", "fly to bergen"]
    pairs = pair_similarities(personas, outputs, pairs=10, seed=1)
    assert len(pairs) == 3
    exact = sorted(exact_jaccard(personas[a], personas[b]) for a, b in ((0, 1), (0, 2), (1, 2)))
    assert sorted(p for p, _ in pairs) == pytest.approx(exact, abs=0.15)

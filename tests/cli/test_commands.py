import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from tests.cli_helpers import invoke, one_line_error

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()




@pytest.mark.parametrize("command", [[], ["run"], ["sql"], ["serve"], ["personas"],
                                     ["personas", "import"], ["personas", "expand"]])
def test_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_run_then_sql(scenario_file, tmp_path):
    db = tmp_path / "cli.duckdb"
    result = invoke("run", scenario_file(), "--db", db, "--steps", "2", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "no language model is used" in result.stderr
    for word in ("agents", "emissions", "near-duplicates flagged", "LLM calls", "wall time",
                 "prompt tokens per action", str(db), "personahub sql"):
        assert word in result.output
    query = invoke("sql", "--db", db, "--format", "jsonl",
                   "select task, count(*) as n from emissions group by 1 order by 1")
    rows = [json.loads(line) for line in query.output.splitlines()]
    assert [r["task"] for r in rows] == ["instruction", "npc_dialogue", "tool_spec"]
    table = invoke("sql", "--db", db, "select count(*) as steps from steps")
    assert "steps" in table.output and "2" in table.output


def test_sql_is_read_only_and_reports_errors(scenario_file, tmp_path):
    db = tmp_path / "ro.duckdb"
    invoke("run", scenario_file(), "--db", db, "--steps", "1")
    assert "read-only" in one_line_error(invoke("sql", "--db", db, "delete from emissions"))
    assert "sql:" in one_line_error(invoke("sql", "--db", db, "select nope from nowhere"))
    assert "no such database" in one_line_error(invoke("sql", "--db", tmp_path / "x.duckdb", "select 1"))


def test_unknown_scenario_path(tmp_path):
    line = one_line_error(invoke("run", tmp_path / "missing.py", "--db", tmp_path / "m.duckdb"))
    assert "not found" in line and not (tmp_path / "m.duckdb").exists()


def test_scenario_that_raises(tmp_path):
    path = tmp_path / "raises.py"
    path.write_text("import os\nraise ValueError('bad world')\n")
    line = one_line_error(invoke("run", path, "--db", tmp_path / "r.duckdb"))
    assert f"{path}:2" in line and "ValueError: bad world" in line


def test_unreachable_endpoint(scenario_file, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "u.duckdb"
    line = one_line_error(invoke("run", scenario_file(), "--db", db,
                                 "--llm", f"http://127.0.0.1:{port}/v1"))
    assert "unreachable" in line and "--llm" in line
    assert not db.exists()  # nothing was started, nothing half-written


def test_bad_flag_is_a_usage_error(scenario_file):
    result = invoke("run", scenario_file(), "--steps", "0")
    assert result.exit_code == 2


def test_malformed_persona_file_writes_nothing(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"persona": f"A carpenter number {i} who restores old boats"}) for i in range(6)]
    lines[4] = '{"persona": "broken'
    path.write_text("\n".join(lines) + "\n")
    db = tmp_path / "p.duckdb"
    line = one_line_error(invoke("personas", "import", path, "--db", db, "--batch-size", "2"))
    assert f"{path}:5" in line
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from personas").fetchone()[0] == 0
    con.close()
    result = invoke("personas", "import", path, "--db", db, "--skip-bad")
    assert result.exit_code == 0 and "5 personas" in result.output and "1 bad" in result.output


def test_import_then_expand(persona_file, tmp_path):
    db = tmp_path / "hub.duckdb"
    assert invoke("personas", "import", persona_file(10), "--db", db).exit_code == 0
    result = invoke("personas", "expand", "--db", db, "--hops", "2", "--fanout", "2")
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select max(hop) from personas").fetchone()[0] == 2
    assert con.execute("select count(*) from personas").fetchone()[0] > 10
    assert con.execute("select count(*) from relations").fetchone()[0] > 0
    assert con.execute("select count(*) from llm_calls where purpose = 'expand'").fetchone()[0] == 30
    con.close()


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
def test_scenario_script_runs_with_python(tmp_path):
    env = {**os.environ, "PERSONAHUB_DB": str(tmp_path / "script.duckdb")}
    done = subprocess.run([sys.executable, str(ROOT / "scenarios" / "riverside_town.py"),
                           "--steps", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "riverside_town" in done.stderr and "emissions" in done.stdout
    assert (tmp_path / "script.duckdb").exists()


def test_personas_dedup_flags_near_duplicates_and_never_deletes(tmp_path):
    base = ("a retired harbour pilot from Bergen who restores wooden boats and teaches knots "
            "to children on weekends")
    texts = [base, base + " too", base.replace("weekends", "weekend"),
             "a data engineer in Nairobi who builds pipelines for a farm cooperative"]
    path = tmp_path / "near.jsonl"
    path.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts))
    db = tmp_path / "dedup.duckdb"
    assert invoke("personas", "import", path, "--db", db).exit_code == 0
    result = invoke("personas", "dedup", "--db", db)
    assert result.exit_code == 0, result.output
    assert "minhash" in result.output and "embedding" in result.output
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("select text, is_duplicate, duplicate_of, dup_stage from personas "
                       "order by seq").fetchall()
    kept_id = con.execute("select persona_id from personas order by seq limit 1").fetchone()[0]
    con.close()
    assert len(rows) == 4  # flagged, not deleted
    assert [r[1] for r in rows] == [False, True, True, False]
    assert {r[2] for r in rows if r[1]} == {kept_id}
    assert {r[3] for r in rows if r[1]} == {"minhash", "embedding"}
    assert "threshold" in one_line_error(invoke("personas", "dedup", "--db", db, "--threshold", "2"))

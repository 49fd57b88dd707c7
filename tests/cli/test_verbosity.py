"""``-q``/``-v`` on every command and on the root, and the ``--json`` result helper: quiet leaves
results (stdout) and errors; verbose adds the resolved settings (secrets redacted)
and a progress line per batch; ``--json`` leaves stdout to one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from personahub.cli import common
from personahub.cli import options as cli_options
from personahub.cli.base import PersonahubTyper
from tests.cli_helpers import invoke, one_line_error, usage_error


@pytest.fixture
def personas(persona_file) -> Path:
    return persona_file(6)


def test_quiet_leaves_results_and_errors(tmp_path: Path, personas: Path) -> None:
    db = tmp_path / "q.duckdb"
    loud = invoke("personas", "import", personas, "--db", db)
    assert loud.exit_code == 0 and loud.stderr.strip()  # progress and notes on stderr
    quiet = invoke("personas", "import", personas, "--db", tmp_path / "q2.duckdb", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    rows = invoke("-q", "sql", "--db", db, "--format", "csv", "select count(*) as n from personas")
    assert rows.stdout == "n\n6\n" and rows.stderr == ""
    line = one_line_error(invoke("sql", "-q", "--db", tmp_path / "none.duckdb", "select 1"))
    assert "no such database" in line


def test_each_invocation_starts_at_normal_chatter(tmp_path: Path, personas: Path) -> None:
    assert invoke("-q", "personas", "import", personas, "--db", tmp_path / "a.duckdb").stderr == ""
    assert invoke("personas", "import", personas, "--db", tmp_path / "b.duckdb").stderr.strip()
    assert invoke("-v", "sql", "--db", tmp_path / "a.duckdb", "select 1").stderr.startswith(
        "settings of personahub sql:")
    assert "settings of" not in invoke("sql", "--db", tmp_path / "a.duckdb", "select 1").stderr


def test_verbose_prints_the_settings_and_a_line_per_batch(tmp_path: Path, personas: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONAHUB_DB", str(tmp_path / "env.duckdb"))
    result = invoke("personas", "import", personas, "--batch-size", "2", "-v")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "settings of personahub personas import:"
    assert f"  --db = {tmp_path / 'env.duckdb'}  (env PERSONAHUB_DB)" in lines
    assert "  --batch-size = 2  (given)" in lines and "  --format = auto  (default)" in lines
    batches = [line for line in lines if line.startswith("progress: ")]
    assert [b.rsplit(" ", 1)[1] for b in batches] == ["2", "4", "6"]


def test_verbose_redacts_the_model_spec(tmp_path: Path) -> None:
    spec = "http://user:hunter2@127.0.0.1:9/v1?model=m&api_key=sk-zzz"
    result = invoke("-v", "judge", "--llm", spec, "--job", "j", "--db", tmp_path / "x.duckdb")
    assert result.exit_code != 0
    assert "--llm = http://***@127.0.0.1:9/v1?model=m&api_key=***" in result.stderr
    assert "hunter2" not in result.output and "sk-zzz" not in result.output


def test_quiet_and_verbose_together_is_a_usage_error() -> None:
    assert "-q and -v cannot be combined" in usage_error(invoke("-q", "sql", "-v", "select 1"))


def test_emit_json_prints_one_object_and_json_mode_moves_results_to_stderr(
        tmp_path: Path) -> None:
    demo = PersonahubTyper()

    @demo.command()
    def job(as_json: cli_options.JsonOption = False) -> None:
        """A job that prints a summary, then its result."""
        common.out.print("summary table")
        common.say("chatter")
        if as_json:
            common.emit_json("demo", status="done", ids={"job_id": "j1"}, counts={"items": 3},
                             paths={"db": tmp_path / "x.duckdb", "out": None}, shortfall=0)

    @demo.command()
    def other() -> None:
        """Prints its result on stdout."""
        common.out.print("result")

    plain = CliRunner().invoke(demo, ["job"])
    assert plain.stdout == "summary table\n"
    as_json = CliRunner().invoke(demo, ["job", "--json"])
    assert json.loads(as_json.stdout) == {
        "command": "demo", "status": "done", "job_id": "j1", "counts": {"items": 3},
        "paths": {"db": str(tmp_path / "x.duckdb")}, "shortfall": 0}
    assert "summary table" in as_json.stderr and as_json.stdout.count("\n") == 1
    assert CliRunner().invoke(demo, ["other"]).stdout == "result\n"  # reset by the next one

"""The entry points other than ``personahub`` itself, in-process and fast (the slow tests run them
as real processes): ``python -m personahub``, ``python SCENARIO.py`` (``personahub.cli.main``)
and ``personahub provider-batch import``'s first check."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

import personahub.cli
from tests.cli_helpers import invoke

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_personahub_is_the_personahub_command(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["personahub", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("personahub", run_name="__main__")
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "Usage: personahub" in out and "run" in out and "sql" in out


def test_a_scenario_file_run_as_a_script_is_personahub_run(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    scenario = str(ROOT / "scenarios" / "riverside_town.py")
    monkeypatch.setattr(sys, "argv", [scenario, "--help"])
    with pytest.raises(SystemExit) as stop:
        personahub.cli.main(scenario)
    assert stop.value.code == 0
    assert "Usage: personahub run" in capsys.readouterr().out


@pytest.mark.parametrize("group", ["provider-batch", "batch"])
def test_batch_import_of_a_missing_results_file_is_one_line_naming_it(tmp_path: Path,
                                                                       group: str) -> None:
    """``provider-batch import`` and its old name ``batch import`` (which says it is old)."""
    db = tmp_path / "hub.duckdb"
    done = invoke(group, "import", tmp_path / "results.jsonl", "--job", "j1", "--db", db)
    lines = [line for line in done.stderr.splitlines() if "deprecated" not in line]
    assert len(lines) == 1 and done.exit_code != 0, done.stderr
    assert "results.jsonl" in lines[0] and "cannot read the results file" in lines[0]
    assert ("personahub batch is deprecated" in done.stderr) is (group == "batch")
    assert not db.exists()

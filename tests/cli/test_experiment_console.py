"""What ``personahub experiment`` says while it runs: the engine banner and the offline caveat,
and progress within each arm's run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import invoke
from tests.sim.test_experiment_run import scenario_file


@pytest.mark.slow
def test_an_experiment_names_its_engine_and_shows_each_runs_steps(tmp_path: Path) -> None:
    """It started silent: no engine banner, no offline caveat, nothing within an arm's run."""
    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    result = invoke("experiment", path, "--db", tmp_path / "e.duckdb", "--replicates", "1", "-v")
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "engine: offline — deterministic offline engine" in err
    assert err.count("engine: ") == 1  # once, not per arm run
    assert "arm a #0: steps 1/2" in err and "arm b #0: steps 2/2" in err
    assert "the offline engine answered every run (not a language model)" in result.stdout


@pytest.mark.slow
def test_a_quiet_experiment_prints_its_table_only(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    result = invoke("experiment", path, "--db", tmp_path / "e.duckdb", "--replicates", "1", "-q")
    assert result.exit_code == 0, result.output
    assert "engine:" not in result.stderr and "steps" not in result.stderr
    assert "buy@2" in result.stdout

"""Small things a newcomer meets: ``personahub jobs`` piped writes whole values, ``sql`` names
the valid columns of an unknown one, and a ``--no-X`` flag's help says what ``--no-X`` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import invoke, one_line_error


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("pipes") / "hub.duckdb"
    result = invoke("synthesize", "math_problem", "--n", 2, "--db", db, "--preview", 0)
    assert result.exit_code == 0, result.output
    return db


@pytest.mark.slow
def test_jobs_piped_writes_whole_values(hub: Path) -> None:
    """Piped into a file or less, the listing cut its columns to "st…", "fi…"."""
    result = invoke("jobs", "--db", hub)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "job_id" in line)
    assert [w for w in header.replace("┃", " ").split()] == [
        "job_id", "kind", "status", "started_at", "finished_at", "what"]
    assert "…" not in result.stdout
    row = next(line for line in result.stdout.splitlines() if "synth-" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[1:3] == ["synthesis", "finished"] and len(cells[3]) == len("2026-01-01 00:00:00")


@pytest.mark.slow
def test_runs_piped_writes_whole_values(tmp_path: Path) -> None:
    from tests.sim.test_experiment_run import scenario_file

    db, path = tmp_path / "run.duckdb", scenario_file(tmp_path, '(Arm(name="a"), Arm(name="b"))')
    # a name that makes the listing wider than an 80-column terminal
    path.write_text(path.read_text().replace('name="tiny_launch"',
                                             'name="the_riverside_ferry_and_its_winter_timetable"'))
    assert invoke("run", path, "--db", db, "--preview", 0).exit_code == 0
    result = invoke("runs", "--db", db)
    assert result.exit_code == 0 and "…" not in result.stdout, result.stdout
    assert "the_riverside_ferry_and_its_winter_timetable" in result.stdout


@pytest.mark.slow
def test_an_unknown_column_names_the_candidates(hub: Path) -> None:
    """sql said only 'Referenced column "kindd" not found', without DuckDB's candidates."""
    line = one_line_error(invoke("sql", "--db", hub, "select kindd from jobs"))
    assert 'did you mean one of "kind"' in line, line
    line = one_line_error(invoke("sql", "--db", hub, "select * from jobz"))
    assert 'did you mean "jobs"?' in line, line


def test_no_refusal_option_says_what_it_does() -> None:
    """The help of --no-refusal-option (the flag shown) described --refusal-option."""
    help_text = " ".join(invoke("calibrate", "--help").stdout.split())
    entry = help_text.split("--no-refusal-option", 1)[1]
    assert entry.strip().startswith("Leave the survey's refusal options (Refused, ...) out of "
                                    "the answers offered")

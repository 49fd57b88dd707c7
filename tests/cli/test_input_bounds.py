"""Inputs a command cannot hold are refused in one line before anything is written: a device or a
FIFO named as a file, a missing, empty or binary file, a count beyond its bound, a plan larger
than the limit (with how to go past it), credentials in a URL.

Cases that would plan without bound, or wait on a FIFO, where the check is missing run the CLI in
a child process with its address space capped and a guard that kills it, so a regression fails
the test instead of filling the machine's memory.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from personahub.api import run_synthesis
from personahub.core.plan_limits import PLAN_ENV
from personahub.core.store import connect
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import cli, env, invoke, one_line_error, usage_error
from tests.pipelines.calibrate_fixtures import make_population, write_survey

ADDRESS_SPACE = 6 * 1024**3  # a child that plans without bound hits this and fails
GUARD_S = 300  # a child that waits on a FIFO is killed after this (never reached when refused)


def bounded(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run personahub ARGS in a child process whose memory is capped; fail if it had to be
    killed."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    try:
        return subprocess.run(cli(*map(str, args)), cwd=cwd, env=env(), capture_output=True,
                              text=True, timeout=GUARD_S, preexec_fn=cap, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"personahub {' '.join(map(str, args))} neither refused nor ended")


def one_usage_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert done.stdout == ""
    return lines[0]


def count(db: Path, sql: str) -> int:
    con = connect(db, read_only=True)
    try:
        row = con.execute(sql).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


@pytest.fixture
def hub(tmp_path: Path) -> tuple[Path, Path, str]:
    """A database with a population, and a long-CSV survey."""
    db = tmp_path / "hub.duckdb"
    return db, write_survey(tmp_path / "survey.csv"), make_population(tmp_path, db)


@pytest.fixture
def synth_db(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "synth.duckdb"
    return db, run_synthesis(SynthConfig(task="math_problem", n=6, db=str(db))).job_id


def _no_calibration(db: Path) -> None:
    assert count(db, "SELECT count(*) FROM jobs WHERE kind = 'calibration'") == 0


# --------------------------------------------------------------------------- files


@pytest.mark.slow
@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_calibrate_humans_that_is_no_file_is_one_line_and_writes_nothing(
        tmp_path: Path, fifo: Path, source: str) -> None:
    survey = write_survey(tmp_path / "survey.csv")
    humans = fifo if source == "fifo" else Path(source)
    done = bounded("calibrate", survey, "--population", "all", "--n", 3, "--humans", humans,
                   "--db", tmp_path / "new.duckdb", cwd=tmp_path)
    what = "a FIFO (named pipe)" if source == "fifo" else "a character device"
    assert one_usage_line(done) == f"error: --humans {humans}: is {what}, not a regular file"
    assert not (tmp_path / "new.duckdb").exists()


@pytest.mark.slow
def test_calibrate_humans_missing_or_a_folder_is_one_line(tmp_path: Path) -> None:
    survey = write_survey(tmp_path / "survey.csv")
    base = ("calibrate", survey, "--population", "all", "--db", tmp_path / "new.duckdb")
    missing = one_line_error(invoke(*base, "--humans", tmp_path / "none.csv"))
    assert missing == f"error: --humans {tmp_path / 'none.csv'}: file not found"
    folder = usage_error(invoke(*base, "--humans", tmp_path))
    assert folder == f"error: --humans {tmp_path}: is a folder; give a file"
    assert not (tmp_path / "new.duckdb").exists()


def test_a_survey_argument_that_is_a_device_says_so(tmp_path: Path, fifo: Path) -> None:
    for path, what in ((Path("/dev/zero"), "a character device"), (fifo, "a FIFO (named pipe)")):
        line = usage_error(invoke("calibrate", path, "--population", "all",
                                  "--db", tmp_path / "new.duckdb"))
        assert line.startswith(f"error: {path}: is {what}, not a regular file (give an "
                               "OpinionQA wave folder"), line
    assert not (tmp_path / "new.duckdb").exists()


@pytest.mark.slow
def test_evaluate_against_a_bad_benchmark_is_one_line_and_writes_nothing(
        tmp_path: Path, synth_db: tuple[Path, str], fifo: Path) -> None:
    db, job = synth_db
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "picture.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    (tmp_path / "answers.csv").write_text("id,answer\n1,42\n")
    cases: dict[str, tuple[Callable[..., str], str]] = {
        "none.jsonl": (one_line_error, "file not found"),
        "empty.jsonl": (one_line_error, "is empty; give a benchmark file with a text column"),
        "picture.jsonl": (one_line_error, "not UTF-8 text"),
        "answers.csv": (one_line_error, "no text column text / question"),
        str(fifo): (usage_error, "is a FIFO (named pipe), not a regular file"),
        "/dev/zero": (usage_error, "is a character device, not a regular file"),
    }
    for name, (refused, reason) in cases.items():
        path = Path(name) if name.startswith("/") else tmp_path / name
        line = refused(invoke("evaluate", "--db", db, "--job", job, "--test-n", 2, "--solver",
                              "offline", "--agree", 1, "--against", path))
        assert line.startswith(f"error: --against {path}"), line
        assert reason in line, (name, line)
        assert "--text-column" not in line  # evaluate has no such option
    assert count(db, "SELECT count(*) FROM jobs WHERE kind = 'evaluation'") == 0
    assert count(db, "SELECT count(*) FROM eval_splits") == 0


# --------------------------------------------------------------------------- counts and plans


@pytest.mark.slow
@pytest.mark.parametrize("flags", [("--n", 1_000_000_000), ("--no-persona-n", 1_000_000_000)],
                         ids=["n", "no-persona-n"])
def test_calibrate_counts_beyond_their_bound_are_refused(
        hub: tuple[Path, Path, str], tmp_path: Path, flags: tuple[str, int]) -> None:
    db, survey, population = hub
    done = bounded("calibrate", survey, "--population", population, "--question", "SAFE",
                   "--attribute", "SEX", *flags, "--db", db, cwd=tmp_path)
    line = one_usage_line(done)
    assert f"Invalid value for '{flags[0]}'" in line and "100000" in line
    _no_calibration(db)


@pytest.mark.slow
def test_evaluate_samples_beyond_their_bound_are_refused(
        synth_db: tuple[Path, str], tmp_path: Path) -> None:
    db, job = synth_db
    done = bounded("evaluate", "--db", db, "--job", job, "--test-n", 2, "--samples",
                   1_000_000_000, "--solver", "offline?seed=1", "--solver", "offline?seed=2",
                   cwd=tmp_path)
    assert "Invalid value for '--samples'" in one_usage_line(done)
    assert count(db, "SELECT count(*) FROM jobs WHERE kind = 'evaluation'") == 0


EXPERIMENT = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="tiny", personas=PersonaSource(limit=4), graph=GraphGrowth(hops=0, acquaintances=2),
    steps=1, tasks=("npc_dialogue",), activation=Activation(mode="count", count=1),
    surveys=(Survey(id="buy", steps=(1,), options=("yes", "no"), question="Buy it?"),), seed=5)
EXPERIMENT = Experiment(arms=(Arm(name="a"), Arm(name="b")), replicates=1,
                        outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))
'''


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--replicates", "--steps"])
def test_experiment_counts_beyond_their_bound_are_refused(tmp_path: Path, flag: str) -> None:
    scenario = tmp_path / "tiny.py"
    scenario.write_text(EXPERIMENT)
    done = bounded("experiment", scenario, flag, 1_000_000_000, "--db", tmp_path / "e.duckdb",
                   cwd=tmp_path)
    assert f"Invalid value for '{flag}'" in one_usage_line(done)
    assert not (tmp_path / "e.duckdb").exists()


@pytest.mark.slow
def test_a_calibration_plan_over_the_limit_says_how_to_go_past_it(
        hub: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    db, survey, population = hub
    args = ("calibrate", survey, "--population", population, "--n", 2, "--no-persona-n", 50,
            "--db", db)
    monkeypatch.setenv(PLAN_ENV, "100")
    line = usage_error(invoke(*args))
    found = re.fullmatch(r"error: calibrate: the plan is (\d+) model calls, more than the 100 one "
                         r"job may plan; ask for fewer \(--n, --no-persona-n, --question, "
                         rf"--attribute or --limit\), or set {PLAN_ENV}=(\d+) to go past it", line)
    assert found is not None, line
    planned = int(found[1])  # 3 questions x (their panels' personas + 50 without a persona)
    assert found[2] == found[1] and 3 * 50 < planned <= 3 * (2 * 4 + 50)
    _no_calibration(db)
    monkeypatch.setenv(PLAN_ENV, str(planned))  # at the limit: it runs, and asks what it planned
    done = invoke(*args)
    assert done.exit_code == 0, done.output
    assert f"of {planned} answers" in done.stdout


def test_an_evaluation_plan_over_the_limit_says_how_to_go_past_it(
        synth_db: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    db, job = synth_db
    monkeypatch.setenv(PLAN_ENV, "10")
    line = usage_error(invoke("evaluate", "--db", db, "--job", job, "--test-n", 2, "--samples", 3,
                              "--solver", "offline?seed=1", "--solver", "offline?seed=2"))
    assert "the plan is 12 model calls, more than the 10" in line and f"{PLAN_ENV}=12" in line
    assert count(db, "SELECT count(*) FROM jobs WHERE kind = 'evaluation'") == 0
    assert count(db, "SELECT count(*) FROM eval_splits") == 0


def test_a_plan_limit_that_is_not_a_number_is_one_line(
        hub: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    db, survey, population = hub
    monkeypatch.setenv(PLAN_ENV, "lots")
    line = usage_error(invoke("calibrate", survey, "--population", population, "--db", db))
    assert line == f"error: {PLAN_ENV}='lots': give a whole number of model calls >= 1"


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("flag", ["--model", "--solver", "--equivalence-judge"])
def test_credentials_in_any_evaluate_spec_are_refused_before_anything_is_written(
        synth_db: tuple[Path, str], flag: str) -> None:
    db, job = synth_db
    line = usage_error(invoke("evaluate", "--db", db, "--job", job, "--test-n", 2, "--solver",
                              "offline", "--agree", 1, flag, "http://u:pw@127.0.0.1:9/v1?model=m"))
    assert line.startswith(f"error: {flag} http://***@127.0.0.1:9/v1?model=m: credentials in the "
                           "URL"), line
    assert "pw" not in line
    assert count(db, "SELECT count(*) FROM jobs WHERE kind = 'evaluation'") == 0
    assert count(db, "SELECT count(*) FROM eval_splits") == 0


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {"elicit": ("sample", "distribution", "few-shot:1"), "steering": ("persona", "attributes")},
    {"archetypes": (2, 3), "no_persona_n": 0},
], ids=["methods", "archetypes"])
def test_the_counted_plan_is_the_plan_asked(hub: tuple[Path, Path, str],
                                            monkeypatch: pytest.MonkeyPatch,
                                            options: dict[str, object]) -> None:
    """The limit counts a calibration's asks without making them: the count must be what the job
    then asks, for every elicitation method."""
    import personahub
    from personahub.pipelines import calibrate as calibrate_module

    counted: list[int] = []
    monkeypatch.setattr(calibrate_module, "check_plan",
                        lambda calls, what, fewer: counted.append(calls))
    db, survey, population = hub
    job = personahub.calibrate(survey, population=population, db=db, n=4, seed=2, **options)
    assert counted == [job.summary.asks] and job.summary.asks > 0

"""Arm runs under way at once ("Arms and replicates are runs on the kernel, on any
executor (Ray spreads them)"): ``experiment(..., parallel=N)`` / ``--parallel N`` runs N arm x
replicate runs on threads, each on its own connection to the one database, and ends with the
tables of the runs one after another; killed, the same command goes on to those tables."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

import personahub.experiments as experiments_module
from personahub.core.errors import PersonahubError
from personahub.experiments import ExperimentResult, experiment
from tests.cli_helpers import ROOT, cli, env, invoke, kill_when
from tests.pipeline_helpers import rows

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import (Activation, Event, GraphGrowth, PersonaSource, Scenario,
                                     Survey)
SCENARIO = Scenario(
    name="tiny_parallel", personas=PersonaSource(limit=6),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=STEPS, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=2),
    surveys=(Survey(id="buy", steps=(1, STEPS), options=("yes", "no", "unsure"), question="Buy?"),
             Survey(id="fair", steps=(STEPS,), answer="scale", low=1, high=10, question="Fair?")),
    seed=7)
EXPERIMENT = Experiment(arms=(Arm(name="calm"), Arm(name="rumour", TREATMENT)),
                        replicates=2, DESIGN
                        outcomes=(Outcome(survey="buy", step=STEPS, options=("yes",)),
                                  Outcome(survey="fair", step=STEPS)))
'''
KEYS = ["outcome", "arm", "replicate", "agent_id"]
ANSWERS = ("SELECT e.arm, e.replicate, a.agent_id, a.step, a.answer_choice, a.answer_scale "
           "FROM experiments e JOIN survey_answers a USING (run_id) ORDER BY ALL")


def scenario_file(tmp_path: Path, *, steps: int = 1, design: str = "") -> Path:
    """The tiny scenario file; ``design``: ``design="within",`` (the rumour an event of its
    arm's agents) or between worlds (the rumour in the rumour world's text)."""
    path = tmp_path / "tiny_parallel.py"
    treatment = ('add_events=(Event(step=1, text="A rumour spreads."),)' if design
                 else 'world="A rumour spreads."')
    path.write_text(SCENARIO.replace("STEPS", str(steps)).replace("DESIGN", design)
                    .replace("TREATMENT", treatment), encoding="utf-8")
    return path


def answers(values: pd.DataFrame) -> pd.DataFrame:
    return values.drop(columns="run_id").sort_values(KEYS).reset_index(drop=True)


def assert_same_tables(got: ExperimentResult, want: ExperimentResult) -> None:
    """The runs (but their random ids), the answers, the arm table and the effects agree."""
    assert got.runs.drop(columns="run_id").equals(want.runs.drop(columns="run_id"))
    assert answers(got.values).equals(answers(want.values))
    assert got.arms.equals(want.arms)
    assert got.effects.equals(want.effects)


@pytest.mark.slow
@pytest.mark.parametrize("design", ["", 'design="within",'])
def test_parallel_runs_make_the_tables_of_sequential_runs(tmp_path: Path, design: str) -> None:
    path = scenario_file(tmp_path, design=design)
    told: list[tuple[str, int, str]] = []
    parallel = experiment(path, db=tmp_path / "parallel.duckdb", parallel=4,
                          on_run=lambda *a: told.append(a))
    sequential = experiment(path, db=tmp_path / "sequential.duckdb")
    assert len(parallel.ran) == (2 if design else 4)
    assert sorted(r for _, _, r in told) == sorted(parallel.ran)
    assert_same_tables(parallel, sequential)
    if design:
        assert parallel.agents.drop(columns="run_id").equals(
            sequential.agents.drop(columns="run_id"))
    # the same rows per run in the shared tables: no run lost or doubled a write
    assert rows(tmp_path / "parallel.duckdb", ANSWERS) == rows(tmp_path / "sequential.duckdb",
                                                               ANSWERS)
    # the personas both arms drew are stored once (the runs' inserts took turns)
    count = "SELECT count(*), count(DISTINCT persona_id) FROM personas"
    assert rows(tmp_path / "parallel.duckdb", count) == rows(tmp_path / "sequential.duckdb", count)
    again = experiment(path, db=tmp_path / "parallel.duckdb", parallel=4)
    assert again.ran == []  # every run was linked: the same id goes on with nothing


def test_runs_overlap_and_a_failed_one_is_raised_after_the_others_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs are under way together (each waits for the other at a barrier, which runs one
    after another would never pass); a run that fails stops no run under way, is raised once
    they finished, and the finished runs stay linked for the resume."""
    meeting = threading.Barrier(2, timeout=60)
    started: list[tuple[str, int]] = []

    class Summary:
        def __init__(self, run_id: str) -> None:
            self.run_id = run_id

    def fake_run(config: Any, where: str, **_: Any) -> Summary:
        arm = "rumour" if "rumour" in config.scenario.arm_world else "calm"
        started.append((arm, config.seed - 7))
        if config.seed == 7:  # replicate 0: both arms at once
            meeting.wait()
        if (arm, config.seed) == ("rumour", 8):
            raise PersonahubError(f"{where}: the endpoint went away")
        return Summary(f"run-{arm}-{config.seed}")

    monkeypatch.setattr(experiments_module, "_run", fake_run)
    path = scenario_file(tmp_path)
    db = tmp_path / "exp.duckdb"
    with pytest.raises(PersonahubError, match="arm 'rumour' replicate 1: the endpoint went"):
        experiment(path, db=db, parallel=2)
    assert sorted(started) == [("calm", 0), ("calm", 1), ("rumour", 0), ("rumour", 1)]
    linked = rows(db, "SELECT arm, replicate, run_id FROM experiments ORDER BY ALL")
    assert linked == [("calm", 0, "run-calm-7"), ("calm", 1, "run-calm-8"),
                      ("rumour", 0, "run-rumour-7")]


@pytest.mark.slow  # starts a thread that interrupts the experiment
@pytest.mark.parametrize(("parallel", "sig", "name"), [(2, signal.SIGINT, "Ctrl-C"),
                                                       (1, signal.SIGINT, "Ctrl-C"),
                                                       (2, signal.SIGTERM, "SIGTERM")])
def test_an_interrupt_starts_no_further_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: int, sig: int,
        name: str) -> None:
    """Ctrl-C (SIGTERM) while replicate 0's runs are under way: with ``parallel=2`` both run to
    their end and are linked, and no later run starts (the signal only sets a flag, so no
    interrupt lands inside the pool's locks); with 1 the run under way, in the main thread,
    stops. Either way one ``Stopped`` line of the signal's kind names the experiment."""
    from personahub.core.interrupts import Stopped, sigterm_as_interrupt

    main = threading.get_ident()
    started: list[tuple[str, int]] = []
    stopped: list[tuple[str, int]] = []
    going = threading.Semaphore(0)

    class Summary:
        def __init__(self, run_id: str) -> None:
            self.run_id = run_id

    def fake_run(config: Any, where: str, **_: Any) -> Any:
        arm = "rumour" if "rumour" in config.scenario.arm_world else "calm"
        started.append((arm, config.seed - 7))
        going.release()
        try:
            for _ in range(50):  # 1 s: the signal comes while the runs are under way
                threading.Event().wait(0.02)
        except KeyboardInterrupt:
            stopped.append((arm, config.seed - 7))
            raise
        return Summary(f"run-{arm}-{config.seed}")

    def ctrl_c() -> None:
        for _ in range(parallel):
            assert going.acquire(timeout=60)
        signal.pthread_kill(main, sig)

    monkeypatch.setattr(experiments_module, "_run", fake_run)
    db = tmp_path / "exp.duckdb"
    sender = threading.Thread(target=ctrl_c)
    sender.start()
    with pytest.raises(KeyboardInterrupt) as caught, sigterm_as_interrupt():
        experiment(scenario_file(tmp_path), db=db, parallel=parallel)
    sender.join(timeout=60)
    assert isinstance(caught.value, Stopped)
    under_way = [("calm", 0), ("rumour", 0)][:parallel]
    done = parallel if parallel > 1 else 0
    assert str(caught.value) == (
        f"experiment tiny_parallel interrupted by {name} after {done} of the 4 runs to go; the "
        "same personahub.experiment(...) call goes on (finished runs are kept)")
    assert sorted(started) == under_way  # no further run started
    if parallel > 1:
        assert stopped == []
        assert sorted(rows(db, "SELECT arm, replicate FROM experiments")) == under_way
    else:
        assert stopped == under_way
        assert not db.exists()


@pytest.mark.slow  # waits 1 s for the signal
def test_a_signal_once_every_run_is_under_way_says_they_all_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM once both runs to go are under way (``parallel=2``, one replicate): both finish
    and are linked, and the line says so (it said "after 2 of the 2 runs to go", as if some
    were left)."""
    from personahub.core.interrupts import Stopped, sigterm_as_interrupt

    main = threading.get_ident()
    going = threading.Semaphore(0)

    class Summary:
        def __init__(self, run_id: str) -> None:
            self.run_id = run_id

    def fake_run(config: Any, where: str, **_: Any) -> Summary:
        arm = "rumour" if "rumour" in config.scenario.arm_world else "calm"
        going.release()
        for _ in range(50):  # 1 s: the signal comes while both runs are under way
            threading.Event().wait(0.02)
        return Summary(f"run-{arm}")

    def terminate() -> None:
        for _ in range(2):
            assert going.acquire(timeout=60)
        signal.pthread_kill(main, signal.SIGTERM)

    monkeypatch.setattr(experiments_module, "_run", fake_run)
    db = tmp_path / "exp.duckdb"
    sender = threading.Thread(target=terminate)
    sender.start()
    with pytest.raises(KeyboardInterrupt) as caught, sigterm_as_interrupt():
        experiment(scenario_file(tmp_path), db=db, parallel=2, replicates=1)
    sender.join(timeout=60)
    assert isinstance(caught.value, Stopped)
    assert str(caught.value) == (
        "experiment tiny_parallel interrupted by SIGTERM once every run had started: all 2 runs "
        "finished and are kept; the same personahub.experiment(...) call prints its tables")
    assert sorted(rows(db, "SELECT arm, run_id FROM experiments")) == [("calm", "run-calm"),
                                                                        ("rumour", "run-rumour")]


def test_ctrl_c_amid_the_shared_connect_is_the_experiments_interrupt_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing while DuckDB builds the schema of the file the parallel runs share comes
    out of DuckDB as "Query interrupted" (it was a traceback and exit 1): it is the interrupt,
    with the experiment's line."""
    from personahub.core import interrupts

    def interrupted_connect(db: Any, **_: Any) -> Any:
        with contextlib.suppress(KeyboardInterrupt):  # the handler notes the signal, as Ctrl-C
            interrupts._raise_interrupt(signal.SIGINT, None)
        raise RuntimeError("Query interrupted")

    monkeypatch.setattr(experiments_module, "connect", interrupted_connect)
    with pytest.raises(KeyboardInterrupt) as caught:
        experiment(scenario_file(tmp_path), db=tmp_path / "exp.duckdb", parallel=2)
    assert str(caught.value).startswith(
        "experiment tiny_parallel interrupted by Ctrl-C after 0 of the 4 runs to go; ")


def test_parallel_is_no_run_setting_and_must_be_positive(tmp_path: Path) -> None:
    path = scenario_file(tmp_path)
    with pytest.raises(PersonahubError, match="parallel must be >= 1"):
        experiment(path, db=tmp_path / "exp.duckdb", parallel=0)
    result = invoke("experiment", path, "--db", tmp_path / "exp.duckdb", "--parallel", 0)
    assert result.exit_code == 2 and "--parallel" in result.output


@pytest.mark.slow
def test_a_parallel_experiment_killed_mid_way_resumes_to_the_same_tables(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, steps=3)
    db, said = tmp_path / "exp.duckdb", tmp_path / "stderr.txt"
    args = ["experiment", str(path), "--db", str(db), "--parallel", "2"]
    with said.open("w") as stderr:
        code = kill_when(args, lambda: ": run " in said.read_text(),
                         "no run finished", stderr=stderr, within_s=300)
    assert code == -signal.SIGKILL, said.read_text()
    con = duckdb.connect(str(db), read_only=True)
    try:
        before = {r[0] for r in con.execute("SELECT run_id FROM experiments").fetchall()}
    finally:
        con.close()
    assert 1 <= len(before) < 4

    resumed = experiment(path, db=db, parallel=2)
    assert len(resumed.ran) == 4 - len(before)
    assert before <= set(resumed.runs.run_id) and before.isdisjoint(resumed.ran)
    whole = experiment(path, db=tmp_path / "whole.duckdb")
    assert_same_tables(resumed, whole)
    # the runs the kill cut were gone on with: no run's rows are left over, linked to nothing
    assert rows(db, "SELECT count(*) FROM runs WHERE run_id NOT IN "
                    "(SELECT run_id FROM experiments)") == [(0,)]
    agents = "SELECT count(*) FROM run_agents"
    assert rows(db, agents) == rows(tmp_path / "whole.duckdb", agents)


@pytest.mark.slow
@pytest.mark.parametrize("twice", [False, True])
def test_ctrl_c_under_parallel_runs_and_the_command_goes_on(tmp_path: Path, twice: bool) -> None:
    """Ctrl-C under ``--parallel 2`` once the first run finished (the next ones under way, 8
    steps of at least 0.75 s each): no further run starts, those under way finish and are
    linked, the exit is 130 with one line pointing at the experiment command. A second Ctrl-C
    exits at once (the runs under way are left as ``kill -9`` leaves them). Either way that
    command then makes the tables of an experiment never interrupted."""
    path = scenario_file(tmp_path, steps=8)
    db, said = tmp_path / "exp.duckdb", tmp_path / "stderr.txt"
    args = ["experiment", str(path), "--db", str(db), "--parallel", "2"]
    proc = subprocess.Popen(cli(*args, "--offline-latency", "0.75"), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=said.open("w"))
    try:
        deadline = time.monotonic() + 120
        while ": run " not in said.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, "no run finished"
            time.sleep(0.05)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        if twice:
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in said.read_text().splitlines() if line.strip()]
    assert code == 130, lines
    assert not any("Traceback" in line for line in lines), lines
    assert any(line.startswith("Ctrl-C: no further run starts; the runs under way finish "
                               "first") for line in lines), lines
    linked = {r[0] for r in rows(db, "SELECT run_id FROM experiments")}
    runs = rows(db, "SELECT r.run_id, j.status, (SELECT count(*) FROM steps s "
                    "WHERE s.run_id = r.run_id) FROM runs r JOIN jobs j ON j.job_id = r.run_id")
    assert len(linked) >= 1
    assert {(status, steps) for run_id, status, steps in runs if run_id in linked} == \
        {("finished", 8)}
    left = [(status, steps) for run_id, status, steps in runs if run_id not in linked]
    if twice:
        assert lines[-1].startswith("stopped at once; the same personahub experiment command")
    elif len(linked) < 4:
        assert lines[-1].startswith("experiment tiny_parallel interrupted by Ctrl-C after ")
        assert lines[-1].endswith(" runs to go; the same personahub experiment command goes "
                                  "on (finished runs are kept)")
        assert left == []  # the runs under way finished and were linked
    else:  # the last two were under way: every run finished, and the line says so
        assert lines[-1] == ("experiment tiny_parallel interrupted by Ctrl-C once every run had "
                             "started: all 4 runs finished and are kept; the same personahub "
                             "experiment command prints its tables")
        assert left == []
    assert len(linked) + len(left) <= 4  # (which runs had started: the fast test above)

    resumed = invoke(*args)
    assert resumed.exit_code == 0, resumed.output
    assert f"{4 - len(linked)} runs run now, {len(linked)} finished before" in resumed.stderr
    whole = invoke("experiment", path, "--db", tmp_path / "whole.duckdb")
    assert whole.exit_code == 0, whole.output
    assert resumed.stdout == whole.stdout  # the effect table and verdicts
    assert rows(db, ANSWERS) == rows(tmp_path / "whole.duckdb", ANSWERS)


@pytest.mark.slow
def test_parallel_arm_runs_on_ray_make_the_local_tables(local_ray: None, tmp_path: Path) -> None:
    path = scenario_file(tmp_path)
    local = invoke("experiment", path, "--db", tmp_path / "local.duckdb")
    assert local.exit_code == 0, local.output
    on_ray = invoke("experiment", path, "--db", tmp_path / "ray.duckdb", "--executor", "ray",
                    "--ray-workers", 1, "--parallel", 2)
    assert on_ray.exit_code == 0, on_ray.output
    assert on_ray.stdout == local.stdout  # the effect table and verdicts
    assert rows(tmp_path / "ray.duckdb", ANSWERS) == rows(tmp_path / "local.duckdb", ANSWERS)
    executors = rows(tmp_path / "ray.duckdb",
                     "SELECT DISTINCT json_extract_string(config, '$.executor') FROM jobs "
                     "WHERE kind = 'run'")
    assert executors == [("ray",)]


@pytest.mark.slow  # starts two writer threads
def test_write_transactions_of_two_threads_take_turns(tmp_path: Path) -> None:
    """Two connections inserting the same key (INSERT OR IGNORE, as two runs drawing one
    persona) inside ``transaction``: without the turns the second COMMIT fails, DuckDB's
    concurrency being optimistic; with them the second sees the first's row."""
    from personahub.core.store import transaction

    db = tmp_path / "t.duckdb"
    first = duckdb.connect(str(db))
    first.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY)")
    second = duckdb.connect(str(db))
    inside = threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        inside.wait(timeout=60)
        try:
            with transaction(second):
                second.execute("INSERT OR IGNORE INTO t VALUES ('p1')")
        except BaseException as exc:  # noqa: BLE001  # any failure is the test's
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    with transaction(first):
        first.execute("INSERT OR IGNORE INTO t VALUES ('p1')")
        inside.set()  # the other thread now waits for this transaction's end
        thread.join(timeout=0.5)
    thread.join(timeout=60)
    assert not thread.is_alive() and errors == []
    assert first.execute("SELECT k FROM t").fetchall() == [("p1",)]
    first.close()
    second.close()


def test_runs_sharing_the_pool_leave_its_memory_limit_alone() -> None:
    """``release_cached_blocks`` lowers the instance's memory limit for its checkpoint, which
    would fail another run's allocation; inside ``shared_pool`` it touches nothing."""
    from personahub.sim.store import release_cached_blocks, shared_pool

    class Recording:
        """A DuckDB connection that notes each statement."""

        def __init__(self) -> None:
            self.con = duckdb.connect()
            self.sql: list[str] = []

        def execute(self, sql: str, *args: Any) -> Any:
            self.sql.append(sql)
            return self.con.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.con, name)

    alone, shared = Recording(), Recording()
    release_cached_blocks(alone)  # type: ignore[arg-type]
    with shared_pool():
        release_cached_blocks(shared)  # type: ignore[arg-type]
    assert any("memory_limit" in sql for sql in alone.sql) and shared.sql == []

"""Faithful recovery: setup failures stop instead of shrinking the society, setup is
never redone by a resume, an edited scenario is refused, a resumed synthesis job flags what an
uninterrupted one flags, and Ctrl-C / SIGTERM mark the job interrupted in one line."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from personahub.api import resume_run, run_simulation, run_synthesis
from personahub.cli.app import app
from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.models.client import CallRecord, StructuredResult
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from personahub.pipelines.run import RunConfig
from personahub.pipelines.synthesis_inputs import select_personas
from personahub.pipelines.synthesize import SynthConfig
from personahub.sim.runner import load_scenario_personas
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import cli, env
from tests.conftest import persona_texts
from tests.fakes import Answer, Call, FakeClient, crash_after, unreachable_from_step
from tests.sim.test_resume import snapshot

ROOT = Path(__file__).resolve().parents[2]
SEED = 11  # the scenario_file fixture's seed


def wrapped(answer=None, edit=None, seed: int = SEED) -> FakeClient:
    """The offline client with the scenario_file fixture's seed, and the given hooks."""
    return FakeClient(answer, edit, seed=seed)


def failing_expansion(persona_ids: list[str], times: int, *, status: str = "error",
                      error: str = "HTTP 503: overloaded") -> Answer:
    """Expansion calls about the given personas fail (as after the seam's own retries)
    ``times`` times each, at the endpoint unless ``status``/``error`` say otherwise; everything
    else is answered by the offline engine."""
    left = dict.fromkeys(persona_ids, times)

    def answer(call: Call) -> StructuredResult | None:
        pid = call.persona_id
        if call.purpose == "expand" and left.get(pid, 0) > 0:
            left[pid] -= 1
            record = CallRecord(purpose="expand", model="offline", attempt=1, status=status,
                                latency_ms=1.0, error=error, persona_id=pid)
            return StructuredResult(None, [record])
        return None

    return answer


def bare_name_first(call: Call, result: StructuredResult) -> StructuredResult:
    """The first related person of every expansion answer is a bare name (the quality gate's)."""
    if call.purpose == "expand" and result.value is not None:
        result.value.people[0].persona = "Lilith Maddox Carter"
    return result


@pytest.fixture
def scenario(scenario_file):
    return scenario_file(n_personas=6, steps=2, body=None,
                         graph="GraphGrowth(hops=2, fanout=2, acquaintances=2)")


def start_ids(path: Path) -> list[str]:
    return [p.persona_id for p in load_scenario_personas(load_scenario(path))]


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def whole_run(scenario: Path, tmp_path: Path) -> dict[str, list]:
    db = tmp_path / "whole.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario), db=db))
    return snapshot(db, summary.run_id)


# -- item 1: failed setup calls ---------------------------------------------------------------------

@pytest.mark.slow
def test_an_expansion_call_that_failed_is_asked_again_in_a_second_round(scenario, tmp_path):
    whole = whole_run(scenario, tmp_path)
    flaky = start_ids(scenario)[2]
    db = tmp_path / "flaky.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario), db=db),
                             client=wrapped(failing_expansion([flaky], times=1)))
    snap = snapshot(db, summary.run_id)
    assert snap["runs"][0][0] == "finished"
    assert len(snap["run_agents"]) == len(whole["run_agents"])  # the society did not shrink
    assert {p for _, p in snap["run_agents"]} == {p for _, p in whole["run_agents"]}
    assert rows(db, "SELECT status, attempts FROM expansion_frontier WHERE persona_id = ? AND hop = 0",
                [flaky]) == [("done", 2)]


@pytest.mark.slow
def test_expansion_calls_that_keep_failing_stop_setup_and_a_resume_completes_it(scenario, tmp_path):
    whole = whole_run(scenario, tmp_path)
    broken = start_ids(scenario)[1:3]
    db = tmp_path / "stopped.duckdb"
    with pytest.raises(PersonahubError) as stop:
        run_simulation(RunConfig(scenario=load_scenario(scenario), db=db),
                       client=wrapped(failing_expansion(broken, times=2)))
    (run_id, status), = rows(db, "SELECT run_id, status FROM runs JOIN jobs ON job_id = run_id")
    assert str(stop.value) == (f"setup: 2 of 6 expansion calls failed (most often: HTTP 503: "
                               f"overloaded); resume with personahub run --resume {run_id} --db {db}")
    assert status == "failed"
    assert rows(db, "SELECT count(*) FROM run_agents")[0][0] == 0  # no smaller society
    # the stopped expansion is marked failed (resumable: the run's resume goes on with it)
    assert rows(db, "SELECT status, hops_done FROM expansions "
                    "JOIN jobs ON job_id = expansion_id") == [("failed", 0)]

    resume_run(run_id, db=db)
    resumed = snapshot(db, run_id)
    # The society of the uninterrupted run: the same agents, graph and frontier answers. (Agent
    # ids may differ: the retried personas' people joined the hub later, and a level is listed
    # in hub order.)
    assert sorted(p for _, p in resumed["run_agents"]) == sorted(p for _, p in whole["run_agents"])
    assert resumed["run_edges"] == whole["run_edges"]
    frontier = "SELECT hop, persona_id, status, targets FROM expansion_frontier ORDER BY ALL"
    assert rows(db, frontier) == rows(tmp_path / "whole.duckdb", frontier)
    assert resumed["runs"] == whole["runs"]
    assert rows(db, "SELECT status FROM expansions "
                    "JOIN jobs ON job_id = expansion_id WHERE parent_id = ?", [run_id]) == [("finished",)]
    ok = Counter(p for p, s in rows(db, "SELECT persona_id, status FROM llm_calls WHERE purpose = "
                                        "'expand' AND status = 'ok'"))
    assert set(ok.values()) == {1}  # every persona answered once; nothing was asked twice


@pytest.mark.slow
def test_weak_answers_that_keep_failing_are_counted_and_setup_goes_on(scenario, tmp_path):
    """The failure policy in a run's setup: a persona whose expansion answers failed the
    model's way (invalid, twice over two rounds) is a failed frontier row with its calls' errors,
    and the society grows without its people; the endpoint's failures (the test above) stop."""
    whole = whole_run(scenario, tmp_path)
    weak = start_ids(scenario)[1]
    db = tmp_path / "weak.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario), db=db), client=wrapped(
        failing_expansion([weak], times=2, status="invalid", error="people.0.persona: Field required")))
    assert rows(db, "SELECT status FROM runs JOIN jobs ON job_id = run_id") == [("finished",)]
    assert rows(db, "SELECT status, attempts FROM expansion_frontier WHERE persona_id = ? AND hop = 0",
                [weak]) == [("failed", 2)]
    assert rows(db, "SELECT count(*) FROM llm_calls WHERE persona_id = ? AND purpose = 'expand' "
                    "AND run_id = ? AND error = 'people.0.persona: Field required'",
                [weak, summary.run_id]) == [(2,)]
    agents = rows(db, "SELECT count(*) FROM run_agents")[0][0]
    assert 6 <= agents < len(whole["run_agents"])  # the start personas, and fewer reached


def test_personas_the_quality_gate_rejects_are_not_failures(scenario, tmp_path):
    db = tmp_path / "gate.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario), db=db),
                             client=wrapped(edit=bare_name_first))
    assert rows(db, "SELECT status FROM runs JOIN jobs ON job_id = run_id") == [("finished",)]
    rejected = rows(db, "SELECT count(*), min(reason) FROM rejected WHERE source = 'expand' AND run_id = ?",
                    [summary.run_id])
    assert rejected[0][0] > 0 and rejected[0][1] == "bare_name"
    names = rows(db, "SELECT count(*) FROM personas WHERE text = 'Lilith Maddox Carter'")
    assert names == [(0,)] and summary.rejected.get("bare_name") == rejected[0][0]


# -- item 2: setup is a committed phase ---------------------------------------------------------------

@pytest.mark.slow
def test_a_resume_continues_the_interrupted_expansion_instead_of_redoing_it(scenario, tmp_path):
    whole = whole_run(scenario, tmp_path)
    db = tmp_path / "crashed.duckdb"
    with pytest.raises(PersonahubError, match="simulated crash"):
        run_simulation(RunConfig(scenario=load_scenario(scenario), db=db),
                       client=wrapped(crash_after(8, "expand", RuntimeError)))
    (run_id,), = rows(db, "SELECT run_id FROM runs")
    assert rows(db, "SELECT hops_done FROM expansions") == [(1,)]  # round 1 is committed
    assert rows(db, "SELECT count(*) FROM llm_calls WHERE purpose = 'expand'") == [(6,)]
    resume_run(run_id, db=db)
    assert snapshot(db, run_id) == whole  # llm_calls included: round 1 was not asked again
    assert rows(db, "SELECT count(*), min(status) FROM expansions "
                    "JOIN jobs ON job_id = expansion_id") == [(1, "finished")]


# -- item 3: the scenario file is checked before it is executed -------------------------------------

def stopped_run(scenario: Path, tmp_path: Path) -> tuple[Path, str]:

    db = tmp_path / "stopped.duckdb"
    with pytest.raises(PersonahubError):
        run_simulation(RunConfig(scenario=load_scenario(scenario), db=db),
                       client=wrapped(unreachable_from_step(2)))
    return db, rows(db, "SELECT run_id FROM runs")[0][0]


@pytest.mark.slow
def test_resume_refuses_an_edited_scenario_without_executing_it(scenario, tmp_path):
    db, run_id = stopped_run(scenario, tmp_path)
    original = scenario.read_text()
    marker = tmp_path / "executed"
    scenario.write_text(original + f"\nopen({str(marker)!r}, 'w').close()\n")
    with pytest.raises(PersonahubError) as refused:
        resume_run(run_id, db=db)
    message = str(refused.value)
    assert message.startswith(f"scenario file {scenario} changed since run {run_id} started (sha256 ")
    assert message.endswith("; restore it or start a new run") and "\n" not in message
    assert not marker.exists()  # refused before the file ran
    assert rows(db, "SELECT status FROM runs JOIN jobs ON job_id = run_id") == [("failed",)]

    scenario.unlink()
    with pytest.raises(PersonahubError, match=f"scenario file {scenario} is missing since run {run_id}"):
        resume_run(run_id, db=db)

    scenario.write_text(original)
    assert resume_run(run_id, db=db).steps == 2


def test_resume_refuses_a_run_that_recorded_no_scenario_hash(scenario, tmp_path):
    db, run_id = stopped_run(scenario, tmp_path)
    con = duckdb.connect(str(db))
    con.execute("UPDATE jobs SET config = json_merge_patch(config, '{\"scenario_sha256\": null}')")
    con.close()
    with pytest.raises(PersonahubError, match="does not record the sha256 of its scenario file"):
        resume_run(run_id, db=db)


def test_cli_resume_of_an_edited_scenario_is_one_line(scenario, tmp_path):
    db, run_id = stopped_run(scenario, tmp_path)
    scenario.write_text(scenario.read_text() + "\n# edited\n")
    result = CliRunner().invoke(app, ["run", "--resume", run_id, "--db", str(db)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "changed since run" in errors[0] and "restore it" in errors[0]


# -- item 4: synthesis resume ----------------------------------------------------------------------

WORDS = ("ferry harbour market bridge river lantern baker nurse welder pilot chess jazz pottery "
         "garden orchard mill tower clock square fountain chapel tavern forge stable meadow hill "
         "valley creek cottage granary kiln loom").split()
A = " ".join(WORDS)
B = A + " extra0 extra1"  # a near-duplicate of A
C = " ".join(WORDS[2:]) + " extra0 extra1"  # a near-duplicate of B, but not of A


def chain_answers(order: list[str], crash_at: int | None = None) -> Answer:
    """Instructions A, B, C for the first three personas (B ~ A, C ~ B, C !~ A), distinct ones
    for the rest; raises on the persona ``crash_at`` (a crash mid-job)."""
    position = {pid: i for i, pid in enumerate(order)}

    def answer(call: Call) -> BaseModel:
        i = position[call.persona_id]
        if i == crash_at:
            raise RuntimeError("simulated crash")
        text = [A, B, C][i] if i < 3 else f"Describe topic{i} alpha{i} beta{i} gamma{i} delta{i} please."
        return call.schema(instruction=text)

    return answer


def hub(db: Path, n: int = 6) -> list[str]:
    """Fill ``db``; returns the order a job with seed 0 asks the personas in (its sample order)."""
    con = connect(db)
    upsert_personas(con, [Persona(text=t, source="test") for t in persona_texts(n)])
    ids = [p.persona_id for p in select_personas(con, None, n, seed=0)]
    con.close()
    return ids


def flags(db: Path, job_id: str) -> list[tuple]:
    """(persona, is_duplicate, persona of the item it duplicates) per item."""
    return rows(db, "SELECT i.persona_id, i.is_duplicate, o.persona_id FROM synth_items i LEFT JOIN "
                    "synth_items o ON o.item_id = i.duplicate_of WHERE i.job_id = ? ORDER BY 1", [job_id])


def test_a_resumed_job_flags_exactly_what_the_uninterrupted_job_flags(tmp_path):
    whole_db, cut_db = tmp_path / "whole.duckdb", tmp_path / "cut.duckdb"
    order = hub(whole_db)
    assert hub(cut_db) == order
    options = {"task": "instruction", "n": 6, "batch_size": 2}
    whole = run_synthesis(SynthConfig(**options, db=str(whole_db)), client=wrapped(chain_answers(order)))
    assert whole.duplicates == 1  # B; C is close to B, which is flagged, but not to A

    with pytest.raises(PersonahubError, match="simulated crash"):
        run_synthesis(SynthConfig(**options, db=str(cut_db)),
                      client=wrapped(chain_answers(order, crash_at=2)))
    (job_id,), = rows(cut_db, "SELECT job_id FROM synth_jobs")
    run_synthesis(SynthConfig(**options, db=str(cut_db)), resume=job_id,
                  client=wrapped(chain_answers(order)))
    assert flags(cut_db, job_id) == flags(whole_db, whole.job_id)


@pytest.mark.slow
def test_cli_resume_uses_the_jobs_seed_not_the_cli_default(tmp_path):
    whole_db, cut_db = tmp_path / "whole.duckdb", tmp_path / "cut.duckdb"
    args = ["synthesize", "instruction", "--n", "12", "--seed", "7", "--batch-size", "4"]
    assert CliRunner().invoke(app, [*args, "--db", str(whole_db)]).exit_code == 0
    (whole_job,), = rows(whole_db, "SELECT job_id FROM synth_jobs")

    with pytest.raises(PersonahubError):
        run_synthesis(SynthConfig(task="instruction", n=12, seed=7, batch_size=4, db=str(cut_db)),
                      client=wrapped(crash_after(8, error=RuntimeError), seed=7))
    (job_id,), = rows(cut_db, "SELECT job_id FROM synth_jobs")
    resumed = CliRunner().invoke(app, ["synthesize", "--resume", job_id, "--db", str(cut_db)])
    assert resumed.exit_code == 0, resumed.output
    sql = "SELECT persona_id, text FROM synth_items WHERE job_id = ? ORDER BY 1"
    assert rows(cut_db, sql, [job_id]) == rows(whole_db, sql, [whole_job])


def test_the_same_command_again_offers_the_resume_instead_of_a_second_job(tmp_path):
    db = tmp_path / "s.duckdb"
    args = ["synthesize", "instruction", "--n", "6", "--seed", "3", "--db", str(db)]
    with pytest.raises(PersonahubError):
        run_synthesis(SynthConfig(task="instruction", n=6, seed=3, db=str(db)),
                      client=wrapped(crash_after(0, error=RuntimeError), seed=3))
    (job_id,), = rows(db, "SELECT job_id FROM synth_jobs")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1
    errors = [line for line in again.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: job {job_id} with the same settings is unfinished: resume it with "
                      f"personahub synthesize --resume {job_id} --db {db}, or pass --fresh"]
    assert rows(db, "SELECT count(*) FROM synth_jobs") == [(1,)]

    other = CliRunner().invoke(app, [*args[:-4], "--seed", "4", "--db", str(db)])  # not the same job
    assert other.exit_code == 0, other.output
    fresh = CliRunner().invoke(app, [*args, "--fresh"])
    assert fresh.exit_code == 0, fresh.output
    statuses = dict(rows(db, "SELECT job_id, status FROM synth_jobs JOIN jobs USING (job_id)"))
    assert statuses.pop(job_id) == "superseded" and set(statuses.values()) == {"finished"}


# -- item 5: Ctrl-C and SIGTERM ----------------------------------------------------------------------

def signal_after_start(args: list[str], sig: int, delay: float) -> tuple[int, list[str], str]:
    """Start the CLI, wait for its "... started in" line, wait ``delay``, send ``sig``;
    returns (exit code, stderr lines, the started job's id)."""
    proc = subprocess.Popen(cli(*args), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines, key = [], ""
    try:
        for line in proc.stderr:
            lines.append(line)
            if " started in " in line:
                key = line.split()[1]
                break
        time.sleep(delay)
        proc.send_signal(sig)
        lines += proc.stderr.readlines()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, [line.rstrip("\n") for line in lines if line.strip()], key


# 5 steps, each answered after 0.3 s of offline latency (>= 1.5 s): the signal, 0.2 s after the
# start, finds the run going
SLOW = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="slow", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=2), steps=5, activation=1.0,
                    tasks=("npc_dialogue",), seed=3)
"""


@pytest.mark.slow  # a real process per signal; the fast subset keeps the synthesis job's SIGTERM
@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"),
                                                  (signal.SIGINT, 130, "Ctrl-C")])
def test_a_signal_marks_the_run_interrupted_in_one_line(tmp_path, sig, code, name):
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(4)))
    (tmp_path / "slow.py").write_text(SLOW)
    db = tmp_path / "sig.duckdb"
    returncode, lines, run_id = signal_after_start(
        ["run", str(tmp_path / "slow.py"), "--db", str(db), "--offline-latency", "0.3"], sig, 0.2)
    assert returncode == code, lines
    assert not any("Traceback" in line or "Task" in line for line in lines), lines
    assert lines[-1].startswith(f"run {run_id} interrupted by {name} after step ")
    assert lines[-1].endswith(f"resume with personahub run --resume {run_id} --db {db}")
    assert rows(db, "SELECT run_id, status, error FROM runs "
                    "JOIN jobs ON job_id = run_id") == [(run_id, "interrupted",
                                                                   f"interrupted by {name}")]


@pytest.mark.slow
def test_sigterm_marks_a_synthesis_job_interrupted(tmp_path):
    db = tmp_path / "synth.duckdb"
    # 40 items in batches of 4, each answered after 0.3 s (>= 3 s); the signal comes after 0.2 s
    returncode, lines, job_id = signal_after_start(
        ["synthesize", "instruction", "--n", "40", "--batch-size", "4", "--offline-latency", "0.3",
         "--db", str(db)], signal.SIGTERM, 0.2)
    assert returncode == 143, lines
    assert not any("Traceback" in line for line in lines), lines
    assert lines[-1].startswith(f"synthesis job {job_id} interrupted by SIGTERM (")
    assert rows(db, "SELECT status FROM synth_jobs JOIN jobs USING (job_id)") == [("interrupted",)]

"""Every job kind against a broken endpoint exits non-zero in one line, marked ``failed``, with
the resume command; weak answers are retried once, recorded, and counted.

The loopback server (``personahub serve``) runs with ``--error-rate 1.0`` (429/503, which the
seam retries with backoff until a call's retry budget is spent, which stops the job) or
``--malformed-rate`` (with ``stubborn``: repair prompts get broken answers too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub.models.fake_server.server import ServerOptions, running_server
from tests.cli_helpers import invoke
from tests.conftest import persona_texts


def one_line_error(result: Any) -> str:
    """The one ``error:`` line a stopped job printed last (exit 1; the banner, the job's start
    and its progress lines come before it)."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    return errors[0]


def _status(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _offline_synthesis(db: Path) -> str:
    done = invoke("synthesize", "instruction", "--n", "6", "--db", db)
    assert done.exit_code == 0, done.output
    return str(_status(db, "SELECT job_id FROM synth_jobs")[0][0])


def _offline_run(db: Path, scenario: Path) -> str:
    done = invoke("run", scenario, "--db", db, "--steps", "1")
    assert done.exit_code == 0, done.output
    return str(_status(db, "SELECT run_id FROM runs")[0][0])


# -- every call failing: each job kind against --error-rate 1.0 ------------------------------------

def one_step_scenario(folder: Path, people: Path) -> Path:
    """A one-step scenario over the personas in ``people``, written into ``folder``."""
    scenario = folder / "scenario.py"
    scenario.write_text(
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario\n"
        f"SCENARIO = Scenario(name='t', personas=PersonaSource(path={str(people)!r}), "
        "graph=GraphGrowth(hops=0, acquaintances=2), steps=1, seed=11)\n")
    return scenario


@pytest.fixture(scope="module")
def broken_endpoint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """Each job kind run once against ``serve --error-rate 1.0`` (429/503): its result and
    database. Each stops when its first call has spent the call's retry budget (nine attempts);
    the backoff between them is capped at 20 ms here (about 13 s each otherwise: the seam's
    own tests time it), and the module runs them once for the tests below."""
    from personahub.models import seam_retry

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seam_retry, "BACKOFF_CAP_S", 0.02)
        return _against_a_broken_endpoint(tmp_path_factory)


def _against_a_broken_endpoint(tmp_path_factory: pytest.TempPathFactory
                               ) -> dict[str, tuple[Any, Path]]:
    folder = tmp_path_factory.mktemp("broken")
    people = folder / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(6)))
    scenario = one_step_scenario(folder, people)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(f"A note number {i} about the harbour and its boats."
                                   for i in range(3)))
    done: dict[str, tuple[Any, Path]] = {}
    judged, interviewed = folder / "j.duckdb", folder / "i.duckdb"
    job = _offline_synthesis(judged)
    run_id = _offline_run(interviewed, scenario)
    expand = folder / "e.duckdb"
    assert invoke("personas", "import", people, "--db", expand).exit_code == 0
    with running_server(ServerOptions(error_rate=1.0)) as srv:
        url = srv.base_url
        commands: dict[str, tuple[list[Any], Path]] = {
            "synthesize": (["synthesize", "instruction", "--n", "6"], folder / "s.duckdb"),
            "from-text": (["personas", "from-text", corpus, "--relations", "read"],
                          folder / "t.duckdb"),
            "expand": (["personas", "expand", "--hops", "1", "--fanout", "1",
                        "--link-candidates", "0"], expand),
            "judge": (["judge", "--job", job], judged),
            "interview": (["interview", "--run", run_id, "--carve", "hop=0", "--limit", "3",
                           "What do you remember?"], interviewed),
            "run": (["run", scenario], folder / "r.duckdb"),
        }
        for kind, (args, db) in commands.items():
            done[kind] = (invoke(*args, "--db", db, "--llm", url), db)
    return done


JOB_STATUS = {"synthesize": "SELECT status FROM synth_jobs JOIN jobs USING (job_id)",
              "from-text": "SELECT status FROM text_jobs JOIN jobs USING (job_id)",
              "expand": "SELECT status FROM expansions JOIN jobs ON job_id = expansion_id",
              "run": "SELECT status FROM runs JOIN jobs ON job_id = run_id"}


@pytest.mark.parametrize("kind", ["synthesize", "from-text", "expand", "judge", "interview", "run"])
@pytest.mark.slow
def test_every_job_kind_against_a_failing_endpoint_exits_1_in_one_line(broken_endpoint, kind):
    result, db = broken_endpoint[kind]
    line = one_line_error(result)
    assert "kept failing" in line and ("HTTP 503" in line or "HTTP 429" in line)
    if kind in JOB_STATUS:
        assert _status(db, JOB_STATUS[kind]) == [("failed",)]


@pytest.mark.parametrize("kind", ["synthesize", "from-text", "run"])
def test_a_stopped_job_names_its_resume(broken_endpoint, kind):
    result, _ = broken_endpoint[kind]
    assert f"{'personas ' if kind == 'from-text' else ''}{kind} --resume" in one_line_error(result)


def test_a_kernel_job_stopped_by_its_endpoint_keeps_every_attempt(broken_endpoint):
    """The attempts of the batch that never committed come from the job's call spill."""
    _, db = broken_endpoint["synthesize"]
    rows = _status(db, "SELECT status, error FROM llm_calls")
    failed = [error for status, error in rows if status == "error"]
    assert len(failed) >= 9  # the call that spent its budget made nine attempts
    assert all(error.startswith("HTTP ") for error in failed)
    # the rest were in flight when the job stopped: sent, so billed, with no answer
    assert all(status in ("error", "sent") for status, _ in rows)
    assert not list(db.parent.glob("s.duckdb.*.calls.jsonl"))  # the spill is gone


@pytest.mark.slow
def test_a_server_that_never_answers_stops_the_job_resumably(server, tmp_path):
    """``serve --hang-rate 1.0``: each attempt is cut (a straggler, or at --timeout) and asked
    again until the call's budget (2 x --timeout + 30 s) is spent; the job stops in one line,
    ``failed``, resumable, with every attempt in ``llm_calls``."""
    srv = server(hang_rate=1.0, hang_s=3600.0)
    db = tmp_path / "h.duckdb"
    result = invoke("synthesize", "instruction", "--n", "4", "--db", db, "--timeout", "1",
                    "--llm", srv.base_url)
    line = one_line_error(result)
    assert "synthesize --resume synth-" in line and "kept failing" in line
    assert _status(db, JOB_STATUS["synthesize"]) == [("failed",)]
    rows = _status(db, "SELECT status, error FROM llm_calls")
    failed = [error for status, error in rows if status == "error"]
    assert len(failed) >= 2 and srv.stats.hangs >= len(failed)
    assert all(error.startswith("timeout") for error in failed)
    # an attempt still in flight when the job stopped is a sent row: billed, never answered
    assert all(status in ("error", "sent") for status, _ in rows)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["from-text", "expand", "run"])
def test_every_job_kind_stops_when_the_server_never_answers(server, tmp_path, kind):
    """``serve --hang-rate 1.0`` for the kinds the test above does not run (judge and interview:
    tests/pipelines/test_interview_resume.py): each stops in one line, non-zero, with its
    attempts recorded as timeouts, within the call budget the docs state."""
    people = tmp_path / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(4)))
    db = tmp_path / "h.duckdb"
    if kind == "from-text":
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("A note about the harbour and its boats.\n")
        args: list[Any] = ["personas", "from-text", corpus, "--relations", "read"]
    elif kind == "expand":
        assert invoke("personas", "import", people, "--db", db).exit_code == 0
        args = ["personas", "expand", "--hops", "1", "--fanout", "1", "--link-candidates", "0"]
    else:
        args = ["run", one_step_scenario(tmp_path, people)]
    srv = server(hang_rate=1.0, hang_s=3600.0)
    result = invoke(*args, "--db", db, "--timeout", "1", "--llm", srv.base_url)
    assert result.exit_code != 0
    one_line_error(result)
    rows = _status(db, "SELECT status, error FROM llm_calls")
    failed = [error for status, error in rows if status == "error"]
    assert failed and all(error.startswith("timeout") for error in failed)
    assert all(status in ("error", "sent") for status, _ in rows)  # sent: in flight at the stop


@pytest.mark.parametrize("value", ["0", "1.5", "-1", "abc"])
def test_max_failed_share_out_of_range_is_a_usage_error(value, scenario_file, tmp_path):
    db = tmp_path / "u.duckdb"
    for args in (("run", scenario_file()), ("synthesize", "instruction"),
                 ("personas", "expand"), ("judge", "--job", "x")):
        result = invoke(*args, "--db", db, "--max-failed-share", value)
        assert result.exit_code == 2, (args, result.output)
        assert "--max-failed-share" in result.stderr
    assert not db.exists()


def test_weak_answers_are_retried_once_and_the_job_goes_on(server, tmp_path):
    """At a 40% malformed rate each weak answer gets one fresh sample; what still fails is a
    counted, reasoned failure, and the job finishes: no stop at 40% (< 0.8)."""
    srv = server(malformed_rate=0.4, stubborn=True, fault_seed=7)
    db = tmp_path / "m.duckdb"
    # what still fails leaves the job short of 12 items: allowed here (honest counts)
    result = invoke("synthesize", "instruction", "--n", "12", "--db", db, "--llm", srv.base_url,
                    "--structured", "json_schema", "--allow-fewer")
    assert result.exit_code == 0, result.output
    calls = _status(db, "SELECT persona_id, attempt, status, error FROM llm_calls "
                        "WHERE purpose = 'synth:instruction' ORDER BY persona_id, attempt")
    by_persona: dict[str, list[tuple[int, str, str | None]]] = {}
    for persona, attempt, status, error in calls:
        by_persona.setdefault(persona, []).append((attempt, status, error))
    assert len(by_persona) == 12
    assert all(len(a) <= 2 for a in by_persona.values())  # one fresh sample at most
    retried = [a for a in by_persona.values() if len(a) == 2]
    assert retried and all(a[0][1] == "invalid" and a[0][2] for a in retried)
    assert srv.stats.malformed > 0
    assert srv.stats.malformed <= sum(1 for c in calls if c[2] == "invalid")
    kept = sum(1 for a in by_persona.values() if a[-1][1] == "ok")
    assert f"instruction: {kept} of 12 calls kept" in result.stdout
    status = _status(db, "SELECT status FROM synth_jobs JOIN jobs USING (job_id)")[0][0]
    assert status == ("finished" if kept == 12 else "partial")


def test_quality_failures_past_the_share_stop_the_job(server, tmp_path):
    """Every answer malformed: each is retried once, then the batch passes the share and the
    job stops, resumable, with the most common error named."""
    srv = server(malformed_rate=1.0, stubborn=True)
    db = tmp_path / "q.duckdb"
    line = one_line_error(invoke("synthesize", "instruction", "--n", "6", "--db", db, "--llm",
                                 srv.base_url, "--structured", "json_schema", "--batch-size", "6"))
    assert "6 of 6 actions failed in batch 1, over --max-failed-share 0.8" in line
    assert "resume with personahub synthesize --resume" in line
    assert _status(db, "SELECT count(*) FROM llm_calls") == [(12,)]  # two attempts each
    assert _status(db, "SELECT status FROM synth_jobs JOIN jobs USING (job_id)") == [("failed",)]


@pytest.mark.slow
def test_a_run_stops_for_quality_past_the_share_and_resume_keeps_the_share(server, scenario_file,
                                                                           tmp_path):
    """Malformed answers only: the default share stops the run after step 1 (every action
    failed, each after one fresh sample); ``--max-failed-share 1`` never stops for quality, is
    stored in the run's config, and a run whose every action failed still exits 1."""
    srv = server(malformed_rate=1.0, stubborn=True)
    scenario = scenario_file(n_personas=6, graph="GraphGrowth(hops=0, acquaintances=2)", steps=2)
    db = tmp_path / "q.duckdb"
    line = one_line_error(invoke("run", scenario, "--db", db, "--llm", srv.base_url,
                                 "--structured", "json_schema"))
    assert "in step 1, over --max-failed-share 0.8" in line and "run --resume" in line
    assert _status(db, "SELECT steps_done, status FROM runs JOIN jobs ON job_id = run_id") == [(1, "failed")]
    attempts = _status(db, "SELECT max(attempt) FROM llm_calls")[0][0]
    assert attempts == 2  # one fresh sample (a repair prompt) per weak answer, no more
    lenient = tmp_path / "l.duckdb"
    line = one_line_error(invoke("run", scenario, "--db", lenient, "--llm", srv.base_url,
                                 "--structured", "json_schema", "--max-failed-share", "1"))
    assert "every one of its" in line and "run --resume" in line
    assert _status(lenient, "SELECT steps_done FROM runs") == [(2,)]  # no stop for quality
    config = _status(lenient, "SELECT config FROM runs JOIN jobs ON job_id = run_id")[0][0]
    assert json.loads(config)["max_failed_share"] == 1.0  # what --resume reads


@pytest.mark.slow
def test_an_expansion_killed_mid_call_keeps_its_attempts(server, tmp_path):
    """``kill -9`` of a standalone expansion whose calls time out: the attempts made before the
    kill are in its call spill, and the next run of the expansion (``--resume``, against a
    healthy server) writes them to ``llm_calls`` before it asks again."""
    from personahub.core import call_spill
    from tests.cli_helpers import kill_when

    people = tmp_path / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(2)))
    db = tmp_path / "h.duckdb"
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    hanging = server(hang_rate=1.0, hang_s=3600.0)
    args = ["personas", "expand", "--link-candidates", "0", "--db", str(db), "--timeout", "1"]

    def spilled() -> list[Any]:
        return [s for path in db.parent.glob(f"{db.name}.*.calls*") if path.is_file()
                for s in call_spill.read(path)]

    def finals() -> list[Any]:  # an attempt's final line (each also has a ``sent`` line first)
        return [s for s in spilled() if s.record.status != "sent"]

    kill_when([*args, "--hops", "1", "--fanout", "1", "--llm", hanging.base_url], lambda: len(finals()) >= 2,
              "no attempt reached the expansion's call spill")
    before = finals()
    assert before and all(s.record.error.startswith("timeout") for s in before)
    assert {s.record.call_id for s in before} <= {s.record.call_id for s in spilled()
                                                  if s.record.status == "sent"}
    expansion = _status(db, "SELECT job_id FROM jobs WHERE kind = 'expansion'")[0][0]
    assert _status(db, "SELECT count(*) FROM llm_calls") == [(0,)]  # killed before any commit
    healthy = server()
    result = invoke(*args, "--llm", healthy.base_url, "--resume", expansion)
    assert result.exit_code == 0, result.output
    ids = {s.record.call_id for s in before}
    kept = _status(db, "SELECT call_id, status FROM llm_calls WHERE purpose = 'expand'")
    assert ids <= {call_id for call_id, _ in kept}
    assert all(status == "error" for call_id, status in kept if call_id in ids)
    assert not spilled()  # committed, and the spill removed

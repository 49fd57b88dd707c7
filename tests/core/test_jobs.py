"""The job kernel (``core.kernel``, ``core.commit``) under every model-calling command: a job started with a
non-default seed, interrupted after its first batch and resumed without ``--seed`` ends with the
rows of the uninterrupted job; ``--cache record|replay`` and ``--rps`` work on each command; every
call is tagged with its job and model name."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pytest

from personahub.core import commit as jobs
from personahub.core.store import connect
from personahub.models import seam_limits
from tests.cli_helpers import invoke

SEED_PERSONAS = Path(__file__).resolve().parents[2] / "personas" / "data" / "seed_personas.jsonl"
SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="kernel", personas=PersonaSource(limit=6), graph=GraphGrowth(hops=0,
                    acquaintances=2), steps=3, tasks=("npc_dialogue", "instruction"), seed=1)
"""


def rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def hub(db: Path, n: int = 6) -> None:
    """A hub of the first ``n`` shipped seed personas."""
    people = db.parent / f"people{n}.jsonl"
    people.write_text("".join(SEED_PERSONAS.read_text().splitlines(keepends=True)[:n]))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0


@dataclass(frozen=True)
class Command:
    """How to start one command's job, resume it, and read back what it made."""

    name: str
    prepare: Callable[[Path], None]
    start: Callable[[Path], list[object]]  # arguments without --seed
    resume: Callable[[Path], list[object]]  # arguments of the resume (never --seed)
    made: str  # SQL: the job's rows, ids that name the job taken out
    commits_before_batches: int = 0  # kernel commits before the first batch (a job's own row)


def _corpus(db: Path) -> Path:
    path = db.parent / "corpus.txt"
    if not path.exists():
        path.write_text("\n\n".join(
            f"Notes {i}: how to repair a bicycle chain, oil it and check wear on day {i}."
            for i in range(6)) + "\n")
    return path


def _scenario(db: Path) -> None:
    hub(db, 6)
    (db.parent / "kernel.py").write_text(SCENARIO)


def _synth_job(db: Path) -> list[object]:
    return ["synthesize", "--resume", rows(db, "SELECT job_id FROM synth_jobs")[0][0], "--db", db]


def _run_resume(db: Path) -> list[object]:
    return ["run", "--resume", rows(db, "SELECT run_id FROM runs")[0][0], "--db", db]


COMMANDS = [
    Command("synthesize", lambda db: hub(db, 8),
            lambda db: ["synthesize", "instruction", "--n", 8, "--batch-size", 3, "--db", db],
            _synth_job,
            "SELECT persona_id, content, text, is_duplicate FROM synth_items ORDER BY ALL",
            commits_before_batches=1),
    Command("personas expand", lambda db: hub(db, 4),
            lambda db: ["personas", "expand", "--hops", 2, "--fanout", 2, "--batch-size", 2,
                        "--db", db],
            lambda db: ["personas", "expand", "--hops", 2, "--fanout", 2, "--batch-size", 2,
                        "--db", db],
            "SELECT text, source = 'expand', hop FROM personas ORDER BY ALL"),
    Command("personas from-text", lambda db: None,
            lambda db: ["personas", "from-text", _corpus(db), "--relations", "read,like",
                        "--batch-size", 2, "--db", db],
            lambda db: ["personas", "from-text", _corpus(db), "--relations", "read,like",
                        "--batch-size", 2, "--db", db],
            "SELECT text, source FROM personas ORDER BY ALL"),
    Command("run", _scenario,
            lambda db: ["run", db.parent / "kernel.py", "--db", db],
            _run_resume,
            "SELECT step, agent_id, persona_id, task, content, text FROM emissions ORDER BY ALL"),
]
IDS = [c.name for c in COMMANDS]
# The same jobs resumed explicitly by id: --resume EXPANSION_ID, --resume CORPUS (no corpus file,
# relations or reading options given again: the job stored them).
RESUMED_BY_ID = [
    replace(COMMANDS[1], name="personas expand --resume", resume=lambda db: [
        "personas", "expand", "--resume", rows(db, "SELECT expansion_id FROM expansions")[0][0],
        "--batch-size", 2, "--db", db]),
    replace(COMMANDS[2], name="personas from-text --resume", resume=lambda db: [
        "personas", "from-text", "--resume", "corpus.txt", "--batch-size", 2, "--db", db]),
    # a job spec: personahub resume ID goes through the kernel, with the job's batch size
    replace(COMMANDS[2], name="resume ID (from-text)", resume=lambda db: [
        "resume", rows(db, "SELECT job_id FROM text_jobs")[0][0], "--db", db]),
]


def fast(commands: list[Command], *keep: str) -> list[object]:
    """``commands`` as parameters; those not named in ``keep`` run in the full suite only
    (marked slow), so the fast subset keeps one or two per test."""
    return [pytest.param(c, id=c.name, marks=() if c.name in keep else pytest.mark.slow)
            for c in commands]


def interrupt_at_commit(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Ctrl-C as the kernel begins its ``number``-th batch commit (earlier ones are written)."""
    seen = []
    real = jobs.cache_rows_of

    def counting(results):
        seen.append(1)
        if len(seen) == number:
            raise KeyboardInterrupt
        return real(results)

    monkeypatch.setattr(jobs, "cache_rows_of", counting)


def finished(db: Path, command: Command, *extra: object) -> None:
    command.prepare(db)
    result = invoke(*command.start(db), *extra)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", fast(COMMANDS + RESUMED_BY_ID, "run", "personas from-text",
                                            "resume ID (from-text)"))
@pytest.mark.slow
def test_resume_without_seed_equals_the_uninterrupted_job(tmp_path, monkeypatch, command):
    whole = tmp_path / "whole" / "hub.duckdb"
    whole.parent.mkdir()
    finished(whole, command, "--seed", 5)
    default = tmp_path / "default" / "hub.duckdb"
    default.parent.mkdir()
    finished(default, command)
    assert rows(default, command.made) != rows(whole, command.made)  # the seed matters here

    cut = tmp_path / "cut" / "hub.duckdb"
    cut.parent.mkdir()
    command.prepare(cut)
    with monkeypatch.context() as patch:
        interrupt_at_commit(patch, command.commits_before_batches + 2)
        stopped = invoke(*command.start(cut), "--seed", 5)
    assert stopped.exit_code == 130, stopped.output
    partial = rows(cut, command.made)
    assert partial != rows(whole, command.made)  # stopped after the first batch, not at the end
    resumed = invoke(*command.resume(cut))
    assert resumed.exit_code == 0, resumed.output
    assert rows(cut, command.made) == rows(whole, command.made)


def job_calls(db: Path) -> list[tuple]:
    return rows(db, "SELECT job_kind, job_id, model_name, cached, run_id FROM llm_calls")


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
@pytest.mark.slow
def test_calls_name_their_job_and_model(tmp_path, command):
    db = tmp_path / "hub.duckdb"
    finished(db, command)
    calls = job_calls(db)
    assert calls
    kinds = {"synthesize": "synthesis", "personas expand": "expansion",
             "personas from-text": "text_to_persona", "run": "run"}
    assert {(kind, model) for kind, _, model, _, _ in calls} == {(kinds[command.name], "offline")}
    ids = {job_id for _, job_id, _, _, _ in calls}
    own = {"synthesize": "SELECT job_id FROM synth_jobs", "personas expand":
           "SELECT expansion_id FROM expansions", "personas from-text": "SELECT job_id FROM text_jobs",
           "run": "SELECT run_id FROM runs"}[command.name]
    assert ids == {r[0] for r in rows(db, own)}


@pytest.mark.slow
@pytest.mark.parametrize("command", fast(COMMANDS, "run"))
def test_cache_record_then_replay_gives_the_same_rows(tmp_path, command):
    recorded = tmp_path / "rec" / "hub.duckdb"
    recorded.parent.mkdir()
    finished(recorded, command, "--cache", "record", "--seed", 3)
    assert rows(recorded, "SELECT count(*) FROM llm_cache")[0][0] > 0

    replayed = tmp_path / "rep" / "hub.duckdb"
    replayed.parent.mkdir()
    command.prepare(replayed)
    if command.name == "run":  # the scenario file is read from the job's folder
        shutil.copy(recorded.parent / "kernel.py", replayed.parent / "kernel.py")
    con = connect(replayed)  # with the schema, as a command would open it
    con.execute(f"ATTACH '{recorded}' AS rec (READ_ONLY)")
    con.execute("INSERT INTO llm_cache SELECT * FROM rec.llm_cache")
    con.close()
    result = invoke(*command.start(replayed), "--cache", "replay", "--seed", 3)
    assert result.exit_code == 0, result.output
    assert rows(replayed, command.made) == rows(recorded, command.made)
    assert {cached for _, _, _, cached, _ in job_calls(replayed)} == {True}  # no model was asked


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_replay_without_recorded_answers_is_one_error(tmp_path, command):
    db = tmp_path / "hub.duckdb"
    command.prepare(db)
    result = invoke(*command.start(db), "--cache", "replay")
    assert result.exit_code == 1
    assert "--cache replay" in result.stderr and "record them first" in result.stderr


@pytest.mark.parametrize("command", fast(COMMANDS, "run", "personas dedup", "synthesize"))
@pytest.mark.slow
def test_rps_reaches_the_client_rate_limiter(tmp_path, monkeypatch, command):
    limits: list[float] = []
    acquired: list[float] = []

    class Recording(seam_limits.RateLimiter):
        def __init__(self, rate: float, burst: float = 1.0) -> None:
            super().__init__(rate, burst)
            limits.append(rate)

        async def acquire(self) -> None:
            acquired.append(1)
            await super().acquire()

    monkeypatch.setattr(seam_limits, "RateLimiter", Recording)
    db = tmp_path / "hub.duckdb"
    finished(db, command, "--rps", 500)
    assert limits and set(limits) == {500.0}
    assert len(acquired) == rows(db, "SELECT count(*) FROM llm_calls WHERE NOT cached")[0][0]


def test_text_job_stores_its_config(tmp_path):
    db = tmp_path / "hub.duckdb"
    finished(db, COMMANDS[2], "--seed", 9, "--temperature", 0.5)
    (config,) = rows(db, "SELECT config FROM text_jobs JOIN jobs USING (job_id)")[0]
    stored = json.loads(config)
    assert (stored["seed"], stored["temperature"], stored["relations"]) == (9, 0.5, ["read", "like"])
    assert rows(db, "SELECT status FROM text_jobs JOIN jobs USING (job_id)") == [("finished",)]


def interrupted(db: Path, command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    """``command``'s job in ``db``, stopped by Ctrl-C after its first batch."""
    command.prepare(db)
    with monkeypatch.context() as patch:
        interrupt_at_commit(patch, command.commits_before_batches + 2)
        assert invoke(*command.start(db), "--seed", 5).exit_code == 130


@pytest.mark.slow
def test_expand_resume_by_id_refuses_what_the_expansion_fixes(tmp_path, monkeypatch):
    db = tmp_path / "hub.duckdb"
    interrupted(db, COMMANDS[1], monkeypatch)
    (expansion,) = rows(db, "SELECT expansion_id FROM expansions")[0]
    changed = invoke("personas", "expand", "--resume", expansion, "--hops", 3, "--db", db)
    assert changed.exit_code == 2 and "leave out --hops" in changed.output  # a usage error
    unknown = invoke("personas", "expand", "--resume", "exp-nope", "--db", db)
    assert unknown.exit_code == 1 and "--resume exp-nope: no such expansion" in unknown.output
    assert invoke("personas", "expand", "--resume", expansion, "--db", db).exit_code == 0
    again = invoke("personas", "expand", "--resume", expansion, "--db", db)
    assert again.exit_code == 1 and "the expansion is finished" in again.output


def test_from_text_resume_by_corpus_name(tmp_path, monkeypatch):
    db = tmp_path / "hub.duckdb"
    interrupted(db, COMMANDS[2], monkeypatch)
    changed = invoke("personas", "from-text", "--resume", "corpus.txt", "--relations", "read",
                     "--db", db)
    assert changed.exit_code == 2 and "leave out --relations" in changed.output  # a usage error
    unknown = invoke("personas", "from-text", "--resume", "other", "--db", db)
    assert unknown.exit_code == 1 and "no text-to-persona job over corpus 'other'" in unknown.output
    neither = invoke("personas", "from-text", "--db", db)
    assert neither.exit_code == 2 and "Missing argument" in neither.output
    stored = json.loads(rows(db, "SELECT config FROM text_jobs JOIN jobs USING (job_id)")[0][0])
    assert stored["path"] == str(_corpus(db).resolve()) and stored["split"] == "paragraph"
    assert rows(db, "SELECT status FROM text_jobs JOIN jobs USING (job_id)") == [("interrupted",)]
    assert invoke("personas", "from-text", "--resume", "corpus.txt", "--db", db).exit_code == 0
    assert rows(db, "SELECT status FROM text_jobs JOIN jobs USING (job_id)") == [("finished",)]


@pytest.mark.slow
def test_from_text_stopped_on_the_command_line_resumes_through_the_api(tmp_path, monkeypatch):
    """The API goes on with the corpus's job (the kernel's resume) to the rows of the
    uninterrupted job; an option the job fixed otherwise is refused by name."""
    import personahub
    from personahub.core.errors import PersonahubError

    whole = tmp_path / "whole" / "hub.duckdb"
    whole.parent.mkdir()
    finished(whole, COMMANDS[2], "--seed", 5)
    cut = tmp_path / "cut" / "hub.duckdb"
    cut.parent.mkdir()
    interrupted(cut, COMMANDS[2], monkeypatch)
    with pytest.raises(PersonahubError, match="the job's per_text is 1, not 2"):
        personahub.text_to_persona(_corpus(cut), db=cut, per_text=2)
    job = personahub.text_to_persona(_corpus(cut), db=cut, batch_size=2)
    assert job.job_id == rows(cut, "SELECT job_id FROM text_jobs")[0][0]
    assert rows(cut, COMMANDS[2].made) == rows(whole, COMMANDS[2].made)
    assert rows(cut, "SELECT status FROM jobs") == [("finished",)]


@pytest.mark.slow
def test_resume_by_id_asks_an_expansion_with_its_recorded_model(tmp_path, monkeypatch):
    """Expansion is not a spec yet: ``personahub resume ID`` hands its command the model the
    expansion recorded unless ``--llm`` is given."""
    db = tmp_path / "hub.duckdb"
    interrupted(db, COMMANDS[1], monkeypatch)
    (expansion, config) = rows(db, "SELECT job_id, config FROM jobs")[0]
    assert json.loads(config)["llm"] == "offline"  # a new expansion records its model
    con = duckdb.connect(str(db))
    con.execute("UPDATE jobs SET config = json_merge_patch(config, ?)",
                [json.dumps({"llm": "http://127.0.0.1:9/v1?model=recorded"})])
    con.close()
    recorded = invoke("resume", expansion, "--db", db)
    assert recorded.exit_code == 1 and "127.0.0.1:9" in recorded.output, recorded.output
    given = invoke("resume", expansion, "--db", db, "--llm", "offline")
    assert given.exit_code == 0, given.output
    assert rows(db, "SELECT status FROM jobs") == [("finished",)]

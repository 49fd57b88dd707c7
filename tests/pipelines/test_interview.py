"""Interviews: answers from an agent's stored state at a step, the run unchanged."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from personahub.api import run_simulation
from personahub.core.contracts import CallRecord, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.interviews import run_interview
from personahub.pipelines.interview import (
    InterviewConfig,
    InterviewRequest,
    InterviewResult,
    ask,
    prepare,
)
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import invoke, one_line_error, usage_error
from tests.conftest import persona_texts
from tests.fakes import FakeClient

NEW_PERSONA = "A retired lighthouse keeper who collects sea glass on the north beach."
NOTE = "The ferry captain promised free rides for the flood volunteers."
EVENT = "The council postpones the flood wall vote."

SCENARIO = f"""
from personahub.sim.scenario import (Event, GraphGrowth, Intervention, Memory, PersonaSource,
                                     Scenario, Survey)

SCENARIO = Scenario(
    name="interviewed",
    personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=4),
    steps=3,
    tasks=("npc_dialogue", "instruction"),
    world="A small river town with a ferry and a market.",
    memory=Memory(observations=3, own=2, summary_terms=6),
    inbox_size=2,
    events=(Event(step=2, text={EVENT!r}),),
    interventions=(Intervention(step=2, action="set_persona", target=5, text={NEW_PERSONA!r}),
                   Intervention(step=1, action="add_memory", target=3, text={NOTE!r})),
    surveys=(Survey(id="mood", steps=(3,), question="How is the town doing?", answer="choice",
                    options=("well", "badly")),),
    seed=4,
)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 3-step run of 10 agents (set_persona on agent 5 at step 2, a memory for
    agent 3 at step 1, an event at step 2), made once for the module."""
    folder = tmp_path_factory.mktemp("interview")
    (folder / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(10)))
    (folder / "scenario.py").write_text(SCENARIO)
    db = folder / "run.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(folder / "scenario.py"), db=db))
    return db, summary.run_id


@pytest.fixture
def db_copy(run: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    """A private copy of the module's run (tests that write get their own file)."""
    db, run_id = run
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(db.read_bytes())
    return copy, run_id


def interview(db: Path, request: InterviewRequest, client: FakeClient) -> InterviewResult:
    """One interview through the kernel, as ``personahub.interview`` runs it, with ``client``."""
    fields = {k: getattr(request, k) for k in ("run_id", "question", "agent", "where", "carve",
                                              "step", "limit")}
    return run_interview(InterviewConfig(**fields, db=str(db)), db, client=client)


def persona_of(db: Path, run_id: str, agent_id: int) -> tuple[str, str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT a.persona_id, p.text FROM run_agents a JOIN personas p USING "
                           "(persona_id) WHERE run_id = ? AND agent_id = ?",
                           [run_id, agent_id]).fetchall()[0]
    finally:
        con.close()


def prompt_text(db: Path, run_id: str, agent: str, step: int | None) -> str:
    prepared = prepare(db, InterviewRequest(run_id=run_id, question="What happened lately?",
                                            agent=agent, step=step))
    return "\n".join(str(m.content) for m in prepared.prompts[0])


# -- the agent's state at the step -----------------------------------------------------------------

def test_persona_text_is_the_one_in_force_at_the_step(run):
    db, run_id = run
    persona_id, hub_text = persona_of(db, run_id, 5)
    assert NEW_PERSONA not in prompt_text(db, run_id, persona_id, 1)
    assert hub_text in prompt_text(db, run_id, persona_id, 1)
    for step in (2, 3, None):  # set_persona at step 2 holds after it; None is the last step
        text = prompt_text(db, run_id, "5", step)  # an agent id names the same agent
        assert NEW_PERSONA in text and hub_text not in text


def test_memory_is_rebuilt_from_the_latest_state_at_or_before_the_step(run):
    db, run_id = run
    assert NOTE not in prompt_text(db, run_id, "3", 0)  # before the first step: the persona only
    assert NOTE in prompt_text(db, run_id, "3", 1)
    assert EVENT not in prompt_text(db, run_id, "1", 1)
    assert EVENT in prompt_text(db, run_id, "1", 2) and EVENT in prompt_text(db, run_id, "1", 3)


def test_agents_without_a_state_row_answer_from_their_persona(run):
    db, run_id = run
    _, hub_text = persona_of(db, run_id, 7)
    text = prompt_text(db, run_id, "7", 0)
    assert hub_text in text and "## Memory" not in text


# -- the run stays as it was ---------------------------------------------------------------------

def dump(db: Path) -> dict[str, list[tuple]]:
    """Every table of the database, rows sorted (cast to text: JSON and timestamps compare)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
        return {t: sorted(tuple(str(v) for v in row)
                          for row in con.execute(f'SELECT * FROM "{t}"').fetchall())
                for t in tables}
    finally:
        con.close()


def test_interviews_leave_every_run_table_unchanged(db_copy):
    """Only ``interviews`` rows and ``llm_calls`` rows with purpose ``interview`` are added."""
    db, run_id = db_copy
    before = dump(db)
    client = FakeClient(answer=lambda call: StructuredResult(None, [CallRecord(
        purpose=call.purpose or "", model="fake", attempt=1, status="invalid", latency_ms=1.0,
        error="planted failure", persona_id=call.persona_id)]) if call.number == 2 else None)
    one = interview(db, InterviewRequest(run_id=run_id, question="How are you?", agent="2"), client)
    group = interview(db, InterviewRequest(run_id=run_id, question="And the ferry?",
                                           carve=("hop=0",), step=1), client)
    after = dump(db)
    added = {t for t in after if after[t] != before.get(t)}
    assert added == {"interviews", "llm_calls", "jobs"}  # each interview is a job of the run
    assert {r for r in after["jobs"] if r not in before["jobs"]} == {
        r for r in after["jobs"] if r[1] == "interview" and r[-1] == run_id}
    assert set(before["llm_calls"]) <= set(after["llm_calls"])
    con = duckdb.connect(str(db), read_only=True)
    try:
        new_calls = con.execute("SELECT purpose, run_id, job_kind, step, count(*) FROM llm_calls "
                                "WHERE job_kind = 'interview' GROUP BY ALL").fetchall()
        rows = con.execute("SELECT batch_id, step, status FROM interviews ORDER BY agent_id").fetchall()
    finally:
        con.close()
    asked = len(one.rows) + len(group.rows)
    assert len(after["llm_calls"]) - len(before["llm_calls"]) == asked == 11
    assert new_calls == [("interview", run_id, "interview", None, asked)]
    assert len(rows) == asked and {s for _, s, _ in rows} == {one.step, 1} == {3, 1}
    assert sorted(status for _, _, status in rows) == ["failed", *["ok"] * (asked - 1)]


def test_a_failed_answer_is_stored_failed_and_accounted(db_copy):
    db, run_id = db_copy
    failing = FakeClient(answer=lambda call: StructuredResult(None, [CallRecord(
        purpose=call.purpose or "", model="fake", attempt=1, status="invalid", latency_ms=1.0,
        error="planted failure", persona_id=call.persona_id)]))
    # its one answer failed: the interview fails in one line, the failed answer kept
    with pytest.raises(PersonahubError, match="every one of its 1 answers failed.*planted failure"):
        interview(db, InterviewRequest(run_id=run_id, question="Well?", agent="4"), failing)
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT status, answer, error FROM interviews").fetchall() == [
            ("failed", None, "planted failure")]
        assert con.execute("SELECT status FROM jobs WHERE kind = 'interview'").fetchall() == [
            ("failed",)]
        assert con.execute("SELECT status, error FROM llm_calls WHERE purpose = 'interview'"
                           ).fetchall() == [("invalid", "planted failure")]
    finally:
        con.close()


# -- offline, deterministic, and said so -----------------------------------------------------------

@pytest.mark.slow
def test_offline_answers_are_deterministic_and_labelled(db_copy):
    db, run_id = db_copy
    args = ("interview", "--db", db, "--run", run_id, "--agent", "3", "--format", "json",
            "What do you remember?")
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["answers"] == b["answers"] and a["answers"][0]["answer"]
    assert a["offline"] is True and "offline engine" in a["engine"] and a["model"] == "offline"
    assert a["step"] == 3
    table = invoke("interview", "--db", db, "--run", run_id, "--agent", "3", "What do you remember?")
    assert table.exit_code == 0
    assert "offline engine" in table.stdout and a["answers"][0]["answer"][:20] in table.stdout
    assert "no language model is used" in table.stderr


def test_the_table_says_who_is_speaking(db_copy):
    """Each answer shows the start of its agent's persona text at the step (agent
    5's ``set_persona`` text, not its hub persona), the persona id kept short beside it."""
    db, run_id = db_copy
    table = invoke("interview", "--db", db, "--run", run_id, "--agent", "5", "How are you?")
    assert table.exit_code == 0, table.output
    cells = [line.split("│") for line in table.stdout.splitlines() if line.startswith("│")]
    who = " ".join(" ".join(c[2] for c in cells).split())  # the "who" column, its lines joined
    assert who.startswith("A retired lighthouse keeper who collects sea glass"), table.stdout
    assert "persona p" in who and NEW_PERSONA not in who  # shortened, with a compact id


def test_a_group_is_asked_concurrently_and_in_agent_order(db_copy):
    db, run_id = db_copy
    client = FakeClient(delay=lambda call: 0.01 * (call.number % 3))
    request = InterviewRequest(run_id=run_id, question="Who do you trust?", where="text ILIKE '%a%'",
                               carve=("hop=0",), limit=6)
    result = interview(db, request, client)
    assert [r["agent_id"] for r in result.rows] == sorted(r["agent_id"] for r in result.rows)
    assert len(result.rows) == 6 and client.max_in_flight > 1
    assert client.by_purpose == {"interview": 6}


def test_group_json_from_the_cli(db_copy):
    db, run_id = db_copy
    done = invoke("interview", "--db", db, "--run", run_id, "--carve", "hop=0", "--limit", "3",
                  "--step", "2", "--format", "json", "What changed?")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert [a["agent_id"] for a in data["answers"]] == [1, 2, 3] and data["step"] == 2


# -- bad input: one line, non-zero exit, nothing written ------------------------------------------

def sha(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


@pytest.mark.parametrize(("args", "says", "code"), [
    (("--run", "no-such-run", "--agent", "1", "q"), "--run no-such-run: no such run", 1),
    (("--run", "{run}", "--agent", "p000unknown", "q"), "--agent p000unknown: not an agent of run", 1),
    (("--run", "{run}", "--agent", "99", "q"), "agent id 1..10", 1),
    (("--run", "{run}", "--agent", "1", "--step", "4", "q"), "--step 4: run {run} has steps 0..3", 1),
    (("--run", "{run}", "--carve", "hop>5", "q"), "no agent of run {run} matches", 1),
    # the command line itself is wrong: a usage error, exit 2 (docs/cli.md)
    (("--run", "{run}", "--agent", "1", "   "), "the question is empty", 2),
    (("--run", "{run}", "--carve", "hop", "q"), "expected KEY OP VALUE", 2),
    (("--run", "{run}", "q"), "give --agent", 2),
    (("--run", "{run}", "--agent", "1", "--format", "xml", "q"), "--format 'xml'", 2),
])
def test_bad_input_is_one_line_and_writes_nothing(db_copy, args, says, code):
    db, run_id = db_copy
    before = sha(db)
    result = invoke("interview", "--db", db, *(a.format(run=run_id) for a in args))
    line = usage_error(result) if code == 2 else one_line_error(result)
    assert says.format(run=run_id) in line
    assert sha(db) == before and not Path(f"{db}.wal").exists()


def test_a_missing_database_is_not_created(tmp_path):
    db = tmp_path / "none.duckdb"
    result = invoke("interview", "--db", db, "--run", "r", "--agent", "1", "q")
    assert "no such database" in one_line_error(result) and not db.exists()


def test_request_checks_need_no_database():
    with pytest.raises(PersonahubError, match="not both"):
        InterviewRequest(run_id="r", question="q", agent="1", carve=("hop=0",))
    with pytest.raises(PersonahubError, match="--step -1"):
        InterviewRequest(run_id="r", question="q", agent="1", step=-1)


def test_prompts_ask_nothing_of_the_model_until_asked(run):
    db, run_id = run
    prepared = prepare(db, InterviewRequest(run_id=run_id, question="Q?", carve=("hop=0",)))
    client = FakeClient()
    assert client.calls == 0 and len(prepared.prompts) == 10
    results = asyncio.run(ask(client, prepared))
    assert client.calls == 10 and all(r.value is not None for r in results)


def test_an_interview_recalls_with_the_run_s_retrieval_memory(tmp_path: Path) -> None:
    """A run whose memory retrieves and reflects: the interview rebuilds each agent's memory with
    the run's settings, so its recall is what the agent's own next prompt would recall."""
    import duckdb as ddb

    from personahub.pipelines.interview import agents_at, run_facts

    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(6)))
    source = SCENARIO.replace("memory=Memory(observations=3, own=2, summary_terms=6)",
                              "memory=Memory(observations=2, own=1, summary_terms=6, "
                              "retrieve=True, store=8, top_k=3, reflect_every=2)")
    assert source != SCENARIO
    (tmp_path / "scenario.py").write_text(source)
    db = tmp_path / "run.duckdb"
    run_id = run_simulation(RunConfig(scenario=load_scenario(tmp_path / "scenario.py"), db=db)).run_id
    con = ddb.connect(str(db), read_only=True)
    try:
        facts = run_facts(con, run_id)
        states = dict(con.execute("SELECT agent_id, arg_max(state, step) FROM agent_states "
                                  "WHERE run_id = ? GROUP BY agent_id", [run_id]).fetchall())
        agents = con.execute("SELECT agent_id, persona_id FROM run_agents WHERE run_id = ? "
                             "ORDER BY agent_id", [run_id]).fetchall()
        rebuilt = agents_at(con, facts, agents, facts.steps_done)
    finally:
        con.close()
    assert facts.memory.retrieve and facts.memory.reflects
    reflected = 0
    for agent in rebuilt:
        assert agent.memory.retrieve and agent.memory.top_k == 3 and agent.memory.reflect
        if agent.agent_id in states:  # what the run stored comes back unchanged
            assert agent.memory.to_state() == json.loads(states[agent.agent_id])["memory"]
            reflected += bool(agent.memory.reflection)
    assert reflected  # some agents reflected, and the interview sees their reflections


def test_an_interview_recorded_then_replayed_answers_from_the_cache(db_copy):
    db, run_id = db_copy
    args = ("interview", "--db", db, "--run", run_id, "--carve", "hop=0", "--limit", "3",
            "--format", "json")
    recorded = invoke(*args, "--cache", "record", "What changed?")
    replayed = invoke(*args, "--cache", "replay", "What changed?")
    assert recorded.exit_code == 0 and replayed.exit_code == 0, recorded.output + replayed.output
    first, again = json.loads(recorded.stdout), json.loads(replayed.stdout)
    assert first["batch_id"] != again["batch_id"]
    assert [a["answer"] for a in again["answers"]] == [a["answer"] for a in first["answers"]]
    con = duckdb.connect(str(db), read_only=True)
    try:
        cached = con.execute("SELECT job_id, bool_and(cached), count(*) FROM llm_calls "
                             "WHERE job_id IN (?, ?) GROUP BY 1 ORDER BY 2",
                             [first["batch_id"], again["batch_id"]]).fetchall()
    finally:
        con.close()
    assert cached == [(first["batch_id"], False, 3), (again["batch_id"], True, 3)]
    missed = invoke(*args, "-q", "--cache", "replay", "A question never asked?")
    assert "--cache replay: no recorded answer for the 'interview' call" in one_line_error(missed)

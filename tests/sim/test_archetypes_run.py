"""A run with archetypes: surveys and unaddressed actions asked once per archetype,
each member's answer drawn from its archetype's shares and stored per agent; seeded; resumable."""

import json
from pathlib import Path

import duckdb
import pytest

from personahub.api import resume_run, run_simulation
from personahub.core.errors import PersonahubError
from personahub.models.client import StructuredResult
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import ScenarioError, archetype_sample_size, load_scenario
from personahub.tasks.survey import normalised_shares, share_schema
from tests.conftest import persona_texts
from tests.fakes import Call, FakeClient, unreachable_from_step

SEED = 5
N = 24
K = 4

SCENARIO = f"""
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey

SCENARIO = Scenario(
    name="archetyped",
    personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=4),
    steps=3,
    tasks=("instruction", "tool_spec"),
    archetypes={{k}},
    surveys=(Survey(id="mood", steps=(1, 3), question="How is the town doing?", answer="choice",
                    options=("well", "badly", "unsure"), remember=True),
             Survey(id="trust", steps=(2,), question="How much do you trust the council?",
                    answer="scale", low=1, high=5)),
    seed={SEED},
)
"""

TABLES = {
    "emissions": "step, agent_id, persona_id, task, content, text, archetype",
    "survey_answers": "step, survey_id, persona_id, agent_id, answer_choice, answer_scale, content",
    "steps": "step, n_active, n_emissions, n_failed, n_answers, n_archetype_calls, n_drawn",
    "agent_states": "agent_id, step, state",
    "run_archetypes": "archetype, size, representative, attribute_shares, method",
    "run_agent_archetypes": "persona_id, archetype",
}


def _scenario(tmp_path: Path, k: object = K) -> Path:
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(N)))
    path = tmp_path / "archetyped.py"
    path.write_text(SCENARIO.format(k=k))
    return path


def _snapshot(db: Path, run_id: str) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {table: json.loads(json.dumps(con.execute(
            f"SELECT {columns} FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id]).fetchall(),
            default=str).replace(run_id, "RUN")) for table, columns in TABLES.items()}
        out["llm_calls"] = con.execute(
            "SELECT step, purpose, status, count(*) FROM llm_calls WHERE run_id = ? "
            "GROUP BY ALL ORDER BY ALL", [run_id]).fetchall()
        return out
    finally:
        con.close()


def _run(path: Path, db: Path, client: FakeClient | None = None, **options: object) -> str:
    return run_simulation(RunConfig(scenario=load_scenario(path), db=db, **options),
                          client=client).run_id


def test_calls_per_step_are_per_archetype_and_answers_per_agent(tmp_path):
    db = tmp_path / "run.duckdb"
    run_id = _run(_scenario(tmp_path), db)
    con = duckdb.connect(str(db), read_only=True)
    q = lambda sql: con.execute(sql, [run_id]).fetchall()  # noqa: E731
    groups = dict(q("SELECT archetype, size FROM run_archetypes WHERE run_id = ?"))
    assert 1 < len(groups) <= K and sum(groups.values()) == N
    assert q("SELECT count(*), count(DISTINCT persona_id) FROM run_agent_archetypes "
             "WHERE run_id = ?") == [(N, N)]
    # every agent active every step (default activation): one call per (archetype, kind) used
    pools = dict(((s, k), n) for s, k, n in q(
        "SELECT step, task, count(DISTINCT archetype) FROM emissions WHERE run_id = ? GROUP BY ALL"))
    calls = {(s, p): n for s, p, n in q(
        "SELECT step, purpose, count(*) FROM llm_calls WHERE run_id = ? GROUP BY ALL")}
    for step in (1, 2, 3):
        assert calls[(step, "survey_archetype")] == len(groups)  # one survey a step, all asked
        for kind in ("instruction", "tool_spec"):
            assert calls.get((step, kind), 0) == pools.get((step, kind), 0)
    assert sum(calls.values()) < 3 * 2 * N / 2  # not one call per agent
    # answers stored per agent, each the drawn one, in the survey's range
    answers = q("SELECT step, count(*), count(DISTINCT persona_id), min(answer_scale), "
                "max(answer_scale) FROM survey_answers WHERE run_id = ? GROUP BY 1 ORDER BY 1")
    assert [a[:3] for a in answers] == [(1, N, N), (2, N, N), (3, N, N)]
    assert 1 <= answers[1][3] <= answers[1][4] <= 5
    assert q("SELECT count(*) FROM emissions WHERE run_id = ? AND archetype IS NULL") == [(0,)]
    assert q("SELECT sum(n_emissions), sum(n_drawn), sum(n_failed) FROM steps WHERE run_id = ?") \
        == [(3 * N, 3 * N + 3 * N, 0)]
    con.close()


def _shares_answer(shares: list[float], fail_persona: str | None = None):
    def answer(call: Call):
        if call.purpose != "survey_archetype":
            return None
        if call.persona_id == fail_persona:
            return StructuredResult(None, [])
        return call.schema(shares=shares)
    return answer


def test_members_answers_are_drawn_from_the_stated_shares(tmp_path):
    db = tmp_path / "run.duckdb"
    client = FakeClient(_shares_answer([0, 100, 0]), seed=SEED)
    run_id = _run(_scenario(tmp_path), db, client, steps=1)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT answer_choice, count(*) FROM survey_answers WHERE run_id = ? "
                       "GROUP BY 1", [run_id]).fetchall() == [("badly", N)]
    con.close()


def test_a_failed_archetype_call_fails_its_members_answers(tmp_path):
    db = tmp_path / "probe.duckdb"
    path = _scenario(tmp_path)
    probe = _run(path, db, steps=1)
    con = duckdb.connect(str(db), read_only=True)
    representative, size = con.execute("SELECT representative, size FROM run_archetypes WHERE "
                                       "run_id = ? ORDER BY size LIMIT 1", [probe]).fetchone()
    con.close()
    db = tmp_path / "failing.duckdb"
    client = FakeClient(_shares_answer([50, 50, 0], fail_persona=representative), seed=SEED)
    run_id = _run(path, db, client, steps=1, max_failed_share=1.0)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM survey_answers WHERE run_id = ?",
                       [run_id]).fetchone() == (N - size,)
    assert con.execute("SELECT n_failed FROM steps WHERE run_id = ?", [run_id]).fetchone() == (size,)
    con.close()


def test_same_seed_same_tables(tmp_path):
    path = _scenario(tmp_path)
    first = _snapshot(tmp_path / "a.duckdb", _run(path, tmp_path / "a.duckdb"))
    assert first == _snapshot(tmp_path / "b.duckdb", _run(path, tmp_path / "b.duckdb"))


def test_the_run_option_overrides_the_scenario(tmp_path):
    db = tmp_path / "run.duckdb"
    run_id = _run(_scenario(tmp_path, k=None), db, steps=1, archetypes=2)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM run_archetypes WHERE run_id = ?",
                       [run_id]).fetchone() == (2,)
    con.close()


@pytest.mark.parametrize("bad", ["0", "'four'"])
def test_a_bad_archetypes_value_fails_in_one_line(tmp_path, bad):
    path = _scenario(tmp_path, k=bad)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "scenario.archetypes" in message


def test_resume_after_a_failure_gives_the_uninterrupted_tables(tmp_path):
    path = _scenario(tmp_path)
    whole = _snapshot(tmp_path / "whole.duckdb", _run(path, tmp_path / "whole.duckdb"))
    db = tmp_path / "broken.duckdb"
    with pytest.raises(PersonahubError, match="unreachable"):
        _run(path, db, FakeClient(unreachable_from_step(2), seed=SEED))
    con = duckdb.connect(str(db), read_only=True)
    run_id, done = con.execute("SELECT run_id, steps_done FROM runs").fetchone()
    con.close()
    assert done == 1
    resume_run(run_id, db=db)
    assert _snapshot(db, run_id) == whole


def test_share_schema_refuses_zero_shares_and_normalises():
    schema = share_schema("scale", (), 1, 3)
    with pytest.raises(ValueError, match="sum to zero"):
        schema.model_validate({"shares": [0, 0, 0]})
    with pytest.raises(ValueError):
        schema.model_validate({"shares": [10, 10]})  # one per answer
    assert normalised_shares(schema.model_validate({"shares": [10, 30, 60]}).model_dump()) \
        == pytest.approx([0.1, 0.3, 0.6])


def test_show_on_a_run_prints_its_grouping(tmp_path):
    from personahub.analysis.preview import show

    db = tmp_path / "run.duckdb"
    run_id = _run(_scenario(tmp_path), db, steps=1)
    con = duckdb.connect(str(db), read_only=True)
    largest = con.execute("SELECT size, representative FROM run_archetypes WHERE run_id = ? "
                          "ORDER BY size DESC, archetype LIMIT 1", [run_id]).fetchone()
    shown = show(con, run_id)
    con.close()
    assert shown.what == "run"
    grouping = dict(shown.fields)["archetypes"]
    assert grouping.startswith("archetypes: ")
    assert f"{largest[0]} agents" in grouping.splitlines()[1] and largest[1] in grouping


def test_the_command_takes_archetypes_and_resume_refuses_them(tmp_path):
    from tests.cli_helpers import invoke

    db = tmp_path / "run.duckdb"
    result = invoke("run", _scenario(tmp_path, k=None), "--db", db, "--archetypes", "3",
                    "--steps", "1", "--preview", "0")
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    run_id, n = con.execute("SELECT run_id, count(*) FROM run_archetypes GROUP BY 1").fetchone()
    con.close()
    assert n == 3 and "calls once per archetype" in result.stdout
    refused = invoke("run", "--resume", run_id, "--db", db, "--archetypes", "2")
    assert refused.exit_code == 2 and "--archetypes" in refused.stderr


def test_the_run_report_lists_the_archetypes_with_their_members_attributes(tmp_path):
    from personahub.analysis.report import write_report
    from personahub.core.store import connect

    path = _scenario(tmp_path)
    (tmp_path / "people.jsonl").write_text("".join(  # the same people, each with a town
        json.dumps({"persona": t, "town": "north" if i % 3 else "south"}) + "\n"
        for i, t in enumerate(persona_texts(N))))
    db = tmp_path / "run.duckdb"
    run_id = _run(path, db, steps=1)
    con = connect(db)
    try:
        representatives = [r for (r,) in con.execute(
            "SELECT representative FROM run_archetypes WHERE run_id = ?", [run_id]).fetchall()]
        page = write_report(con, tmp_path / "report", run_id=run_id).read_text()
    finally:
        con.close()
    assert "<h2>Archetypes</h2>" in page and f"{len(representatives)} archetypes over {N} agents" \
        in page
    assert all(r in page for r in representatives)
    assert "town: north" in page or "town: south" in page


def test_a_run_without_archetypes_has_no_archetype_section(tmp_path):
    from personahub.analysis.report import write_report
    from personahub.core.store import connect

    db = tmp_path / "run.duckdb"
    run_id = _run(_scenario(tmp_path, k=None), db, steps=1)
    con = connect(db)
    try:
        page = write_report(con, tmp_path / "report", run_id=run_id).read_text()
    finally:
        con.close()
    assert "Archetypes" not in page


SAMPLE = 2  # archetype_elicit="sample:2"


def _sizes(db: Path, run_id: str) -> dict[int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT archetype, size FROM run_archetypes WHERE run_id = ?",
                                [run_id]).fetchall())
    finally:
        con.close()


def test_sampled_elicitation_asks_n_members_per_archetype_and_survey(tmp_path):
    db = tmp_path / "run.duckdb"
    client = FakeClient(seed=SEED)
    run_id = _run(_scenario(tmp_path), db, client, archetype_elicit=f"sample:{SAMPLE}")
    sizes = _sizes(db, run_id)
    assert min(sizes.values()) >= SAMPLE  # so each archetype asks exactly SAMPLE members
    con = duckdb.connect(str(db), read_only=True)
    q = lambda sql: con.execute(sql, [run_id]).fetchall()  # noqa: E731
    per_step = dict(q("SELECT step, count(DISTINCT persona_id) FROM llm_calls WHERE run_id = ? "
                      "AND purpose = 'survey_archetype' GROUP BY 1"))
    pools = dict(q("SELECT step, count(DISTINCT (archetype, task)) FROM emissions "
                   "WHERE run_id = ? GROUP BY 1"))
    counted = dict(q("SELECT step, n_archetype_calls FROM steps WHERE run_id = ?"))
    answers = q("SELECT step, count(*) FROM survey_answers WHERE run_id = ? GROUP BY 1 ORDER BY 1")
    con.close()
    # one survey a step, every agent asked: archetypes x N answer calls, no stated-share call
    assert per_step == {1: len(sizes) * SAMPLE, 2: len(sizes) * SAMPLE, 3: len(sizes) * SAMPLE}
    assert counted == {s: len(sizes) * SAMPLE + pools[s] for s in (1, 2, 3)}
    assert client.by_purpose["survey_archetype"] == 3 * len(sizes) * SAMPLE
    assert "survey" not in client.by_purpose  # no member asked for its own answer
    assert answers == [(1, N), (2, N), (3, N)]  # yet every member has one, drawn


def _by_persona(answers: dict[str, str]):
    """Sampled members answer the (step 1: choice) survey by persona (``answers``)."""
    def answer(call: Call):
        if call.purpose != "survey_archetype":
            return None
        return call.schema(answer=answers[call.persona_id])
    return answer


def test_each_member_draws_from_its_archetypes_sampled_answers_repeatably(tmp_path):
    from itertools import cycle

    path = _scenario(tmp_path)
    probe = tmp_path / "probe.duckdb"
    probe_id = _run(path, probe, steps=1)
    con = duckdb.connect(str(probe), read_only=True)
    people = [p for (p,) in con.execute("SELECT persona_id FROM run_agent_archetypes WHERE "
                                        "run_id = ? ORDER BY 1", [probe_id]).fetchall()]
    con.close()
    given = dict(zip(people, cycle(["well", "badly", "unsure"]), strict=False))

    def tables(name: str) -> tuple[list, list]:
        db = tmp_path / name
        client = FakeClient(_by_persona(given), seed=SEED)
        run_id = _run(path, db, client, steps=1, archetype_elicit=f"sample:{SAMPLE}")
        con = duckdb.connect(str(db), read_only=True)
        try:
            archetype_of = dict(con.execute("SELECT persona_id, archetype FROM "
                                            "run_agent_archetypes WHERE run_id = ?",
                                            [run_id]).fetchall())
            sampled = sorted((archetype_of[persona], persona) for purpose, persona, _ in
                             client.prompts if purpose == "survey_archetype")
            drawn = con.execute(
                "SELECT a.archetype, s.persona_id, s.answer_choice FROM survey_answers s JOIN "
                "run_agent_archetypes a USING (run_id, persona_id) WHERE s.run_id = ? "
                "ORDER BY ALL", [run_id]).fetchall()
        finally:
            con.close()
        return sampled, drawn

    sampled, drawn = tables("a.duckdb")
    allowed: dict[int, set[str]] = {}
    for archetype, persona in sampled:
        allowed.setdefault(archetype, set()).add(given[persona])
    assert len(sampled) == len(allowed) * SAMPLE and len(drawn) == N
    # raw counts: a member draws only answers its archetype's sampled members gave
    assert all(choice in allowed[archetype] for archetype, _, choice in drawn)
    assert len({choice for _, _, choice in drawn}) > 1  # not one answer for everyone
    assert tables("b.duckdb") == (sampled, drawn)  # seeded: the same members and draws


def test_sampled_elicitation_resumes_to_the_uninterrupted_tables(tmp_path):
    path = _scenario(tmp_path)
    sample = {"archetype_elicit": f"sample:{SAMPLE}"}
    whole = _snapshot(tmp_path / "whole.duckdb", _run(path, tmp_path / "whole.duckdb", **sample))
    db = tmp_path / "broken.duckdb"
    with pytest.raises(PersonahubError, match="unreachable"):
        _run(path, db, FakeClient(unreachable_from_step(2), seed=SEED), **sample)
    con = duckdb.connect(str(db), read_only=True)
    run_id, done = con.execute("SELECT run_id, steps_done FROM runs").fetchone()
    con.close()
    assert done == 1
    resume_run(run_id, db=db)
    assert _snapshot(db, run_id) == whole
    assert whole["llm_calls"] != _snapshot(  # not the stated elicitation's calls
        tmp_path / "stated.duckdb", _run(path, tmp_path / "stated.duckdb"))["llm_calls"]


def test_archetype_elicit_takes_calibrations_method_names(tmp_path):
    """``distribution`` names the stated shares as calibrate --elicit does, stored as before."""
    scenario = load_scenario(_scenario(tmp_path))
    given = RunConfig(scenario=scenario, archetype_elicit="distribution")
    assert given.archetype_elicit == "stated"  # earlier runs and experiment arms compare equal
    assert RunConfig(scenario=scenario, archetype_elicit="sample:2").archetype_elicit == "sample:2"
    assert archetype_sample_size("distribution") is None
    assert archetype_sample_size("stated") is None and archetype_sample_size("sample:3") == 3


@pytest.mark.parametrize("bad", ["sample:0", "sample", "guess", "sample:x"])
def test_a_bad_archetype_elicit_fails_in_one_line(tmp_path, bad):
    from tests.cli_helpers import invoke

    path = _scenario(tmp_path)
    path.write_text(path.read_text().replace(
        "archetypes=", f"archetype_elicit={bad!r}, archetypes="))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert "\n" not in str(caught.value) and "scenario.archetype_elicit" in str(caught.value)
    refused = invoke("run", _scenario(tmp_path), "--db", tmp_path / "x.duckdb",
                     "--archetype-elicit", bad)
    assert refused.exit_code == 2 and "--archetype-elicit must be 'distribution' ('stated') or " \
        "'sample:N'" in \
        refused.stderr and refused.stderr.strip().count("\n") == 0

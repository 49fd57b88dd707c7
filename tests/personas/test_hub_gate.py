"""Hub hygiene: every persona row carries a ``gate`` label, draws take only
the rows that passed the quality gate unless asked, the offline engine's rows are labelled
``offline``, and the gate checks coherence as well as form."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from personahub.api import synthesize
from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.models.client import LLMClient, LLMSettings
from personahub.personas.gate_labels import DRAWN, OFFLINE, checked_gate, drawn_gates, spec_is_offline
from personahub.personas.quality import coherence_issue, gate_persona, relation_issue, repair_relation
from personahub.personas.record import Persona
from personahub.personas.sampling import HubQuery, draw_ids
from personahub.personas.store import upsert_personas
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.expansions import expand_hub
from tests.fakes import FakeClient, people_answers

JUNK = "Lilith Maddox"  # a bare name: the gate's bare_name rule fails it


def gates(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT text, gate FROM personas").fetchall())


# ---------------------------------------------------------------------- coherence rules


@pytest.mark.parametrize(("text", "code"), [
    ("A group of nurses who share a flat above the clinic", "many_people"),
    ("Patients of the Valeside clinic waiting for a bed", "many_people"),
    ("Two farmers who share a tractor and a grudge", "many_people"),
    ("Several students studying law in Leeds", "many_people"),
    ("A nurse or a teacher who lives in Leeds", "either_or"),
    ("A doctor/lawyer from Ohio with large debts", "either_or"),
])
def test_coherence_rejects_groups_and_undecided_roles(text: str, code: str) -> None:
    issue = coherence_issue(text)
    assert issue is not None and issue.code == code
    assert gate_persona(text)[1] == issue  # the generated-persona gate applies it


@pytest.mark.parametrize("text", [
    "A retired teacher who visits friends or neighbours every Sunday",  # "or" outside the head
    "Editor, reporter and photographer of the Vale Courier, a weekly paper",  # one person's roles
    "Parents' rights advocate who campaigns for smaller classes",  # a possessive, not a plural
    "Two-time champion rower who now coaches juniors at dawn",
    "The boss of a small bakery who rises at four",
])
def test_coherence_passes_one_person(text: str) -> None:
    assert coherence_issue(text) is None


@pytest.mark.parametrize(("label", "ok"), [
    ("patient", True), ("night-shift colleague", True), ("friend or colleague", False),
    ("friend, colleague", False), ("", False), ("n/a", False),
    ("the person who lives next door to them", False),
])
def test_an_expansion_label_must_be_one_relation(label: str, ok: bool) -> None:
    issue = relation_issue(label)
    assert (issue is None) is ok
    if not ok:
        assert issue is not None and issue.code == "bad_relation"


@pytest.mark.parametrize(("relation", "label"), [
    ("A 58-year-old is a customer at Millbrook", "customer"),
    ("The nurse who treats her every week", "nurse"),
    ("He works as a night-shift colleague at the plant", "night-shift colleague"),
    ("Her younger brother who lives in Leeds", "younger brother"),
    ("a regular customer of the bakery shop", "regular customer"),
    ("customer", "customer"),  # a label stays as it is
    ("her daughter and son", "her daughter and son"),  # several relations: still rejected
    ("colleague, friend and neighbour of hers", "colleague, friend and neighbour of hers"),
    ("the person who lives next door to them", "the person who lives next door to them"),
    ("the one she buys bread from every day", "the one she buys bread from every day"),
])
def test_a_relation_sentence_is_reduced_to_its_label(relation: str, label: str) -> None:
    assert repair_relation(relation) == label
    assert (relation_issue(repair_relation(relation)) is None) is (label != relation
                                                                  or relation == "customer")


def test_the_expansion_keeps_an_answer_whose_relation_is_a_short_sentence(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    parent = Persona(text=persona_texts(1)[0], source="test")
    upsert_personas(con, [parent])
    child = "A night-shift pharmacist in Leeds who restocks the clinic cupboard"
    caller = FakeClient(people_answers([child], relations=["A 58-year-old is a customer at Millbrook"]))
    expand_hub(con, caller, start_ids=[parent.persona_id], hops=1, fanout=1, link_candidates=0)
    assert con.execute("SELECT relation FROM relations WHERE source = 'expand'").fetchall() == [
        ("customer",)]
    assert con.execute("SELECT count(*) FROM rejected").fetchone() == (0,)
    con.close()


def test_the_expansion_gate_checks_its_relation_label(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    parent = Persona(text=persona_texts(1)[0], source="test")
    upsert_personas(con, [parent])
    good = "A night-shift pharmacist in Leeds who restocks the clinic cupboard"
    bad = "A dairy farmer from Cumbria who sells cheese at the market"
    caller = FakeClient(people_answers([good, bad], relations=["supplier", "friend or rival"]))
    expand_hub(con, caller, start_ids=[parent.persona_id], hops=1, fanout=2,
                           link_candidates=0)
    texts = [r[0] for r in con.execute("SELECT text FROM personas").fetchall()]
    assert good in texts and bad not in texts
    assert con.execute("SELECT reason FROM rejected WHERE source = 'expand'").fetchall() == [
        ("bad_relation",)]
    con.close()


# ---------------------------------------------------------------------- labels on write


def test_rows_written_without_a_model_are_checked_and_kept(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    good = persona_texts(1)[0]
    upsert_personas(con, [Persona(text=good, source="f"), Persona(text=JUNK, source="f")])
    assert gates(con) == {good: "passed", JUNK: "failed"}
    assert checked_gate(Persona(text="A group of nurses who share a flat")) == "failed"
    con.close()


def test_an_import_keeps_junk_rows_labelled_failed_and_says_so(tmp_path: Path) -> None:
    good = persona_texts(2)
    source = tmp_path / "people.jsonl"
    source.write_text("".join(json.dumps({"persona": t}) + "\n" for t in [*good, JUNK]),
                      encoding="utf-8")
    db = tmp_path / "hub.duckdb"
    result = invoke("personas", "import", str(source), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert "1 of them fail the quality gate" in result.stdout
    con = connect(db, read_only=True)
    assert gates(con) == {good[0]: "passed", good[1]: "passed", JUNK: "failed"}
    con.close()


def test_the_offline_engine_labels_its_expansions_offline(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    seeds = [Persona(text=t, source="test") for t in persona_texts(2)]
    upsert_personas(con, seeds)
    expand_hub(con, LLMClient(LLMSettings(seed=4)),
                           start_ids=[p.persona_id for p in seeds], hops=1, fanout=2)
    labels = dict(con.execute("SELECT source, list_distinct(list(gate)) FROM personas "
                              "GROUP BY source").fetchall())
    assert labels == {"test": ["passed"], "expand": [OFFLINE]}
    con.close()


def test_a_model_expansion_is_labelled_passed(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    parent = Persona(text=persona_texts(1)[0], source="test")
    upsert_personas(con, [parent])
    fresh = "A night-shift pharmacist in Leeds who restocks the clinic cupboard"
    caller = FakeClient(people_answers([fresh]), offline=False)
    expand_hub(con, caller, start_ids=[parent.persona_id], hops=1, fanout=1,
                           link_candidates=0)
    assert gates(con)[fresh] == "passed"
    con.close()


# ---------------------------------------------------------------------- draws


def mixed_hub(path: Path) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """Two passed personas, one failed import and two offline-engine rows."""
    con = connect(path)
    good = persona_texts(4)
    upsert_personas(con, [Persona(text=t, source="f") for t in good[:2]])
    upsert_personas(con, [Persona(text=JUNK, source="f")])
    upsert_personas(con, [Persona(text=t, source="expand", hop=1) for t in good[2:]], gate=OFFLINE)
    return con, good


def drawn_texts(con: duckdb.DuckDBPyConnection, **kwargs: object) -> set[str]:
    ids = draw_ids(con, HubQuery(), None, **kwargs)  # type: ignore[arg-type]
    return {r[0] for r in con.execute("SELECT text FROM personas WHERE persona_id IN "
                                      "(SELECT unnest(?))", [ids]).fetchall()}


def test_draws_take_passed_rows_and_offline_jobs_take_offline_rows(tmp_path: Path) -> None:
    con, good = mixed_hub(tmp_path / "hub.duckdb")
    assert drawn_texts(con) == set(good[:2])
    assert drawn_texts(con, gates=drawn_gates(offline=True)) == set(good)
    assert drawn_texts(con, gates=drawn_gates(include_ungated=True)) == {*good, JUNK}
    assert drawn_gates() == DRAWN
    con.close()


def test_a_draw_with_nobody_eligible_names_the_flag(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    upsert_personas(con, [Persona(text=t, source="expand") for t in persona_texts(3)], gate=OFFLINE)
    with pytest.raises(PersonahubError) as caught:
        draw_ids(con, HubQuery(), 2)
    message = str(caught.value)
    assert "\n" not in message and "3 offline" in message and "--include-ungated" in message
    assert len(draw_ids(con, HubQuery(), 2, gates=drawn_gates(offline=True))) == 2
    con.close()


def test_spec_is_offline() -> None:
    assert spec_is_offline("offline") and spec_is_offline("offline:7")
    assert not spec_is_offline("http://127.0.0.1:8000/v1?model=x")
    assert not spec_is_offline("offline,http://127.0.0.1:8000/v1")


def test_personas_sample_shows_the_gate_and_leaves_out_the_ungated(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    con, good = mixed_hub(db)
    con.close()
    result = invoke("personas", "sample", "--db", str(db), "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert {json.loads(line)["persona"] for line in result.stdout.splitlines()} == set(good[:2])
    wide = invoke("personas", "sample", "--db", str(db), "--include-ungated", "--format", "jsonl")
    assert len(wide.stdout.splitlines()) == 5
    table = invoke("personas", "sample", "--db", str(db), "--include-ungated", "--show", "5")
    assert "gate" in table.stdout and "offline" in table.stdout and "failed" in table.stdout
    none = invoke("personas", "sample", "--db", str(db), "--contains", "Maddox")
    assert none.exit_code != 0 and "--include-ungated" in none.output


def test_synthesis_draws_only_gated_personas_unless_asked(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    con = connect(db)
    upsert_personas(con, [Persona(text=JUNK, source="f")])
    con.close()
    with pytest.raises(PersonahubError, match="include_ungated=True"):
        synthesize("instruction", db=db, n=1)
    job = synthesize("instruction", db=db, n=1, include_ungated=True)
    con = connect(db, read_only=True)
    drawn = con.execute("SELECT p.text FROM synth_job_personas s JOIN personas p USING "
                        "(persona_id) WHERE s.job_id = ?", [job.job_id]).fetchall()
    con.close()
    assert drawn == [(JUNK,)]


def test_an_offline_synthesis_draws_the_offline_engines_personas(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    con = connect(db)
    upsert_personas(con, [Persona(text=t, source="expand") for t in persona_texts(3)], gate=OFFLINE)
    con.close()
    job = synthesize("instruction", db=db, n=3)  # llm offline: its own rows are drawn
    assert job.job_id


# ---------------------------------------------------------------------- every row labelled


def test_a_persona_row_without_a_label_is_refused(tmp_path: Path) -> None:
    """The label is part of every row (no unlabelled rows a draw would have to guess about)."""
    con = connect(tmp_path / "hub.duckdb")
    with pytest.raises(duckdb.ConstraintException, match="gate"):
        con.execute("INSERT INTO personas (persona_id, text, source) VALUES ('p1', 'x', 'raw')")
    con.close()


def test_show_prints_a_personas_gate(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    con, _ = mixed_hub(db)
    offline_id = con.execute("SELECT persona_id FROM personas WHERE gate = 'offline' "
                             "LIMIT 1").fetchall()[0][0]
    con.close()
    result = invoke("show", offline_id, "--db", str(db))
    assert result.exit_code == 0, result.output
    assert any("gate" in line and "offline" in line for line in result.stdout.splitlines())


def test_a_hub_scenario_draws_gated_personas_unless_it_asks(tmp_path: Path) -> None:
    from personahub.sim.runner import load_scenario_personas
    from personahub.sim.scenario import PersonaSource, Scenario

    db = tmp_path / "hub.duckdb"
    con, good = mixed_hub(db)
    con.close()

    def drawn(**source: object) -> set[str]:
        scenario = Scenario(name="t", personas=PersonaSource(path="hub", **source), steps=1)
        return {p.text for p in load_scenario_personas(scenario, db, offline=False)}

    assert drawn() == set(good[:2])
    assert drawn(include_ungated=True) == {*good, JUNK}
    scenario = Scenario(name="t", personas=PersonaSource(path="hub"), steps=1)
    assert {p.text for p in load_scenario_personas(scenario, db, offline=True)} == set(good)


UNGATED_SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="ungated", personas=PersonaSource(path="hub"),
                    graph=GraphGrowth(hops=0, acquaintances=1), steps=1,
                    tasks=("instruction",), world="A small town.", seed=3)
"""


def test_run_include_ungated_draws_a_hub_the_gate_failed(tmp_path: Path) -> None:
    import personahub

    names = [JUNK, "Tom Reyes", "Ana Silva", "Kofi Mensah"]  # bare names: the gate fails each
    db = tmp_path / "hub.duckdb"
    con = connect(db)
    upsert_personas(con, [Persona(text=n, source="f") for n in names])
    assert set(gates(con).values()) == {"failed"}
    con.close()
    scenario = tmp_path / "ungated.py"
    scenario.write_text(UNGATED_SCENARIO, encoding="utf-8")

    refused = invoke("run", scenario, "--db", db)
    assert refused.exit_code == 1 and "--include-ungated" in refused.stderr, refused.output
    assert len(refused.stderr.strip().splitlines()) == 1
    ran = invoke("run", scenario, "--db", db, "--include-ungated", "--preview", 0)
    assert ran.exit_code == 0, ran.output
    run = personahub.run_scenario(scenario, db=db, include_ungated=True, progress=False)
    con = connect(db, read_only=True)
    try:
        agents = con.execute("SELECT run_id, count(*) FROM run_agents GROUP BY 1").fetchall()
        assert sorted(n for _, n in agents) == [4, 4] and run.run_id in dict(agents)
        stored = con.execute("SELECT DISTINCT CAST(config->>'include_ungated' AS VARCHAR) "
                             "FROM jobs WHERE kind = 'run'").fetchall()
        assert stored == [("true",)]
    finally:
        con.close()
    again = invoke("run", "--resume", run.run_id, "--db", db, "--include-ungated")
    assert again.exit_code == 2 and "--include-ungated from the run" in again.output

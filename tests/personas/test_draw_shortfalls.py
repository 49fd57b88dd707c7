"""A draw that returns fewer personas than asked says so, on stderr: how many
matched, how many more the quality gate (or the near-duplicate flag) held back, and the flag
that takes them. ``personas sample``, a synthesis job and a scenario's hub draw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import personahub
from personahub.core.store import connect
from personahub.personas.gate_labels import OFFLINE
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from tests.cli_helpers import invoke
from tests.conftest import persona_texts

TOWNS = ["Leeds", "Hull", "York", "Derby", "Bath", "Ely", "Wells", "Ripon"]


def nurses(n: int, start: int = 0) -> list[str]:
    return [f"A night-shift nurse from {TOWNS[i % len(TOWNS)]} aged {30 + i} who keeps bees "
            "and sings in a choir." for i in range(start, start + n)]


def nurse_hub(db: Path) -> None:
    """3 nurses that passed the gate, 5 the offline engine wrote, and others."""
    con = connect(db)
    upsert_personas(con, [Persona(text=t, source="f") for t in [*nurses(3), *persona_texts(4)]])
    upsert_personas(con, [Persona(text=t, source="expand", hop=1) for t in nurses(5, 3)],
                    gate=OFFLINE)
    con.close()


def test_personas_sample_says_why_it_drew_fewer_than_k(tmp_path: Path) -> None:
    """As the README's ``personas sample --contains nurse --k 20``: 3 drawn, 5 held back."""
    db = tmp_path / "hub.duckdb"
    nurse_hub(db)
    result = invoke("personas", "sample", "--db", db, "--contains", "night-shift", "--k", 20,
                    "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert len([json.loads(line) for line in result.stdout.splitlines()]) == 3  # data only
    note = result.stderr.strip()
    assert "\n" not in note and "3 of 20" in note, note
    assert "5 more match" in note and "5 offline" in note and "--include-ungated" in note
    out = tmp_path / "nurses.jsonl"
    written = invoke("personas", "sample", "--db", db, "--contains", "night-shift", "--k", 20,
                     "--out", out)
    assert "wrote 3 personas" in written.stderr and "--include-ungated" in written.stderr
    wide = invoke("personas", "sample", "--db", db, "--contains", "night-shift", "--k", 20,
                  "--include-ungated", "--format", "ids")
    assert len(wide.stdout.splitlines()) == 8 and "8 of 20" in wide.stderr
    assert "more match" not in wide.stderr  # nothing held back
    enough = invoke("personas", "sample", "--db", db, "--contains", "night-shift", "--k", 2)
    assert enough.exit_code == 0 and "note:" not in enough.stderr


def test_a_short_synthesis_names_what_the_gate_held_back(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    con = connect(db)
    upsert_personas(con, [Persona(text=t, source="f") for t in nurses(2)])
    upsert_personas(con, [Persona(text=t, source="f") for t in ["Lilith Maddox", "Tom Reyes"]])
    con.close()  # the bare names fail the gate's rules: kept, labelled failed
    with pytest.raises(personahub.FewerItems) as caught:
        personahub.synthesize("instruction", db=db, n=5)
    message = str(caught.value)
    assert "2 more match" in message and "2 failed" in message, message
    assert "include_ungated=True" in message and "--" not in message.split("personahub ")[0]


HUB_SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="short", personas=PersonaSource(path="hub", limit=6),
                    graph=GraphGrowth(hops=0, acquaintances=1), steps=1,
                    tasks=("instruction",), world="A small town.", seed=3)
"""


def test_a_scenario_drawing_fewer_than_its_limit_says_so(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "hub.duckdb"
    con = connect(db)
    upsert_personas(con, [Persona(text=t, source="f") for t in nurses(3)])
    upsert_personas(con, [Persona(text=t, source="f") for t in ["Lilith Maddox", "Tom Reyes"]])
    con.close()
    scenario = tmp_path / "short.py"
    scenario.write_text(HUB_SCENARIO, encoding="utf-8")
    ran = invoke("run", scenario, "--db", db, "--preview", 0)
    assert ran.exit_code == 0, ran.output
    assert "personas.limit: 3 of 6" in ran.stderr and "2 failed" in ran.stderr, ran.stderr
    assert "--include-ungated" in ran.stderr and "personas.include_ungated" in ran.stderr
    assert "3 of 6" not in ran.stdout
    run = personahub.run_scenario(scenario, db=db, progress=False)
    assert run.agents == 3 and "3 of 6" in run.personas_note
    assert "3 of 6" in capsys.readouterr().err

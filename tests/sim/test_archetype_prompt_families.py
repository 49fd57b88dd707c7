"""The shape a server's prefix cache needs from an archetype run: each step's archetype calls fall
into one family per kind and per survey question, whose prompts are the same text up to the
Persona section, and a step sends each family's calls one after another.

Then a server's slot computes a family's prefix once and reuses it for the family's other
archetypes; what it computes again per call is the persona and the chat template's close
(bench/RESULTS.md, "bench_prefix_reuse.py": about 0.85 of a warm call's prompt reused at
scale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.conftest import persona_texts
from tests.fakes import Call, FakeClient

N, K = 24, 4

SCENARIO = f"""
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey

SCENARIO = Scenario(
    name="families", personas=PersonaSource(path="people.jsonl"),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=2, tasks=("instruction", "tool_spec"),
    archetypes={K}, world="A river town with a ferry and a market.",
    events={{2: ("Heavy rain is forecast; the ferry may stop running tomorrow.",)}},
    surveys=(Survey(id="app", question="Would you use the new ferry app?", steps=(1, 2),
                    options=("yes", "no", "unsure")),
             Survey(id="worry", question="How worried are you about the ferry stopping?",
                    steps=(2,), answer="scale", low=1, high=5)),
    seed=3)
"""


def _text(messages: Any) -> str:
    return "\n".join(str(getattr(m, "content", m)) for m in messages)


@pytest.mark.slow
def test_an_archetype_steps_calls_come_in_families_sent_one_after_another(tmp_path: Path) -> None:
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(N)))
    path = tmp_path / "families.py"
    path.write_text(SCENARIO)
    sent: list[tuple[int, str, str]] = []  # step, purpose, prompt text, in the order asked

    def record(call: Call) -> None:
        sent.append((call.step, call.purpose or "", _text(call.messages)))

    run_simulation(RunConfig(scenario=load_scenario(path), db=tmp_path / "run.duckdb"),
                   client=FakeClient(answer=record))
    assert sent and {purpose for _, purpose, _ in sent} == {
        "instruction", "tool_spec", "survey_archetype"}
    for step, asked in ((1, 3), (2, 4)):  # both kinds and the surveys asked at the step
        calls = [(purpose, text) for s, purpose, text in sent if s == step]
        heads = [text[: text.index("## Persona")] for _, text in calls]
        # one family per kind and per question: no archetype's text comes before its persona
        assert len(set(heads)) == asked, sorted(set(heads))
        # each family sent in one run of calls, not interleaved with another's
        runs = [head for i, head in enumerate(heads) if i == 0 or heads[i - 1] != head]
        assert len(runs) == len(set(runs)), [purpose for purpose, _ in calls]
        # every archetype asked in every family: the family is the step's shared prefix
        assert len(calls) <= asked * K and len(calls) >= asked * 2

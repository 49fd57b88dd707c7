"""Prefix reuse on llama.cpp's own server: an archetype run's prompts share most of their tokens
with earlier ones, and the run summary reports the share the server reused (``timings.cache_n``).

Marked ``real_model``; skips without llama.cpp's server (a compiled ``llama-server`` or the
``[local]`` extra's xllamacpp) and SmolLM2. The measured shares are in bench/RESULTS.md
("Prompt prefix reuse"; ``bench/bench_prefix_reuse.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from personahub.cli.app import app
from personahub.models.llamacpp import local_llama_cpp
from tests.conftest import persona_texts
from tests.optional import need_llama_cpp

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

# SmolLM2 on two slots reused 0.53-0.56 of this run's prompt tokens (bench/RESULTS.md); a run's
# share moves by a few points with its retries and the order its requests meet the slots in
REUSE_FLOOR = 0.45


def test_an_archetype_run_reuses_most_of_its_prompt_tokens(tmp_path: Path) -> None:
    need_llama_cpp()
    people = tmp_path / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(12)))
    scenario = tmp_path / "archetypes.py"
    scenario.write_text(
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey\n"
        f"SCENARIO = Scenario(name='prefix_real', personas=PersonaSource(path={str(people)!r}),\n"
        "    graph=GraphGrowth(hops=0, acquaintances=2), steps=2,\n"
        "    tasks=('instruction', 'npc_dialogue', 'tool_spec'),\n"
        "    world='A river town with a ferry and a market.',\n"
        "    events={2: ('Heavy rain is forecast; the ferry may stop running tomorrow.',)},\n"
        "    surveys=(Survey(id='ferry_app', question='Would you use the new ferry app?',\n"
        "                    steps=(1, 2), options=('yes', 'no', 'unsure')),\n"
        "             Survey(id='ferry_worry', question='How worried are you about the ferry "
        "stopping?',\n"
        "                    steps=(2,), answer='scale', low=1, high=5)), seed=3)\n")
    with local_llama_cpp(parallel=2, threads=1) as server:
        result = CliRunner().invoke(app, [
            "run", str(scenario), "--db", str(tmp_path / "run.duckdb"), "--llm", server.spec,
            "--archetypes", "3", "--concurrency", "auto", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.replace("│", " ").split())
    found = re.search(r"(\d+)% of prompt tokens reused", flat)
    assert found, result.output
    print(f"{server.server}: {found.group(0)}")
    assert int(found.group(1)) / 100 >= REUSE_FLOOR, flat

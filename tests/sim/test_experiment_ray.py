"""An experiment on Ray ("Arms and replicates are runs on the kernel, on any executor"):
``personahub experiment --executor ray`` hands the executor to every arm run, whose model calls
go to Ray workers as ``personahub run --executor ray``'s do; without ``--parallel`` the runs
follow one another (test_experiment_parallel.py has them overlap). The tables are those of the
same experiment run locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import invoke
from tests.pipeline_helpers import rows

SCENARIO = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="ray_ab", personas=PersonaSource(limit=6),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=2),
    surveys=(Survey(id="buy", steps=(1,), options=("yes", "no"), question="Buy it?"),),
    seed=3)
EXPERIMENT = Experiment(arms=(Arm(name="a"), Arm(name="b", world="It rains.")), replicates=2,
                        outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))
'''

ANSWERS = ("SELECT e.arm, e.replicate, a.agent_id, a.answer_choice FROM experiments e "
           "JOIN survey_answers a USING (run_id) ORDER BY ALL")


@pytest.mark.slow
def test_an_experiment_on_ray_makes_the_local_tables(local_ray: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from personahub.executors.ray_executor import RayExecutor

    asked: list[str] = []
    real = RayExecutor.batches

    def counting(self: RayExecutor, spec: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(spec.kind)
        return real(self, spec, *args, **kwargs)

    monkeypatch.setattr(RayExecutor, "batches", counting)
    path = tmp_path / "ray_ab.py"
    path.write_text(SCENARIO, encoding="utf-8")
    local = invoke("experiment", path, "--db", tmp_path / "local.duckdb", "--replicates", 1)
    assert local.exit_code == 0, local.output
    assert not asked
    on_ray = invoke("experiment", path, "--db", tmp_path / "ray.duckdb", "--executor", "ray",
                    "--ray-workers", 1, "--replicates", 1)
    assert on_ray.exit_code == 0, on_ray.output
    assert asked == ["run"] * 2  # both arm runs' calls went to Ray
    assert on_ray.stdout == local.stdout  # the effect table and verdicts
    assert rows(tmp_path / "ray.duckdb", ANSWERS) == rows(tmp_path / "local.duckdb", ANSWERS)
    configs = rows(tmp_path / "ray.duckdb", "SELECT config FROM jobs WHERE kind = 'run'")
    assert len(configs) == 2
    assert {json.loads(c)["executor"] for c, in configs} == {"ray"}

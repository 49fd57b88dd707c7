"""Settings that would do nothing, or something other than asked, are refused in one line when
the scenario loads or the command starts, never accepted without a word: an activation setting
its mode never reads, an experiment id that is empty or holds a path, --archetype-elicit without
archetypes."""

from __future__ import annotations

from pathlib import Path

import pytest

from personahub.core.errors import UsageError
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, ScenarioValueError
from tests.cli_helpers import invoke, usage_error

TINY = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="tiny", personas=PersonaSource(limit=4), graph=GraphGrowth(hops=0, acquaintances=2),
    steps=1, tasks=("npc_dialogue",), activation=Activation(mode="count", count=1),
    surveys=(Survey(id="buy", steps=(1,), options=("yes", "no"), question="Buy it?"),), seed=5)
EXPERIMENT = Experiment(arms=(Arm(name="a"), Arm(name="b")), replicates=1,
                        outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))
'''


def _awake(step: int, info: object, rng: object) -> bool:
    return True


@pytest.mark.parametrize(("settings", "message"), [
    ({"when": _awake}, "activation.when is given, but mode='all' never calls it; give "
                       "mode='function'"),
    ({"mode": "count", "count": 2, "when": _awake}, "mode='count' never calls it"),
    ({"p": 0.5}, "activation.p is given, but mode='all' never reads it; give mode='probability'"),
    ({"mode": "probability", "p": 0.5, "count": 3}, "activation.count is given, but "
                                                     "mode='probability' never reads it"),
])
def test_an_activation_setting_its_mode_ignores_is_refused(settings: dict[str, object],
                                                           message: str) -> None:
    with pytest.raises(ScenarioValueError, match=message.replace("(", r"\(")):
        Activation(**settings)  # type: ignore[arg-type]


def test_the_activation_settings_each_mode_reads_are_kept() -> None:
    assert Activation(mode="function", when=_awake).when is _awake
    assert Activation(mode="probability", p=0.5).p == 0.5
    assert Activation(mode="count", count=3).count == 3


@pytest.mark.parametrize("bad", ["../elsewhere", "a/b", "a\\b", ".", "..", "tab\there"])
def test_an_experiment_id_holding_a_path_is_refused(bad: str) -> None:
    with pytest.raises(ScenarioValueError, match="experiment.id"):
        Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="s", step=1),),
                   id=bad)


@pytest.mark.slow  # the first experiment command of a process imports its analysis
@pytest.mark.parametrize(("given", "message"), [
    ("", "error: --id: give a non-empty id"),
    ("../x", "error: --id '../x': an id holds no path separator (/ or \\)"),
])
def test_experiment_refuses_an_empty_id_or_a_path(tmp_path: Path, given: str,
                                                  message: str) -> None:
    scenario = tmp_path / "tiny.py"
    scenario.write_text(TINY)
    line = usage_error(invoke("experiment", scenario, "--id", given, "--db", tmp_path / "e.duckdb"))
    assert line.startswith(message), line
    assert not (tmp_path / "e.duckdb").exists()


def test_archetype_elicit_without_archetypes_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.py"
    scenario.write_text(TINY)
    line = usage_error(invoke("run", scenario, "--archetype-elicit", "sample:2",
                              "--db", tmp_path / "r.duckdb"))
    assert line == ("error: --archetype-elicit sample:2: there are no archetypes to elicit; give "
                    "--archetypes K too (or archetypes=K in the scenario)")
    assert not (tmp_path / "r.duckdb").exists()


def test_archetype_elicit_with_archetypes_is_taken(tmp_path: Path) -> None:
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    scenario = tmp_path / "tiny.py"
    scenario.write_text(TINY)
    loaded = load_scenario(scenario)
    config = RunConfig(scenario=loaded, archetypes=2, archetype_elicit="sample:2")
    assert config.archetype_elicit == "sample:2"
    with pytest.raises(UsageError, match="no archetypes to elicit"):
        RunConfig(scenario=loaded, archetype_elicit="stated")

"""The experiment spec (sim/experiment.py): arms as differences, validated against the scenario."""

from pathlib import Path

import pytest

from personahub.sim.experiment import Arm, Experiment, Outcome, arm_scenario, load_experiment
from personahub.sim.scenario import ScenarioError, ScenarioValueError

HEAD = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Event, Scenario, Survey
SCENARIO = Scenario(name="exp", steps=3, events=(Event(step=1, text="launch"),
                                                 Event(step=2, text="rumour")),
                    surveys=(Survey(id="q", steps=(1, 3), options=("yes", "no"), question="Buy?"),
                             Survey(id="s", steps=(3,), answer="scale", low=1, high=5,
                                    question="Fair?")))
'''


def write(tmp_path: Path, experiment: str) -> Path:
    path = tmp_path / "exp.py"
    path.write_text(HEAD + experiment)
    return path


def test_load_experiment_builds_arms_as_differences(tmp_path):
    scenario, experiment = load_experiment(write(tmp_path, '''
EXPERIMENT = Experiment(arms=(Arm(name="none", drop_events=(1,)), Arm(name="rumour"),
                              Arm(name="extra", add_events=(Event(step=3, text="answer"),),
                                  world="A rainy town.")),
                        outcomes=(Outcome(survey="q", step=3, options=("yes",)),
                                  Outcome(survey="s", step=3)), replicates=2)
'''))
    assert experiment.id == "exp" and experiment.control.name == "none"
    assert [o.name for o in experiment.outcomes] == ["q@3", "s@3"]
    texts = [[e.text for e in arm_scenario(scenario, arm).scheduled_events]
             for arm in experiment.arms]
    assert texts == [["launch"], ["launch", "rumour"], ["launch", "rumour", "answer"]]
    assert arm_scenario(scenario, experiment.arms[2]).world == "A rainy town."
    assert arm_scenario(scenario, experiment.arms[1]) == scenario


@pytest.mark.parametrize(("experiment", "message"), [
    ('Experiment(arms=(Arm(name="a", drop_events=(5,)), Arm(name="b")), '
     'outcomes=(Outcome(survey="s", step=3),))',
     "experiment.arms[0] (a).drop_events: index 5 is out of range"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="x", step=3),))',
     "experiment.outcomes[0] (x@3).survey: no survey 'x'"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="q", step=2, '
     'options=("yes",)),))', "experiment.outcomes[0] (q@2).step: survey 'q' is asked at steps"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="q", step=3, '
     'options=("maybe",)),))', "'maybe' is not an option of 'q'"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="q", step=3),))',
     "experiment.outcomes[0] (q@3).options: give the options"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="s", step=3),), '
     'design="within")', "experiment.design must be one of"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="a")), outcomes=(Outcome(survey="s", step=3),))',
     "duplicate arm names"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b", add_events=(Event(step=9, text="late"),))), '
     'outcomes=(Outcome(survey="s", step=3),))', "after the last step"),
])
def test_bad_experiments_fail_naming_the_file_and_field(tmp_path, experiment, message):
    path = write(tmp_path, f"EXPERIMENT = {experiment}\n")
    with pytest.raises(ScenarioError) as info:
        load_experiment(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_a_file_without_an_experiment_says_so(tmp_path):
    with pytest.raises(ScenarioError, match="defines no EXPERIMENT"):
        load_experiment(write(tmp_path, ""))


def test_fields_are_checked_on_construction():
    with pytest.raises(ScenarioValueError, match="experiment.arms must hold two or more"):
        Experiment(arms=(Arm(name="a"),), outcomes=(Outcome(survey="s", step=1),))
    with pytest.raises(ScenarioValueError, match="replicates must be an int >= 1"):
        Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="s", step=1),),
                   replicates=0)
    with pytest.raises(ScenarioValueError, match="Arm: unknown field 'drop_event'"):
        Arm(name="a", drop_event=(1,))  # type: ignore[call-arg]


def test_product_launch_experiment_compares_rumour_and_answer():
    scenario, experiment = load_experiment(
        Path(__file__).resolve().parents[2] / "personahub/scenarios/product_launch.py")
    assert experiment.id == "product_launch" and experiment.replicates == 5
    steps = {arm.name: [e.step for e in arm_scenario(scenario, arm).scheduled_events]
             for arm in experiment.arms}
    assert steps == {"no_rumour": [2], "rumour": [2, 4], "rumour_answered": [2, 4, 5]}
    assert [o.name for o in experiment.outcomes] == ["intent_to_buy", "price_fairness@5"]

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
    extra = arm_scenario(scenario, experiment.arms[2])
    assert (extra.world, extra.arm_world) == (scenario.world, "A rainy town.")
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
     'design="inside")', "experiment.design must be one of ('between', 'within'), got 'inside'"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="s", step=3),), '
     'design="within", stratify="age")',
     "experiment.stratify must be '', 'community' or 'attributes:<name>', got 'age'"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="s", step=3),), '
     'design="within", stratify="attributes:")', "experiment.stratify must be"),
    ('Experiment(arms=(Arm(name="a"), Arm(name="b")), outcomes=(Outcome(survey="s", step=3),), '
     'stratify="community")', "experiment.stratify: 'community' needs design='within'"),
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
    with pytest.raises(ScenarioValueError, match="replicates must be an int within 1..10000"):
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


def test_within_scenario_restricts_each_difference_to_its_arms(tmp_path):
    """One world for every arm: an event some arms drop reaches the others, an added event or
    intervention only its own arm; what every arm keeps is left as it is."""
    from personahub.sim.experiment import within_scenario
    scenario, experiment = load_experiment(write(tmp_path, '''
from personahub.sim.scenario import Intervention
EXPERIMENT = Experiment(arms=(Arm(name="none", drop_events=(1,)), Arm(name="rumour"),
                              Arm(name="extra", add_events=(Event(step=3, text="answer"),),
                                  add_interventions=(Intervention(step=2, action="forget",
                                                                  target=1),))),
                        outcomes=(Outcome(survey="s", step=3),), design="within",
                        stratify="attributes:city")
'''))
    one = within_scenario(scenario, experiment)
    assert [(e.text, e.audience.arms) for e in one.scheduled_events] == [
        ("launch", ()), ("rumour", ("rumour", "extra")), ("answer", ("extra",))]
    assert [(x.action, x.arms) for x in one.interventions] == [("forget", ("extra",))]
    assert one.within_arms == ("none", "rumour", "extra")
    assert one.within_stratify == "attributes:city"
    assert one.scheduled_events[1].audience.describe() == "arms=rumour,extra"


def test_assignment_is_seeded_and_balanced_within_each_stratum():
    from personahub.sim.experiment import assign_arms
    ids = [f"p{i:02d}" for i in range(31)]
    labels = ["north" if i % 3 else "south" for i in range(31)]  # 20 north, 11 south
    first = assign_arms(ids, ("a", "b"), 7, labels)
    assert first == assign_arms(list(reversed(ids)), ("a", "b"), 7, list(reversed(labels)))
    assert first != assign_arms(ids, ("a", "b"), 8, labels)  # another replicate, another draw
    for stratum in ("north", "south"):
        got = [first[i] for i, label in zip(ids, labels, strict=True) if label == stratum]
        assert abs(got.count("a") - got.count("b")) <= 1
    overall = list(first.values())
    assert abs(overall.count("a") - overall.count("b")) <= 1
    three = assign_arms(ids, ("a", "b", "c"), 7)
    assert sorted(list(three.values()).count(arm) for arm in "abc") == [10, 10, 11]


def test_community_strata_are_seeded_and_follow_the_graph():
    """Two cliques joined by one edge: Louvain puts each in its own stratum, whatever order the
    graph was built in, so each clique is split evenly between the arms."""
    import networkx as nx

    from personahub.sim.experiment import assign_arms, strata
    left, right = [f"l{i}" for i in range(6)], [f"r{i}" for i in range(6)]
    graph = nx.complete_graph(left)
    graph.add_edges_from(nx.complete_graph(right).edges())
    graph.add_edge("l0", "r0")
    ids = left + right
    labels = strata(ids, [{} for _ in ids], graph, "community", 3)
    assert len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1 and labels[0] != labels[6]
    shuffled = nx.Graph()
    shuffled.add_edges_from(reversed(list(graph.edges())))
    assert strata(ids, [{} for _ in ids], shuffled, "community", 3) == labels
    arm_of = assign_arms(ids, ("a", "b"), 3, labels)
    assert [arm_of[i] for i in left].count("a") == 3
    assert [arm_of[i] for i in right].count("a") == 3

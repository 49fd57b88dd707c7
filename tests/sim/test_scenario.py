import pytest

from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, ScenarioError, load_scenario


def test_loads_a_valid_scenario_and_resolves_paths(scenario_file):
    path = scenario_file(steps=4)
    scenario = load_scenario(path)
    assert scenario.name == "test_town" and scenario.steps == 4
    assert scenario.base_dir == path.parent.resolve()
    assert scenario.persona_path().exists()


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nope.py")


def test_scenario_that_raises_names_the_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("x = 1\n\nraise RuntimeError('boom')\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert f"{path}:3" in message and "RuntimeError: boom" in message and "\n" not in message


def test_syntax_error_and_missing_scenario(tmp_path):
    bad = tmp_path / "syntax.py"
    bad.write_text("SCENARIO = (\n")
    with pytest.raises(ScenarioError, match="syntax error"):
        load_scenario(bad)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ScenarioError, match="defines no SCENARIO"):
        load_scenario(empty)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"steps": 0}, "steps"),
    ({"kinds": ("poetry",)}, "unknown kind"),
    ({"activation": 0.0}, "activation"),
    ({"kind_weights": (1.0,)}, "kind_weights"),
    ({"events": {0: ("x",)}}, "events"),
])
def test_invalid_fields_are_rejected(kwargs, fragment):
    with pytest.raises(ScenarioError, match=fragment):
        Scenario(name="x", **kwargs)


def test_graph_growth_limits():
    with pytest.raises(ScenarioError, match="hops"):
        GraphGrowth(hops=7)
    with pytest.raises(ScenarioError, match="limit"):
        PersonaSource(limit=0)


def test_invalid_field_in_a_file_is_reported_with_the_file(scenario_file):
    path = scenario_file(steps=0)
    with pytest.raises(ScenarioError, match="steps must be an integer within 1..10000") as info:
        load_scenario(path)
    assert str(path.name) in str(info.value)

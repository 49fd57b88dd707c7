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
    ({"tasks": ("poetry",)}, "unknown task"),
    ({"activation": 0.0}, "activation"),
    ({"task_weights": (1.0,)}, "task_weights"),
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


def test_kinds_is_the_earlier_name_of_tasks():
    with pytest.warns(DeprecationWarning) as record:
        old = Scenario(name="x", kinds=("instruction", "tool_spec"), kind_weights=(2.0, 1.0))
    assert sorted(str(w.message) for w in record) == [
        "Scenario(kind_weights=) is deprecated; use task_weights=",
        "Scenario(kinds=) is deprecated; use tasks="]
    assert all(w.filename == __file__ for w in record)  # points at the caller's line
    new = Scenario(name="x", tasks=("instruction", "tool_spec"), task_weights=(2.0, 1.0))
    assert old == new
    assert new.tasks == ("instruction", "tool_spec") and new.task_weights == (2.0, 1.0)
    with pytest.warns(DeprecationWarning, match="read Scenario.tasks"):
        assert new.kinds == new.tasks
    with pytest.raises(ScenarioError, match=r"give tasks= only \(kinds= is its earlier name\)"):
        Scenario(name="x", tasks=("instruction",), kinds=("instruction",))
    with pytest.raises(ScenarioError, match="did you mean 'tasks'"):
        Scenario(name="x", kind=("instruction",))


def test_a_scenario_built_in_code_keeps_its_key_across_the_rename():
    """A run started in code before tasks= was named resumes: its key hashes the earlier names."""
    import dataclasses
    import hashlib
    import json

    from personahub.sim.runner import _plain, scenario_key

    scenario = Scenario(name="x", tasks=("instruction",), task_weights=(1.0,))
    earlier = {({"tasks": "kinds", "task_weights": "kind_weights"}).get(k, k): v
               for k, v in dataclasses.asdict(scenario).items() if k not in ("base_dir", "source")}
    digest = hashlib.sha256(json.dumps(earlier, default=_plain, sort_keys=True).encode()).hexdigest()
    assert scenario_key(scenario) == digest

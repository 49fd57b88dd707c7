"""The demonstrations shipped for the few-shot modes: one file per synthesis task, each line
valid as ``--examples`` and as an item of its task (schema, check, the task's own text)."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from personahub.core.errors import PersonahubError
from personahub.pipelines.synthesis_inputs import DEFAULT_NPC_WORLD, load_examples
from personahub.tasks import synthesis_names, synthesis_task
from personahub.tasks.shipped_demos import builtin_name, builtin_text, shipped_tasks
from tests.official_sample import sample_path

TOOL_KEYS = ["name", "description", "function_name", "input_args", "return", "depend"]


def lines(task: str) -> list[dict]:
    return [json.loads(line) for line in builtin_text(builtin_name(task)).splitlines()
            if line.strip()]


def test_every_synthesis_task_ships_demonstrations() -> None:
    assert set(shipped_tasks()) == set(synthesis_names())


@pytest.mark.parametrize("task", sorted(synthesis_names()))
def test_demonstrations_load_and_validate_as_the_task(task: str) -> None:
    spec = synthesis_task(task)
    demos = load_examples(builtin_name(task))
    rows = lines(task)
    assert 3 <= len(demos) == len(rows) <= 4
    assert len({d.text for d in demos}) == len(demos) and all(d.persona for d in demos)
    for demo, row in zip(demos, rows, strict=True):
        assert (demo.text, demo.persona) == (row["text"], row["persona"])
        schema = spec.synthesis_schema(with_assistant="turns" in row["content"])
        content = schema.model_validate(row["content"]).model_dump(by_alias=True)
        assert spec.check(content) is None, (task, spec.check(content))
        assert spec.text(content) == row["text"]  # the task's own output form


def test_tool_demonstrations_are_persona_hub_tool_json() -> None:
    for demo in load_examples(builtin_name("tool_spec")):
        assert list(json.loads(demo.text)) == TOOL_KEYS


def test_multi_turn_demonstrations_have_several_turns() -> None:
    assert all(len(row["content"]["user_turns"]) >= 3 for row in lines("multi_turn"))


def test_npc_demonstrations_live_in_the_shipped_world() -> None:
    world = resources.files("personahub.scenarios").joinpath(DEFAULT_NPC_WORLD).read_text()
    names = set(re.findall(r"\*\*(.+?)\*\*", world)) | {"Sallowmere", "Gullet", "Thaw Fair"}
    for row in lines("npc"):
        said = row["text"]
        assert any(name in said for name in names), said


def test_demonstrations_are_not_copied_from_the_release() -> None:
    path = sample_path()
    if path is None:
        pytest.skip("the official sample is not present")
    released = path.read_text(encoding="utf-8")
    for task in synthesis_names():
        for row in lines(task):
            assert row["persona"] not in released and row["text"][:60] not in released


def test_unknown_builtin_names_the_shipped_tasks() -> None:
    with pytest.raises(PersonahubError, match="no shipped demonstrations for 'poem'.*math_problem"):
        load_examples("builtin:poem")
    with pytest.raises(PersonahubError, match="no shipped"):
        load_examples("builtin:../tasks/base")

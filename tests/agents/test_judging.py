"""The judge's call (pipelines/prompts/judge.py) and the criteria each kind states (personahub/tasks/)."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from personahub.models.client import LLMSettings, make_client
from personahub.pipelines.prompts.judge import (
    JUDGE_MAX_TOKENS,
    JUDGE_PURPOSE,
    judge_messages,
    judge_schema,
    overall,
    verdicts,
)
from personahub.tasks import Criterion, Task, get, register, tasks, unregister
from personahub.tasks.base import DEFAULT_CRITERIA


def test_every_kind_states_usable_criteria():
    for task in tasks():
        names = [c.name for c in task.judge_criteria]
        assert names and len(set(names)) == len(names), task.name
        assert all(n.isidentifier() and n not in ("valid", "reason") for n in names), task.name
        assert all(c.question.strip() for c in task.judge_criteria), task.name
    assert [c.name for c in get("math_problem").criteria_for(has_solution=True)] == [
        "well_posed", "solvable", "solution_correct"]
    assert [c.name for c in get("math_problem").criteria_for(has_solution=False)] == [
        "well_posed", "solvable"]
    assert [c.name for c in get("tool_spec").judge_criteria] == ["coherent", "arguments_sufficient"]
    assert [c.name for c in get("instruction").judge_criteria] == ["clear", "answerable"]
    assert get("npc").judge_criteria[0].name == "consistent_with_world"
    assert get("knowledge_text").judge_criteria == DEFAULT_CRITERIA


def test_schema_is_one_class_per_criteria_and_the_offline_answer_is_deterministic():
    names = ("well_posed", "solvable")
    schema = judge_schema(names)
    assert schema is judge_schema(names)
    assert list(schema.model_fields) == ["well_posed", "solvable", "valid", "reason"]
    task = get("math_problem")
    criteria = task.criteria_for(has_solution=False)
    messages = judge_messages(task, "A ferry crosses 4 times an hour; how many in 3 hours?",
                              criteria, persona="a ferry deckhand")
    assert "- well_posed: " in messages[-1].content and "## Item" in messages[-1].content

    def ask(seed: int):
        client = make_client(LLMSettings(seed=seed))
        return asyncio.run(client.structured(schema, messages, purpose=JUDGE_PURPOSE,
                                               max_tokens=JUDGE_MAX_TOKENS))

    first, again = ask(1), ask(1)
    assert first.value is not None and first.value == again.value
    assert first.records[0].purpose == "judge" and first.records[0].max_tokens == 400
    got = verdicts(first.value, criteria)
    assert list(got) == list(names) and all(isinstance(v["yes"], bool) for v in got.values())
    valid, reason = overall(first.value)
    assert isinstance(valid, bool) and isinstance(reason, str)
    json.dumps(got)


class Haiku(BaseModel):
    poem: str


@pytest.fixture
def haiku() -> Task:
    task = Task(name="haiku_judged", schema=Haiku, check=lambda _: None,
                judge_criteria=(Criterion("five_seven_five", "Its lines have 5, 7, 5 syllables."),))
    register(task)
    try:
        yield task
    finally:
        unregister(task.name)


def test_a_new_kind_states_its_own_criteria(haiku: Task):
    schema = judge_schema(tuple(c.name for c in haiku.judge_criteria))
    assert "five_seven_five" in schema.model_fields
    text = judge_messages(haiku, "old pond", haiku.judge_criteria)[-1].content
    assert "five_seven_five: Its lines have 5, 7, 5 syllables." in text

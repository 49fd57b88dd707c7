"""Bounded by construction: every string a model fills has maxLength, every array
maxItems, and a whole answer at its bounds fits in the call's max_tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, ValidationError

from personahub.agents.decide import DECIDE_MAX_TOKENS, decision_schema
from personahub.models.bounds import (
    MIN_STRING_CHARS,
    bounded,
    clip,
    estimate_tokens,
    plan,
    unbounded,
)
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.offline import resolve_node
from personahub.personas.expand import EXPAND_MAX_TOKENS, related_personas_schema
from personahub.personas.linking import link_schema
from personahub.personas.text_to_persona import TEXT_TO_PERSONA_MAX_TOKENS, text_personas_schema
from personahub.pipelines.interview import INTERVIEW_MAX_TOKENS
from personahub.pipelines.prompts.evaluate import ANSWER_MAX_TOKENS, SOLVE_MAX_TOKENS, FinalAnswer
from personahub.pipelines.prompts.judge import JUDGE_MAX_TOKENS, judge_schema
from personahub.sim.reflection import REFLECTION_MAX_TOKENS
from personahub.tasks import tasks
from personahub.tasks.interview import InterviewAnswer
from personahub.tasks.max_tokens import kind_max_tokens, synthesis_max_tokens
from personahub.tasks.reflection import Reflection
from personahub.tasks.survey import SURVEY_MAX_TOKENS, survey_schema
from personahub.tasks.synthesis_schemas import InferredPersona, Solution
from personahub.tasks.tool_spec import ToolSpec


def _asked_schemas() -> list[tuple[str, type[BaseModel], int]]:
    """Every schema a model is asked to fill, with its default budget."""
    out: list[tuple[str, type[BaseModel], int]] = []
    for task in tasks():
        if task.emission is not None:
            out.append((task.name, task.schema, kind_max_tokens(task.name)))
        if task.synthesis is not None:
            budget = synthesis_max_tokens(task.name)
            out.append((f"synth:{task.name}", task.synthesis_schema(), budget))
            out.append((f"synth:{task.name}+", task.synthesis_schema(with_assistant=True), budget))
    out += [
        ("solve", Solution, SOLVE_MAX_TOKENS),
        ("solve-answer", FinalAnswer, ANSWER_MAX_TOKENS),
        ("interview", InterviewAnswer, INTERVIEW_MAX_TOKENS),
        ("reflection", Reflection, REFLECTION_MAX_TOKENS),
        ("text-to-persona", InferredPersona, TEXT_TO_PERSONA_MAX_TOKENS),
        ("from-text", text_personas_schema(3), TEXT_TO_PERSONA_MAX_TOKENS),
        ("expand", related_personas_schema(5), EXPAND_MAX_TOKENS),
        ("link", link_schema(4), EXPAND_MAX_TOKENS),
        ("judge", judge_schema(("coherent", "persona_fit", "answerable")), JUDGE_MAX_TOKENS),
        ("decide", decision_schema(("post", "reply to a message"), 3), DECIDE_MAX_TOKENS),
        ("survey-text", survey_schema("text"), SURVEY_MAX_TOKENS),
        ("survey-choice", survey_schema("choice", ("yes", "no", "unsure")), SURVEY_MAX_TOKENS),
    ]
    return out


ASKED = _asked_schemas()


def _fullest(node: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """The largest answer a schema allows: every string at maxLength, every list at maxItems,
    the longest enum value (fails the test if any string or list is unbounded)."""
    node = resolve_node(node, root)
    if node.get("enum"):
        return max(node["enum"], key=lambda v: len(json.dumps(v)))
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        return {k: _fullest(v, root) for k, v in node["properties"].items()}
    if kind == "array":
        assert "maxItems" in node, f"unbounded array: {node}"
        return [_fullest(node["items"], root) for _ in range(node["maxItems"])]
    if kind == "string":
        assert "maxLength" in node, f"unbounded string: {node}"
        return "x" * node["maxLength"]
    if kind == "boolean":
        return False
    return 10**7  # a number: eight characters, as the plan counts them


@pytest.mark.parametrize("name, schema, budget", ASKED, ids=[a[0] for a in ASKED])
def test_every_asked_schema_is_bounded_and_its_fullest_answer_fits(
        name: str, schema: type[BaseModel], budget: int) -> None:
    for max_tokens in (budget, 64, 2000):
        json_schema = bounded(schema, max_tokens).model_json_schema()
        fullest = _fullest(json_schema, json_schema)
        if plan(schema, max_tokens).per_slot >= 4 * MIN_STRING_CHARS:  # not floored by a minimum
            assert estimate_tokens(fullest) <= max_tokens, (name, max_tokens)


def test_bounds_follow_the_budget_and_validation_agrees() -> None:
    small, large = bounded(ToolSpec, 320), bounded(ToolSpec, 800)
    assert bounded(ToolSpec, 320) is small  # cached per (class, budget)
    assert issubclass(small, ToolSpec) and small.__name__ == "ToolSpec"
    props = lambda s: s.model_json_schema()["properties"]  # noqa: E731
    assert props(small)["description"]["maxLength"] < props(large)["description"]["maxLength"]
    # a name takes a quarter of a description's share (Annotated[str, SHORT])
    assert props(large)["name"]["maxLength"] * 4 == pytest.approx(
        props(large)["description"]["maxLength"], abs=4)
    bound = props(small)["description"]["maxLength"]
    good = {"name": "Tides", "description": "d" * bound, "function_name": "get_tides",
            "input_args": [{"name": "day", "type": "string", "description": "the day"}],
            "return": {"type": "object", "description": "high and low tides"},
            "depend": ["requests"]}
    value = small.model_validate(good)
    assert type(unbounded(value, ToolSpec)) is ToolSpec
    with pytest.raises(ValidationError, match="at most"):
        small.model_validate({**good, "description": "d" * (bound + 1)})
    with pytest.raises(ValidationError, match="at most 3 items"):
        small.model_validate({**good, "depend": ["a", "b", "c", "d"]})


def test_clip_cuts_at_a_word_boundary() -> None:
    assert clip("the tide is high", 100) == "the tide is high"
    assert clip("the tide is high", 13) == "the tide is"
    assert clip("the tide is high", 11) == "the tide is"
    assert clip("abcdefghijkl", 5) == "abcde"  # no boundary: a hard cut
    assert clip("a bcdefghijkl", 6, min_len=3) == "a bcde"  # the boundary would leave too little


def test_client_asks_with_the_effective_max_tokens() -> None:
    """--max-tokens changes the bounds of every call; the offline engine keeps to them."""
    seen: dict[int, Any] = {}
    for max_tokens in (None, 90):
        client = LLMClient(LLMSettings(spec="offline", max_tokens=max_tokens))
        result = asyncio.run(client.structured(ToolSpec, [HumanMessage("A harbour master")],
                                               purpose="synth:tool",
                                               max_tokens=synthesis_max_tokens("tool")))
        assert result.value is not None and type(result.value) is ToolSpec
        seen[result.records[-1].max_tokens] = result.value
    assert set(seen) == {synthesis_max_tokens("tool"), 90}
    limit = bounded(ToolSpec, 90).model_json_schema()["properties"]["description"]["maxLength"]
    assert len(seen[90].description) <= limit < len(seen[synthesis_max_tokens("tool")].description)


def test_json_object_mode_keeps_string_bounds_within_what_llama_cpp_python_can_parse() -> None:
    """llama-cpp-python turns ``maxLength: N`` into N nested groups and its grammar parser fails
    on a knowledge text's bound (~1,500), killing the server: json_object never sends more."""
    from personahub.models.structured import GRAMMAR_SAFE_MAX_LENGTH, response_format
    from personahub.tasks import synthesis_task

    schema = bounded(synthesis_task("knowledge_text").synthesis_schema(), 700)
    lengths = _max_lengths(response_format(schema, "json_schema")["json_schema"]["schema"])
    assert max(lengths) > GRAMMAR_SAFE_MAX_LENGTH  # the full bound goes where a server copes
    safe = _max_lengths(response_format(schema, "json_object")["schema"])
    assert safe and max(safe) == GRAMMAR_SAFE_MAX_LENGTH


def _max_lengths(node: object) -> list[int]:
    if isinstance(node, dict):
        own = [node["maxLength"]] if isinstance(node.get("maxLength"), int) else []
        return own + [n for value in node.values() for n in _max_lengths(value)]
    if isinstance(node, list):
        return [n for value in node for n in _max_lengths(value)]
    return []


@pytest.mark.parametrize("task", ["math_problem", "reasoning_problem"])
def test_a_problem_of_nothing_but_digits_still_closes_in_time(task: str) -> None:
    """A problem statement may run to digits (SmolLM2 on llama-server wrote 300 of them and was
    cut off): its bound is sized at one character a token (``DIGITS``), the least an ASCII
    character costs in a byte-level BPE vocabulary, so even that answer closes. Prose fields
    keep the larger bound of ``CHARS_PER_TOKEN``."""
    from personahub.tasks import synthesis_task

    for purpose, budget in ((f"synth:{task}", synthesis_max_tokens(task)), (task, kind_max_tokens(task))):
        props = bounded(synthesis_task(task).synthesis_schema(), budget).model_json_schema()[
            "properties"]
        # the facts and the question: each of nothing but digits, as long as its bound allows
        fields = {name: ("1234567890" * 200)[:props[name]["maxLength"]]
                  for name in ("problem", "question")}
        bound = sum(len(text) for text in fields.values())
        digits = json.dumps(fields)
        assert len(digits) <= budget, (purpose, bound, budget)  # a character a token, at most
        assert bound >= 500, bound  # still room for the shipped demonstrations' problems
    prose = bounded(synthesis_task("instruction").synthesis_schema(), budget).model_json_schema()
    assert prose["properties"]["instruction"]["maxLength"] > 2 * bound * 0.9


@pytest.mark.parametrize(("name", "schema", "budget"), [
    ("from-text", text_personas_schema(1), TEXT_TO_PERSONA_MAX_TOKENS),
    ("from-text x3", text_personas_schema(3), TEXT_TO_PERSONA_MAX_TOKENS),
    ("expand", related_personas_schema(2), EXPAND_MAX_TOKENS),
    ("expand x3", related_personas_schema(3), EXPAND_MAX_TOKENS),
])
def test_a_persona_answer_of_one_character_tokens_still_closes_in_time(
        name: str, schema: type[BaseModel], budget: int) -> None:
    """SmolLM2 on llama-server ran expansion personas away in one-character tokens
    ("A_JM_N_N_C_M_G…", "MALADES-2019-10-20_…") and was cut off at max_tokens: persona and
    relation fields are bounded at one character a token, so the fullest answer, every character
    a token and the JSON around it too, fits the purpose's default budget."""
    json_schema = bounded(schema, budget).model_json_schema()
    fullest = json.dumps(_fullest(json_schema, json_schema))
    assert len(fullest) <= budget, (name, len(fullest), budget)
    # and a one-sentence persona still has room at the default fanout and per-text
    lengths = _max_lengths(json_schema)
    assert max(lengths) >= 250 if name in ("from-text", "expand") else min(lengths) >= 40, lengths


# -- shaped strings (Shape: a pattern carrying the bound) --------------------------------------
@pytest.mark.parametrize("task", ["math_problem", "reasoning_problem"])
def test_a_problem_is_asked_as_facts_then_a_question_each_shaped_within_its_bound(task: str) -> None:
    """A grammar server that honours ``pattern`` ignores ``maxLength`` beside it: the pattern
    must carry the bound itself, or a shaped string could run on. A string of exactly its
    bound matches; one character more does not; a question must end with '?'."""
    import re

    from personahub.tasks import synthesis_task

    props = bounded(synthesis_task(task).synthesis_schema(), 640).model_json_schema()["properties"]
    assert list(props) == ["problem", "question"]
    for name, last in (("problem", "."), ("question", "?")):
        pattern, bound = re.compile(props[name]["pattern"]), props[name]["maxLength"]
        assert pattern.fullmatch("A" + "x" * (bound - 2) + last)
        assert not pattern.fullmatch("A" + "x" * (bound - 1) + last)
        assert not pattern.fullmatch("1" + "x" * 20 + last)  # no opening with a digit
        assert not pattern.fullmatch('A quote " inside?')  # nothing a JSON string must escape
    assert not re.fullmatch(props["question"]["pattern"], "A question that ends without one")


def test_a_shape_guides_decoding_but_is_not_validated() -> None:
    """Answers are judged by the quality gate, not by the pattern: a server that ignores
    patterns still has its answer taken (and its question mark checked by the gate)."""
    from personahub.tasks import synthesis_task

    schema = bounded(synthesis_task("math_problem").synthesis_schema(), 640)
    value = schema.model_validate({"problem": "3 boats carry 12 people each.",
                                   "question": "how many people in all"})
    assert value.question == "how many people in all"  # type: ignore[attr-defined]


def test_grammar_safe_lowers_a_shaped_patterns_bound_with_its_max_length() -> None:
    import re

    from personahub.models.structured import GRAMMAR_SAFE_MAX_LENGTH, grammar_safe
    from personahub.tasks import synthesis_task

    schema = bounded(synthesis_task("math_problem").synthesis_schema(), 640).model_json_schema()
    assert schema["properties"]["problem"]["maxLength"] > GRAMMAR_SAFE_MAX_LENGTH
    safe = grammar_safe(schema)["properties"]["problem"]
    assert safe["maxLength"] == GRAMMAR_SAFE_MAX_LENGTH
    assert re.fullmatch(safe["pattern"], "A" + "x" * (GRAMMAR_SAFE_MAX_LENGTH - 1))
    assert not re.fullmatch(safe["pattern"], "A" + "x" * GRAMMAR_SAFE_MAX_LENGTH)
    assert grammar_safe(schema)["properties"]["question"] == schema["properties"]["question"]


def test_the_offline_engine_writes_a_problems_question_in_its_own_field() -> None:
    """Facts in ``problem``, the question (ending '?') in ``question``; a schema with only a
    ``problem`` gets both in it, as before; the budget changes nothing but the clipping."""
    from personahub.models.offline import EngineRequest, OfflineEngine
    from personahub.tasks import synthesis_task

    messages = [{"role": "user", "content": "## Persona\nA ferry pilot in Tartu.\n\n## Task\nWrite."}]
    shaped = synthesis_task("math_problem").synthesis_schema()
    answers = [json.loads(OfflineEngine(3).answer(messages, EngineRequest(
        bounded(shaped, budget).model_json_schema())).content) for budget in (640, 4000)]
    assert answers[0] == answers[1]
    problem, question = answers[0]["problem"], answers[0]["question"]
    assert question.endswith("?") and "?" not in problem and problem.endswith(".")

    class OneField(BaseModel):
        problem: str

    whole = json.loads(OfflineEngine(3).answer(messages, EngineRequest(
        OneField.model_json_schema())).content)["problem"]
    assert whole.endswith("?") and "." in whole


_LOAD_SCHEMA = ("import json, sys, cloudpickle; "
                "print(json.dumps(cloudpickle.loads(sys.stdin.buffer.read()).model_json_schema(), "
                "sort_keys=True))")


@pytest.mark.slow  # starts a Python process
def test_a_bounded_schema_pickled_to_another_process_keeps_its_descriptions() -> None:
    """A Ray worker gets the request's bounded class by value (cloudpickle): it must describe
    the same JSON schema there, docstring descriptions included, or the worker asks another
    prompt than the driver would (a cached Ray run once answered otherwise than a local one)."""
    cloudpickle = pytest.importorskip("cloudpickle")
    import subprocess
    import sys

    from personahub.tasks import emission_kinds, emission_task

    EMISSION_SCHEMAS = {kind: emission_task(kind).schema for kind in emission_kinds()}

    schema = bounded(EMISSION_SCHEMAS["conversation"], 450)
    assert schema is not EMISSION_SCHEMAS["conversation"]  # a class made here, pickled by value
    here = json.dumps(schema.model_json_schema(), sort_keys=True)
    assert "One line of a conversation" in here  # a nested model's docstring
    there = subprocess.run([sys.executable, "-c", _LOAD_SCHEMA], input=cloudpickle.dumps(schema),
                           capture_output=True, check=True).stdout.decode().strip()
    assert there == here

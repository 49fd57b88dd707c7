"""Tool specs in the shapes Persona Hub released: JSON-valued input_args, return and depend are
accepted, exported value for value, and turned into OpenAI function-calling tools."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import duckdb
import pytest
from langchain_core.messages import HumanMessage
from pydantic import ValidationError

from personahub.models.client import LLMClient, LLMSettings
from personahub.tasks.max_tokens import synthesis_max_tokens
from personahub.tasks.tool_spec import (
    TASK,
    ReleasedToolSpec,
    ToolSpec,
    check_tool_spec,
    released_tool,
    tool_text,
    tool_to_openai_function,
)
from tests.cli_helpers import invoke
from tests.official_sample import require_sample

BASE = {"name": "Tide table lookup", "description": "Tide times for a harbour on a date.",
        "function_name": "get_tides"}


def tool(**fields: object) -> dict:
    return {**BASE, "input_args": "harbour, date", "return": "times", "depend": "NOAA API",
            **fields}


STRUCTURED = {**BASE, "input_args": [{"name": "harbour", "type": "string",
                                       "description": "the harbour's name"},
                                      {"name": "days", "type": "integer", "description": "how many"}],
              "return": {"type": "array", "description": "high and low tide times"},
              "depend": ["requests", "NOAA tides API"]}


def test_models_are_asked_for_structured_fields_in_a_released_shape() -> None:
    value = ToolSpec.model_validate(STRUCTURED)
    assert value.model_dump(by_alias=True) == STRUCTURED
    assert ReleasedToolSpec.model_validate(STRUCTURED).model_dump(by_alias=True) == STRUCTURED
    with pytest.raises(ValidationError):
        ToolSpec.model_validate(tool())  # the free strings ("python 3.7 (latest)") are gone
    for bad in ({"input_args": [{"name": "not a name", "type": "string", "description": "x y"}]},
                {"input_args": [{"name": "days", "type": "int", "description": "how many"}]},
                {"return": "times"}, {"depend": "NOAA API"}):
        with pytest.raises(ValidationError):
            ToolSpec.model_validate({**STRUCTURED, **bad})
    assert check_tool_spec(STRUCTURED) is None
    function = tool_to_openai_function(STRUCTURED)["function"]
    assert function["parameters"]["properties"] == {
        "harbour": {"type": "string", "description": "the harbour's name"},
        "days": {"type": "integer", "description": "how many"}}
    assert function["description"].endswith("Returns (array): high and low tide times")
    assert tool_text(STRUCTURED) == (
        "Tide table lookup: Tide times for a harbour on a date. get_tides(harbour: string, days: "
        "integer) -> array: high and low tide times. Depends on: requests, NOAA tides API.")
    exported = TASK.personahub_text(STRUCTURED, "")
    assert json.loads(json.loads(exported)) == STRUCTURED  # the release's JSON-in-a-string


def test_offline_engine_fills_the_structured_shape_validly() -> None:
    messages = [HumanMessage("## Persona\nA harbour master in Cork who plans tide tables")]
    for seed in range(5):
        result = asyncio.run(LLMClient(LLMSettings(seed=seed)).structured(
            ToolSpec, messages, purpose="synth:tool", max_tokens=synthesis_max_tokens("tool")))
        value = result.value
        assert value is not None and 1 <= len(value.input_args) <= 4 and value.depend
        assert all(a.name.isidentifier() for a in value.input_args)
        assert check_tool_spec(value.model_dump(by_alias=True)) is None


def test_emitted_schema_is_structured_and_released_schema_takes_json_values() -> None:
    shaped = tool(input_args={"harbour": "str"}, depend=["requests"], **{"return": {"a": "b"}})
    with pytest.raises(ValidationError):
        ToolSpec.model_validate(shaped)  # an object of arguments is released, not asked for
    assert ReleasedToolSpec.model_validate(shaped).model_dump(by_alias=True) == shaped
    with pytest.raises(ValidationError):
        ReleasedToolSpec.model_validate(tool(input_args=3))


@pytest.mark.parametrize("args, params", [
    ("harbour, date: str", {"harbour": {"type": "string", "description": "harbour"},
                            "date": {"type": "string", "description": "date: str"}}),
    (["harbour", "date"], {"harbour": {"type": "string"}, "date": {"type": "string"}}),
    ({"harbour": "The harbour's name", "days": "int"},
     {"harbour": {"type": "string", "description": "The harbour's name"},
      "days": {"type": "integer"}}),
    ({"type": "object", "properties": {"days": {"type": "integer", "description": "how many"}}},
     {"days": {"type": "integer", "description": "how many"}}),
    ([{"name": "days", "type": "List[int]"}], {"days": {"type": "array"}}),
])
def test_openai_function_from_each_shape(args: object, params: dict) -> None:
    function = tool_to_openai_function(tool(input_args=args))["function"]
    assert function["parameters"] == {"type": "object", "properties": params,
                                      "required": list(params)}
    assert check_tool_spec(tool(input_args=args)) is None


def test_structured_returns_and_bad_names() -> None:
    function = tool_to_openai_function(tool(**{"return": {"high": "time"}}))["function"]
    assert function["description"].endswith('Returns: {"high": "time"}')
    issue = check_tool_spec(tool(input_args=["not a name"]))
    assert issue is not None and issue.code == "bad_args"


def test_released_tool_reads_both_encodings() -> None:
    text = json.dumps(tool(depend=["a", "b"]))
    assert released_tool(json.dumps(text)) == released_tool(text) == tool(depend=["a", "b"])
    assert released_tool('"not json') is None
    assert released_tool(json.dumps({"name": "x"})) is None


@pytest.mark.slow
def test_official_tool_rows_import_and_export_value_for_value(tmp_path: Path) -> None:
    """The sample's parsable tool rows: imported, exported as Persona Hub text and as OpenAI
    tools, equal value for value to what was released."""
    sample = require_sample()
    db = tmp_path / "h.duckdb"
    invoke("personas", "import", sample, "--db", db)
    con = duckdb.connect(str(db), read_only=True)
    texts = [r[0] for r in con.execute(
        "SELECT synthesized_text FROM persona_texts WHERE description = 'tool development' "
        "ORDER BY row_no").fetchall()]
    con.close()
    tools = [t for t in map(released_tool, texts) if t is not None]
    assert len(texts) == 5000 and len(tools) > 4800
    shapes = {(type(t["input_args"]), type(t["return"]), type(t["depend"])) for t in tools}
    assert {list, dict, str} <= {s[0] for s in shapes} and dict in {s[1] for s in shapes}
    for content in tools:
        exported = TASK.personahub_text(content, "")
        assert json.loads(json.loads(exported)) == content
        function = tool_to_openai_function(content)["function"]
        assert function["name"] == content["function_name"]
        assert set(function["parameters"]["required"]) == set(function["parameters"]["properties"])

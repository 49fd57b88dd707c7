"""Tool specs in the shapes Persona Hub released: JSON-valued input_args, return and depend are
accepted, exported value for value, and turned into OpenAI function-calling tools."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from personahub.agents.tasks.tool_spec import (
    TASK,
    ReleasedToolSpec,
    ToolSpec,
    check_tool_spec,
    released_tool,
    tool_to_openai_function,
)
from pydantic import ValidationError

from tests.cli_helpers import invoke
from tests.official_sample import require_sample

BASE = {"name": "Tide table lookup", "description": "Tide times for a harbour on a date.",
        "function_name": "get_tides"}


def tool(**fields: object) -> dict:
    return {**BASE, "input_args": "harbour, date", "return": "times", "depend": "NOAA API",
            **fields}


def test_emitted_schema_keeps_text_fields_and_released_schema_takes_json_values() -> None:
    shaped = tool(input_args={"harbour": "str"}, depend=["requests"], **{"return": {"a": "b"}})
    with pytest.raises(ValidationError):
        ToolSpec.model_validate(shaped)  # what models are asked for stays text
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

import json

import pytest

from personahub.models.prompt_schema import find_prompt_schema, render_schema_block, schema_in_text
from personahub.tasks.tool_spec import ToolSpec

SCHEMA = ToolSpec.model_json_schema()


def test_rendered_block_is_found_again_in_system_or_last_user_message():
    block = render_schema_block(SCHEMA)
    assert "JSON schema" in block and "```json" in block
    as_system = [{"role": "system", "content": f"You are helpful.\n{block}"},
                 {"role": "user", "content": "Go"}]
    as_user = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"},
               {"role": "user", "content": f"Task: go.\n\n{block}\nThanks."}]
    assert find_prompt_schema(as_system) == SCHEMA
    assert find_prompt_schema(as_user) == SCHEMA


def test_render_refuses_an_intro_without_the_marker():
    with pytest.raises(ValueError):
        render_schema_block(SCHEMA, intro="Answer in JSON:")


@pytest.mark.parametrize("text", [
    # untagged fence, other casing of the marker, compact JSON
    "Use this json_schema.\n```\n" + json.dumps(SCHEMA) + "\n```",
    # text around the JSON inside the fence
    "JSON-Schema below\n```JSON\nschema: " + json.dumps(SCHEMA) + " (end)\n```",
    # no fence at all: the first object after the marker line
    "Reply per this JSON schema: " + json.dumps(SCHEMA) + "\nNothing else.",
    # wrapped as a json_schema response format, or its inner part
    "JSON schema:\n```json\n" + json.dumps({"name": "ToolSpec", "schema": SCHEMA}) + "\n```",
    "JSON schema:\n```json\n" + json.dumps({"type": "json_schema", "json_schema": {
        "name": "ToolSpec", "schema": SCHEMA}}) + "\n```",
])
def test_tolerant_reading(text):
    assert schema_in_text(text) == SCHEMA


def test_a_fence_after_the_marker_wins_over_an_example_before_it():
    example = {"type": "object", "properties": {"x": {"type": "integer"}}}
    text = ("Example:\n```json\n" + json.dumps(example) + "\n```\nNow the JSON schema:\n```json\n"
            + json.dumps(SCHEMA) + "\n```")
    assert schema_in_text(text) == SCHEMA


def test_objects_that_are_not_schemas_are_skipped():
    assert schema_in_text('JSON schema: {"name": "Ada", "age": 3}') is None
    assert schema_in_text("no braces at all") is None
    assert schema_in_text('```json\n{"a": 1}\n```') is None


def test_search_order_and_content_parts():
    other = {"type": "object", "properties": {"y": {"type": "string"}}}
    messages = [
        {"role": "system", "content": render_schema_block(other)},
        {"role": "user", "content": [{"type": "text", "text": "Task"},
                                     {"type": "text", "text": render_schema_block(SCHEMA)}]},
    ]
    assert find_prompt_schema(messages) == SCHEMA  # the last user message comes first
    assert find_prompt_schema(messages[:1]) == other
    assert find_prompt_schema([{"role": "user", "content": "plain"}]) is None

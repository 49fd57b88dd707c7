import json

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from personahub.models.offline import OFFLINE_MODEL_NAME, OfflineChatModel, OfflineEngine
from personahub.tasks.tool_spec import ToolSpec


def prompt(persona: str, task: str = "Write something.") -> list[dict[str, str]]:
    return [{"role": "system", "content": "Stay in character."},
            {"role": "user", "content": f"## Persona\n{persona}\n## Task\n{task}"}]


class Nested(BaseModel):
    """Exercise every JSON schema construct the filler handles."""

    title: str
    count: int = Field(ge=3, le=5)
    score: float = Field(ge=0, le=1)
    flag: bool
    mood: str = Field(json_schema_extra={"enum": ["calm", "tense"]})
    tags: list[str] = Field(min_length=2, max_length=2)
    tool: ToolSpec
    maybe: str | None = None


def test_same_seed_and_messages_give_the_same_answer():
    schema = ToolSpec.model_json_schema()
    a = OfflineEngine(3).respond(prompt("A beekeeper in Wales"), json_schema=schema)
    b = OfflineEngine(3).respond(prompt("A beekeeper in Wales"), json_schema=schema)
    assert a == b


def test_seed_and_persona_change_the_answer():
    schema = ToolSpec.model_json_schema()
    base = OfflineEngine(3).respond(prompt("A beekeeper in Wales who sells honey"), json_schema=schema)
    other_seed = OfflineEngine(4).respond(prompt("A beekeeper in Wales who sells honey"),
                                          json_schema=schema)
    other_persona = OfflineEngine(3).respond(prompt("A tram driver in Lisbon who paints tiles"),
                                             json_schema=schema)
    assert base.content != other_seed.content
    assert base.content != other_persona.content
    # the persona's own words steer the text
    assert any(w in other_persona.content.lower() for w in ("tram", "lisbon", "tiles", "driver"))


def test_fills_any_schema_within_its_constraints():
    reply = OfflineEngine(1).respond(prompt("A chess coach"), json_schema=Nested.model_json_schema())
    value = Nested.model_validate_json(reply.content)
    assert 3 <= value.count <= 5 and 0 <= value.score <= 1
    assert value.mood in ("calm", "tense") and len(value.tags) == 2
    assert value.tool.function_name.isidentifier()
    assert reply.tokens_in > 0 and reply.tokens_out > 0


def test_chat_model_answers_structured_output_and_tool_calls():
    model = OfflineChatModel(seed=5)
    messages = [SystemMessage("x"), HumanMessage("## Persona\nA ferry pilot\n## Task\nA tool.")]
    via_tools = model.with_structured_output(ToolSpec).invoke(messages)
    assert isinstance(via_tools, ToolSpec) and via_tools.function_name.isidentifier()
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "ToolSpec", "schema": ToolSpec.model_json_schema()}}
    message = model.bind(response_format=response_format).invoke(messages)
    assert ToolSpec.model_validate(json.loads(message.content))
    assert message.response_metadata["model_name"] == OFFLINE_MODEL_NAME == "offline"
    assert message.usage_metadata["input_tokens"] > 0
    plain = model.invoke(messages)
    assert isinstance(plain.content, str) and plain.content


def test_text_to_persona_prompts_give_personas_about_the_text():
    schema = {"type": "object", "properties": {"persona": {"type": "string"}}}
    text = "A practical guide to repairing vintage mechanical watches: escapement, jewels, balance."
    messages = [{"role": "user",
                 "content": f"## Text\n{text}\n## Task\nWho is likely to read the text above?"}]
    persona = json.loads(OfflineEngine(2).respond(messages, json_schema=schema).content)["persona"]
    assert "someone known for" not in persona
    assert any(w in persona.lower() for w in ("watches", "escapement", "jewels", "vintage",
                                              "mechanical", "repairing", "balance", "practical"))

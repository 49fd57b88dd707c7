"""Golden data for the offline engine: every answer must stay byte-identical.

A few thousand varied requests are built deterministically (personas, emission kinds, synthesis
tasks, surveys, tool calls, plain text, raw JSON schemas, several seeds) and answered through
each entry point the project uses: ``OfflineEngine.respond``, ``OfflineChatModel`` (seam and
LangChain paths), ``LLMClient.structured`` (both structured methods, with repair), the agent
graph and the loopback server's completion body. Each section's answers are checked in, one JSON
row a line, as ``tests/golden/offline_<section>.jsonl`` and compared row by row: an optimisation
that changes any content, tool call or token count fails here, showing the rows that moved.

The golden files were written with the engine as it was before any speed work (each file's
SHA-256 is the digest this test used to pin); if a change to the engine's *behaviour* is intended,
rewrite them with ``python tests/agents/test_offline_golden.py`` and review the diff.
Agent and survey prompts come from frozen templates (``tests/_golden_prompts.py``), except in the
agent-graph section, which builds today's prompts (``agents/prompts/agent.py``, default prompt budget):
it pins prompt construction as well, and moves when the prompts change on purpose.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from personahub.agents.persona_agent import run_agents
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.fake_server.server import _completion
from personahub.models.offline import (
    OfflineChatModel,
    OfflineEngine,
    response_format_schema,
    to_openai_dicts,
)
from personahub.personas.expand import related_personas_schema
from personahub.personas.text_to_persona import text_personas_schema
from personahub.pipelines.prompts.personas import expand_messages
from personahub.pipelines.prompts.personas import text_to_persona_messages as corpus_text_messages
from personahub.pipelines.prompts.synthesis import (
    solve_messages,
    synthesis_messages,
    text_to_persona_messages,
    world_for_prompt,
)
from personahub.tasks import addressed_kinds, emission_task
from personahub.tasks.survey import survey_schema
from personahub.tasks.synthesis_schemas import SYNTH_SCHEMAS, InferredPersona, Solution, schema_for
from tests._golden_prompts import agent_messages, survey_messages

#: the built-in emission kinds in the order the frozen golden data draws them by position
GOLDEN_KINDS = ("instruction", "npc_dialogue", "tool_spec", "conversation", "math_problem",
                "reasoning_problem", "knowledge_text")
EMISSION_SCHEMAS = {kind: emission_task(kind).schema for kind in GOLDEN_KINDS}
ADDRESSED_KINDS = addressed_kinds()

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

SEEDS = (0, 1, 7, 12345)
ROLES = ("nurse", "ferry pilot", "tax accountant", "beekeeper", "data engineer", "midwife",
         "court interpreter", "night-shift guard", "sourdough baker", "river ecologist")
PLACES = ("Lisbon", "São Paulo", "Tromsø", "Cork", "Pune", "O'Fallon", "Hobart", "Ulm")
TRAITS = ("patient", "blunt", "naïve", "meticulous", "well-read", "restless", "shy")
HOBBIES = ("chess", "birdwatching", "film photography", "rowing", "jazz", "knitting",
           "open-source robotics", "pottery", "astronomy", "cycling")
WORLDS = (
    "",
    "A river town with a ferry, a market and a library.",
    world_for_prompt("# Eldermoor\nA misty fen village.\n## Factions\nThe Reed Guild trades eels."),
    "A port city.\n### Harbour\nCranes, customs sheds and a strike looming.\n### Old town\nCafés.",
    "Tech park outskirts where remote developers share co-working space, 2024 housing squeeze.",
)
EVENTS = ("The ferry fare doubled overnight.", "A flood warning was issued for the lower bank.",
          "The library extends its opening hours.", "Council votes on a new bike lane.",
          "A heatwave is forecast for the weekend.", "The market moves to the old mill site.")
LINES = ("Have you seen the new fares?", "I'm worried about the flood barrier.",
         "Let's meet at the library on Tuesday.", "Nobody asked us about the bike lane!",
         "Zoë says the mill site floods.", "ok")


class Tagged(BaseModel):
    """A test schema whose pattern the offline engine never meets (forces repair, then failure)."""

    code: str = Field(pattern=r"^\d{6}$")


class Shaped(BaseModel):
    """Every construct the schema filler handles, through pydantic."""

    title: str = Field(max_length=20)
    count: int = Field(ge=3, le=5)
    score: float = Field(ge=0, le=1)
    flag: bool
    mood: str = Field(json_schema_extra={"enum": ["calm", "tense"]})
    tags: list[str] = Field(min_length=2, max_length=4)
    maybe: str | None = None
    nested: Solution
    items: list[Solution] = Field(default_factory=list)


RAW_SCHEMAS: tuple[dict[str, Any], ...] = (
    {"type": "object", "properties": {"text": {"type": "string"}}},
    {"type": "object", "properties": {"kind": {"const": "fixed"}, "n": {"type": "integer"},
                                      "x": {"type": "number", "minimum": -2, "maximum": 2},
                                      "ok": {"type": "boolean"}}},
    {"properties": {"summary": {}, "reason": {"type": ["null", "string"]},
                    "steps": {"type": "array", "minItems": 0, "maxItems": 9}}},
    {"type": "object", "properties": {"pick": {"allOf": [{"$ref": "#/$defs/P"}]},
                                      "alt": {"oneOf": [{"type": "null"}, {"type": "integer"}]}},
     "$defs": {"P": {"type": "object", "properties": {"relation": {"type": "string"},
                                                      "persona": {"type": "string"}}}}},
    {"type": "object", "properties": {"function_name": {"type": "string"},
                                      "input_args": {"type": "string"},
                                      "returns": {"type": "string"},
                                      "dependencies": {"type": "string", "maxLength": 12},
                                      "answer": {"type": "string"}, "user_turn": {"type": "string"},
                                      "assistant_reply": {"type": "string"},
                                      "say": {"type": "string"}, "label": {"type": "string"},
                                      "puzzle": {"type": "string"}, "reasoning": {"type": "string"},
                                      "anything_else": {"type": "string"}}},
)


def persona(rng: random.Random, i: int) -> str:
    """One varied persona sentence (unicode, apostrophes, hyphens, numbers)."""
    return (f"A {rng.choice(TRAITS)} {rng.choice(ROLES)} from {rng.choice(PLACES)}, aged "
            f"{rng.randint(19, 80)}, who spends weekends on {rng.choice(HOBBIES)} and "
            f"{rng.choice(HOBBIES)} (resident no. {i}).")


def agent_prompt(rng: random.Random, i: int, kind: str) -> list[BaseMessage]:
    """An agent action prompt with a random mix of world, events, inbox, memory and addressee."""
    people = [persona(rng, i * 10 + j) for j in range(3)]
    return agent_messages(
        persona=people[0], kind=kind, world=rng.choice(WORLDS),
        events=rng.sample(EVENTS, rng.randint(0, 3)),
        inbox=[(rng.choice(people[1:]), rng.choice(LINES)) for _ in range(rng.randint(0, 3))],
        addressee=people[1] if kind in ADDRESSED_KINDS or rng.random() < 0.2 else None,
        memory=rng.sample(["Earlier, things about: ferry, fares, flood",
                           "(step 1) The library extends its opening hours."], rng.randint(0, 2)),
        recent=rng.sample(list(LINES), rng.randint(0, 2)),
    )


def survey_prompt(rng: random.Random, i: int) -> tuple[type[BaseModel], list[BaseMessage]]:
    """A survey question of a random answer type, with its schema."""
    answer = rng.choice(("choice", "scale", "text"))
    schema = survey_schema(answer, ("yes", "no", "unsure") if answer == "choice" else ())
    messages = survey_messages(persona=persona(rng, i), question="Should the ferry be free?",
                               answer_hint=answer, world=rng.choice(WORLDS),
                               events=rng.sample(EVENTS, rng.randint(0, 2)),
                               inbox=[("A neighbour", rng.choice(LINES))] if rng.random() < .5 else (),
                               memory=["(step 2) A flood warning."] if rng.random() < .5 else ())
    return schema, messages


def synthesis_prompt(rng: random.Random, i: int) -> tuple[type[BaseModel], list[BaseMessage]]:
    """A synthesis, solve, text-to-persona or expansion request, with its schema."""
    choice = rng.randrange(len(SYNTH_SCHEMAS) + 4)
    tasks = list(SYNTH_SCHEMAS)
    if choice < len(tasks):
        task = tasks[choice]
        assistant = task == "multi_turn" and rng.random() < 0.5
        mode = rng.choice(("zero-shot", "few-shot", "persona-few-shot"))
        examples = [(rng.choice(LINES), rng.choice((None, persona(rng, i + 1)))) for _ in range(2)]
        return schema_for(task, with_assistant=assistant), synthesis_messages(
            task, persona(rng, i), mode=mode, examples=examples, world=rng.choice(WORLDS),
            with_assistant=assistant)
    choice -= len(tasks)
    if choice == 0:
        return Solution, solve_messages(f"How many ferries cross in {rng.randint(2, 9)} hours?")
    if choice == 1:
        return InferredPersona, text_to_persona_messages(rng.choice(WORLDS) or rng.choice(EVENTS))
    if choice == 2:
        relation = rng.choice(("read", "write", "like", "dislike"))
        count = rng.randint(1, 3)
        return text_personas_schema(count), corpus_text_messages(rng.choice(EVENTS), relation, count)
    count = rng.randint(1, 4)
    return related_personas_schema(count), expand_messages(persona(rng, i), count)


def structured_requests(n: int, seed: int) -> Iterator[tuple[type[BaseModel], list[BaseMessage]]]:
    """``n`` (schema, messages) pairs over emission kinds, surveys and synthesis tasks."""
    rng = random.Random(seed)
    kinds = list(EMISSION_SCHEMAS)
    for i in range(n):
        roll = rng.random()
        if roll < 0.55:
            kind = rng.choice(kinds)
            yield EMISSION_SCHEMAS[kind], agent_prompt(rng, i, kind)
        elif roll < 0.7:
            yield survey_prompt(rng, i)
        else:
            yield synthesis_prompt(rng, i)


def odd_messages(rng: random.Random, i: int) -> list[dict[str, Any]]:
    """Plain dict messages of unusual shapes: list parts, None content, assistant and tool turns."""
    text = f"## Persona\n{persona(rng, i)}\n## Heard\n{rng.choice(LINES)}\n## Task\nReply."
    shapes = [
        [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url"}]}],
        [{"role": "system", "content": None}, {"role": "user", "content": text}],
        [{"role": "user", "content": text}, {"role": "assistant", "content": '{"a": 1}'},
         {"role": "user", "content": "That answer is not valid. Reply again."}],
        [{"role": "system", "content": "## Setting\nA fen.\n## You\nA reed cutter."},
         {"role": "tool", "content": "42"}, {"content": "no role at all ## Events\n- rain"}],
        [{"role": "user", "content": ""}],
    ]
    return shapes[i % len(shapes)]


def tools_for(rng: random.Random) -> tuple[list[dict[str, Any]], Any]:
    """A tool list (OpenAI shape or bare function specs) and a tool_choice."""
    schemas = rng.sample([*EMISSION_SCHEMAS.values(), Solution, Shaped], rng.randint(1, 3))
    tools = [convert_to_openai_tool(s) for s in schemas]
    if rng.random() < 0.2:
        tools = [t["function"] for t in tools]
    last = tools[-1].get("function", tools[-1])["name"]
    choice = rng.choice((None, "auto", "required", last, {"type": "function", "function": {"name": last}},
                         {"name": "missing"}))
    return tools, choice


def row_line(row: Any) -> str:
    """One row as its golden line: JSON, key order kept (so it counts too), non-ASCII as is."""
    return json.dumps(row, ensure_ascii=False, default=repr)


def golden_path(section: str) -> Path:
    return GOLDEN / f"offline_{section}.jsonl"


def write_golden(section: str) -> None:
    lines = [row_line(row) for row in SECTIONS[section]()]
    golden_path(section).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def row_diff(index: int, want: str, got: str) -> str:
    """A readable unified diff of one row, each side pretty-printed."""
    def pretty(line: str) -> list[str]:
        return json.dumps(json.loads(line), ensure_ascii=False, indent=1).splitlines()

    return "\n".join(difflib.unified_diff(pretty(want), pretty(got), f"golden row {index}",
                                           f"answer row {index}", lineterm=""))


def reply_row(reply: Any) -> list[Any]:
    return [reply.content, reply.tool_calls, reply.tokens_in, reply.tokens_out]


def engine_rows() -> Iterator[Any]:
    """OfflineEngine.respond over structured, tool, plain, raw-schema and odd-message requests."""
    rng = random.Random(11)
    requests = list(structured_requests(1600, seed=1))
    requests += requests[:100]  # repeats: answers must not depend on what was asked before
    for i, (schema, messages) in enumerate(requests):
        seed = SEEDS[i % len(SEEDS)]
        dicts = to_openai_dicts(messages)
        yield reply_row(OfflineEngine(seed).respond(dicts, json_schema=schema.model_json_schema()))
        if i % 4 == 0:
            tools, choice = tools_for(rng)
            yield reply_row(OfflineEngine(seed).respond(dicts, tools=tools, tool_choice=choice))
        if i % 5 == 0:
            yield reply_row(OfflineEngine(seed).respond(dicts))
    for i in range(300):
        messages = odd_messages(rng, i)
        schema = RAW_SCHEMAS[i % len(RAW_SCHEMAS)]
        yield reply_row(OfflineEngine(SEEDS[i % 4]).respond(messages, json_schema=schema))
        yield reply_row(OfflineEngine(SEEDS[i % 4]).respond(messages, json_schema=Shaped.model_json_schema()))
        yield reply_row(OfflineEngine(SEEDS[i % 4]).respond(messages))
    # the same schema object, changed in place between calls, must be read afresh each time
    mutable: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}}
    messages = [{"role": "user", "content": "## Persona\nA welder in Graz."}]
    for extra in ("reason", "line", "count", "title"):
        yield reply_row(OfflineEngine(3).respond(messages, json_schema=mutable))
        mutable["properties"][extra] = {"type": "integer" if extra == "count" else "string"}
    tools = [convert_to_openai_tool(Solution)]
    for extra in ("steps", "answer"):
        yield reply_row(OfflineEngine(3).respond(messages, tools=tools))
        tools[0]["function"]["parameters"]["properties"][extra] = {"type": "boolean"}


def message_row(message: Any) -> list[Any]:
    return [message.content, message.tool_calls, message.usage_metadata, message.response_metadata]


def response_formats(schema: type[BaseModel], i: int) -> Any:
    """The ways a response_format reaches the chat model: class, json_schema, json_object, none."""
    options = (
        {"type": "json_schema", "json_schema": {"name": schema.__name__,
                                                "schema": schema.model_json_schema()}},
        schema,
        {"type": "json_object"},
        None,
        {"type": "text"},
    )
    return options[i % len(options)]


def chat_model_rows() -> Iterator[Any]:
    """OfflineChatModel through _answer, answer_async, invoke and with_structured_output."""
    rng = random.Random(5)
    for i, (schema, messages) in enumerate(structured_requests(700, seed=2)):
        model = OfflineChatModel(seed=SEEDS[i % len(SEEDS)])
        kwargs: dict[str, Any] = {"response_format": response_formats(schema, i)}
        if i % 6 == 0:
            kwargs["tools"], kwargs["tool_choice"] = tools_for(rng)
        yield message_row(model._answer(messages, **kwargs).generations[0].message)
        if i % 3 == 0:
            yield message_row(asyncio.run(model.answer_async(messages, **kwargs)))
        if i % 25 == 0:
            yield message_row(model.bind(**kwargs).invoke(messages))
            yield model.with_structured_output(schema).invoke(messages).model_dump_json()
    extra = [HumanMessage("## Persona\nA chess coach."), AIMessage('{"x": 1}'),
             ToolMessage("done", tool_call_id="call_1"), SystemMessage("## World\nA fen.")]
    for seed in SEEDS:
        yield message_row(OfflineChatModel(seed=seed)._answer(extra).generations[0].message)


def result_row(result: Any) -> list[Any]:
    value = None if result.value is None else result.value.model_dump_json(by_alias=True)
    records = [[r.purpose, r.model, r.attempt, r.status, r.tokens_in, r.tokens_out, r.error,
                r.persona_id, r.step, r.cached, r.endpoint] for r in result.records]
    return [value, result.raw, records]


async def client_results() -> list[Any]:
    """LLMClient.structured for both structured methods, several seeds, and a failing schema."""
    rows = []
    clients = {(seed, method): LLMClient(LLMSettings(spec="offline", seed=seed, structured=method))
               for seed in SEEDS for method in ("json_schema", "tools")}
    keys = list(clients)
    calls = []
    for i, (schema, messages) in enumerate(structured_requests(900, seed=3)):
        client = clients[keys[i % len(keys)]]
        chosen = Tagged if i % 40 == 0 else schema
        calls.append(client.structured(chosen, messages, purpose=f"p{i % 3}", persona_id=f"id{i}",
                                       step=i % 4))
    for result in await asyncio.gather(*calls):
        rows.append(result_row(result))
    return rows


def client_rows() -> Iterator[Any]:
    yield from asyncio.run(client_results())


def agents_rows() -> Iterator[Any]:
    """The agent graph (observe, act, record) over varied agent inputs."""
    rng = random.Random(9)
    kinds = list(EMISSION_SCHEMAS)
    agents = []
    for i in range(400):
        kind = kinds[i % len(kinds)]
        people = [persona(rng, i * 10 + j) for j in range(3)]
        agents.append({"persona_id": f"p{i}", "persona": people[0], "step": i % 3, "kind": kind,
                       "world": rng.choice(WORLDS), "events": rng.sample(EVENTS, rng.randint(0, 2)),
                       "inbox": [(people[1], rng.choice(LINES))] if i % 2 else [],
                       "addressee": people[2] if kind in ADDRESSED_KINDS else None,
                       "memory": ["(step 1) rain"] if i % 3 else [], "recent": []})
    for seed in (1, 2):
        client = LLMClient(LLMSettings(spec="offline", seed=seed))
        outcomes = asyncio.run(run_agents(agents, client, chunk_size=64))
        for outcome in outcomes:
            yield [outcome.output, outcome.text, outcome.error]


def server_rows() -> Iterator[Any]:
    """The loopback server's completion bodies (id and timestamp left out)."""
    rng = random.Random(4)
    engine = OfflineEngine(6)
    for i, (schema, messages) in enumerate(structured_requests(300, seed=4)):
        request: dict[str, Any] = {"model": "m", "messages": to_openai_dicts(messages)}
        fmt = response_formats(schema, i)
        if isinstance(fmt, type):
            fmt = {"type": "json_schema", "json_schema": {"schema": fmt.model_json_schema()}}
        if fmt is not None:
            request["response_format"] = fmt
        if i % 4 == 1:
            request["tools"], request["tool_choice"] = tools_for(rng)
        body = _completion(engine, request, malformed=i % 7 == 0)
        yield [body["choices"], body["usage"], body["model"]]
    yield response_format_schema(Shaped)


SECTIONS: dict[str, Callable[[], Iterator[Any]]] = {
    "engine": engine_rows,
    "chat_model": chat_model_rows,
    "client": client_rows,
    "agents": agents_rows,
    "server": server_rows,
}


# the engine and chat-model sections are the longest (seconds each); the other sections go through
# the same offline engine in the fast subset, and CI's slow step runs these two
SLOW_SECTIONS = {"engine", "chat_model"}


@pytest.mark.parametrize("section", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_SECTIONS else s
                                     for s in SECTIONS])
def test_offline_answers_are_byte_identical_to_the_golden_data(section: str) -> None:
    # split on newlines only: the answers may hold other line separators (U+2028, NEL)
    want = golden_path(section).read_text(encoding="utf-8").split("\n")[:-1]
    got = [row_line(row) for row in SECTIONS[section]()]
    moved = [i for i, (w, g) in enumerate(zip(want, got, strict=False)) if w != g]
    shown = "\n".join(row_diff(i, want[i], got[i]) for i in moved[:3])
    assert not moved, f"{len(moved)} of {len(want)} {section} rows differ; the first:\n{shown}"
    assert len(got) == len(want), f"{section}: {len(got)} rows answered, {len(want)} golden"


if __name__ == "__main__":  # rewrite the golden files (only when behaviour is meant to change)
    for name in SECTIONS:
        write_golden(name)
        print(golden_path(name))

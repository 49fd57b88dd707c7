"""The ``runaway`` fault of ``personahub serve`` (an answer's last string repeats until
max_tokens unless the schema bounds it) and schema-keyword negotiation per endpoint (a server
that refuses ``maxLength``: the keyword is stripped, recorded, and the run goes on)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import duckdb
import httpx
import pytest
from langchain_core.messages import HumanMessage
from typer.testing import CliRunner

from personahub.cli.app import app
from personahub.core.contracts import CallRequest
from personahub.models.bounds import bounded, estimate_tokens
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.fake_server.server import ServerOptions, running_server
from personahub.models.repair import check_answer
from personahub.models.structured import (
    mode_of,
    refused_keywords,
    sent_mode,
    strip_keywords,
    stripped_of,
)
from personahub.tasks.max_tokens import synthesis_max_tokens
from personahub.tasks.tool_spec import ToolSpec
from tests.synth_helpers import run_default_scenario

USER = {"role": "user", "content": "## Persona\nA harbour master in Cork\n## Task\nGo"}
BUDGET = 400


def _ask(url: str, schema: dict, *, tools: bool = False) -> dict:
    body: dict = {"model": "m", "messages": [USER], "max_tokens": BUDGET}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": "ToolSpec", "parameters": schema}}]
        body["tool_choice"] = {"type": "function", "function": {"name": "ToolSpec"}}
    else:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "ToolSpec", "schema": schema}}
    response = httpx.post(f"{url}/chat/completions", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _text(answer: dict) -> str:
    message = answer["choices"][0]["message"]
    calls = message.get("tool_calls")
    return calls[0]["function"]["arguments"] if calls else message["content"]


@pytest.mark.parametrize("tools", [False, True])
def test_runaway_runs_to_max_tokens_unless_the_schema_bounds_the_string(server, tools) -> None:
    srv = server(runaway_rate=1.0)
    loose = _ask(srv.base_url, ToolSpec.model_json_schema(), tools=tools)
    assert loose["choices"][0]["finish_reason"] == "length"
    assert loose["usage"]["completion_tokens"] == BUDGET
    with pytest.raises(json.JSONDecodeError):
        json.loads(_text(loose))  # cut inside the repeating string: the JSON never closed
    schema = bounded(ToolSpec, BUDGET)
    tight = _ask(srv.base_url, schema.model_json_schema(), tools=tools)
    assert tight["choices"][0]["finish_reason"] in ("stop", "tool_calls")
    value = json.loads(_text(tight))
    limit = schema.model_json_schema()["properties"]["depend"]["items"]["maxLength"]
    assert len(value["depend"][-1]) == limit  # the last string ran to its bound, then closed
    assert schema.model_validate(value)
    assert tight["usage"]["completion_tokens"] == estimate_tokens(value) <= BUDGET
    assert srv.stats.runaways == 2 and srv.stats.truncated == 1


def test_through_the_client_seam_unbounded_is_cut_and_bounded_is_kept() -> None:
    messages = [HumanMessage("A harbour master in Cork")]
    with running_server(ServerOptions(runaway_rate=1.0)) as srv:
        client = LLMClient(LLMSettings(spec=f"{srv.base_url}?model=m", structured="json_schema"))
        loose = asyncio.run(client.uncached.call(
            CallRequest(ToolSpec, messages, "synth:tool", BUDGET)))  # the schema as it was
        kept = asyncio.run(client.structured(ToolSpec, messages, purpose="synth:tool",
                                             max_tokens=synthesis_max_tokens("tool")))
    assert loose.truncated and check_answer(ToolSpec, loose.raw or "", truncated=True).value is None
    assert kept.value is not None and kept.last.status == "ok" and kept.last.finish_reason == "stop"


def _synthesize(db: Path, url: str, task: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["synthesize", task, "--n", "4", "--db", str(db),
                                      "--llm", f"{url}?model=m"])
    return result.exit_code, result.output


@pytest.mark.parametrize("task", ["tool_spec", "multi_turn", "knowledge_text", "npc"])
@pytest.mark.slow
def test_synthesize_against_a_runaway_server_keeps_every_item(tmp_path: Path, task: str) -> None:
    db = tmp_path / "hub.duckdb"
    run_default_scenario(db, steps=1)
    with running_server(ServerOptions(runaway_rate=1.0)) as srv:
        code, out = _synthesize(db, srv.base_url, task)
        assert code == 0, out
        assert srv.stats.runaways > 0 and srv.stats.truncated == 0
    con = duckdb.connect(str(db), read_only=True)
    statuses = con.execute("SELECT status, finish_reason FROM llm_calls "
                           "WHERE purpose LIKE 'synth:%'").fetchall()
    items = con.execute("SELECT count(*) FROM synth_items").fetchone()[0]
    con.close()
    assert items == 4 and statuses and all(s == ("ok", "stop") for s in statuses)


def test_run_against_a_runaway_server_runs_to_its_end(scenario_file, tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    with running_server(ServerOptions(runaway_rate=1.0)) as srv:
        result = CliRunner().invoke(app, ["run", str(scenario_file(n_personas=6, steps=2)),
                                          "--db", str(db), "--llm", f"{srv.base_url}?model=m"])
        assert result.exit_code == 0, result.output
        assert srv.stats.runaways > 0 and srv.stats.truncated == 0


# -- keyword negotiation ---------------------------------------------------------------------

def test_refused_keywords_are_read_from_quoted_names_only() -> None:
    openai_words = ("Invalid schema for response_format 'ToolSpec': In context=('properties', "
                    "'name'), 'maxLength' is not permitted.")
    assert refused_keywords(400, openai_words) == {"maxLength"}
    assert refused_keywords(400, "the response_format is not supported") == frozenset()
    assert refused_keywords(429, openai_words) == frozenset()  # not a refusal of the request
    recorded = sent_mode("json_schema", frozenset({"maxLength", "default"}))
    assert recorded == "json_schema without default, maxLength"
    assert mode_of(recorded) == "json_schema" and stripped_of(recorded) == {"maxLength", "default"}
    assert sent_mode("tools", frozenset()) == "tools" and stripped_of("tools") == frozenset()


def test_stripping_keeps_property_names_and_says_the_bound_in_words() -> None:
    schema = {"type": "object", "properties": {
        "format": {"type": "string", "maxLength": 40, "description": "the file format"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 9}, "maxItems": 3}},
        "$defs": {"X": {"type": "string", "default": "", "maxLength": 5}}}
    out = strip_keywords(schema, frozenset({"maxLength", "maxItems", "default", "format"}))
    assert set(out["properties"]) == {"format", "tags"}  # a property called "format" stays
    assert out["properties"]["format"] == {"type": "string",
                                           "description": "the file format (at most 40 characters)"}
    assert out["properties"]["tags"]["description"] == "at most 3 items"
    assert "maxLength" not in json.dumps(out) and "default" not in json.dumps(out)


def test_openai_strict_run_strips_refused_keywords_records_them_and_completes(
        scenario_file, tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    with running_server(ServerOptions(dialect="openai-strict")) as srv:
        result = CliRunner().invoke(app, ["run", str(scenario_file(n_personas=6, steps=2)),
                                          "--db", str(db), "--llm", f"{srv.base_url}?model=m"])
        assert result.exit_code == 0, result.output
        refused = srv.stats.refused
    con = duckdb.connect(str(db), read_only=True)
    calls = con.execute("SELECT status, error, structured_mode FROM llm_calls").fetchall()
    config = json.loads(con.execute("SELECT config FROM runs JOIN jobs ON job_id = run_id").fetchone()[0])
    con.close()
    errors = [c for c in calls if c[0] == "error"]
    assert errors and len(errors) == refused  # each refusal is a row saying what was refused
    assert all("refused (stripped for this endpoint)" in c[1] for c in errors)
    ok = [c for c in calls if c[0] == "ok"]
    assert len(ok) / len(calls) > 0.8
    assert all(mode_of(c[2]) == "json_schema" and "maxLength" in stripped_of(c[2]) for c in ok)
    (recorded,) = config["structured_modes"].values()
    assert mode_of(recorded) == "json_schema" and {"maxLength", "minLength"} <= stripped_of(recorded)

"""Prefix-cache reuse, measured: what the server reports lands in ``llm_calls.cached_prompt_tokens``
and the run summary shows it next to the client's estimate of the shared prefix."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import httpx
import pytest
from langchain_core.messages import AIMessage
from typer.testing import CliRunner

from personahub.api import run_simulation
from personahub.cli.app import app
from personahub.core.call_log import prefix_reused
from personahub.models.attempts import cached_prompt_tokens
from personahub.models.fake_server.server import PREFIX_CACHE_PROMPTS
from personahub.models.prompt_prefix import PrefixWindow, SharedPrefixMeter
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario


def test_the_window_finds_the_longest_prefix_among_recent_prompts_and_forgets_the_oldest() -> None:
    window = PrefixWindow(capacity=2)
    assert window.match("world A: alice") == 0
    assert window.match("world B: bob") == len("world ")
    # "world A: al" is shared with the first prompt, longer than with the second
    assert window.match("world A: alan") == len("world A: al")
    # the first prompt ("world A: alice") is forgotten; "world A: alan" is remembered
    assert window.match("world A: alice") == len("world A: al")
    unbounded = PrefixWindow()
    for text in ("x1", "y2", "z3", "x1"):
        shared = unbounded.match(text)
    assert shared == 2


def test_the_meter_counts_shared_tokens_against_all_tokens() -> None:
    meter = SharedPrefixMeter(capacity=8)
    meter.add_text("a" * 400)
    assert meter.add_text("a" * 400 + "b" * 400) == 100  # 400 shared characters, 4 a token
    assert meter.total_tokens == 300 and meter.share == pytest.approx(100 / 300)


def test_cached_tokens_read_from_the_answer_none_when_the_server_says_nothing() -> None:
    reported = AIMessage("{}", usage_metadata={
        "input_tokens": 50, "output_tokens": 5, "total_tokens": 55,
        "input_token_details": {"cache_read": 0}})
    assert cached_prompt_tokens(reported) == 0
    silent = AIMessage("{}", usage_metadata={"input_tokens": 50, "output_tokens": 5,
                                             "total_tokens": 55})
    assert cached_prompt_tokens(silent) is None
    assert cached_prompt_tokens(AIMessage("{}")) is None


def _ask(base_url: str, content: str) -> dict:
    body = {"model": "m", "max_tokens": 64,
            "messages": [{"role": "system", "content": "Answer in JSON."},
                         {"role": "user", "content": content}]}
    response = httpx.post(f"{base_url}/chat/completions", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["usage"]


@pytest.mark.slow
def test_the_loopback_server_reports_the_prefix_it_shares_with_recent_prompts(server) -> None:
    srv = server()
    first = _ask(srv.base_url, "World: a river town. Persona: a baker.")
    assert first["prompt_tokens_details"] == {"cached_tokens": 0}
    again = _ask(srv.base_url, "World: a river town. Persona: a baker.")
    # the whole prompt but its last token, as real servers leave one token to compute
    assert again["prompt_tokens_details"]["cached_tokens"] == again["prompt_tokens"] - 1
    shared = "Answer in JSON. World: a river town. Persona: a "
    other = _ask(srv.base_url, "World: a river town. Persona: a ferry pilot.")
    assert other["prompt_tokens_details"]["cached_tokens"] == len(shared) // 4
    # forgotten once PREFIX_CACHE_PROMPTS other prompts came after it: only the system
    # message they all share is reused then
    for i in range(PREFIX_CACHE_PROMPTS):
        _ask(srv.base_url, f"{i} unrelated")
    assert _ask(srv.base_url, "World: a river town. Persona: a ferry pilot.")[
        "prompt_tokens_details"]["cached_tokens"] == len("Answer in JSON. ") // 4


@pytest.mark.parametrize("dialect", ["llama-cpp-python", "ollama"])
def test_dialects_that_report_no_reuse_send_no_details(server, dialect: str) -> None:
    srv = server(dialect=dialect)
    _ask(srv.base_url, "World: a river town.")
    assert "prompt_tokens_details" not in _ask(srv.base_url, "World: a river town.")


def _calls(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT status, tokens_in, cached_prompt_tokens, step FROM llm_calls"
                           ).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_a_run_stores_the_reuse_and_its_summary_shows_it_next_to_the_estimate(
        server, scenario_file, tmp_path: Path) -> None:
    # a cache that holds both runs' prompts whatever order they arrive in (a loaded machine
    # reorders them; the default window of 64 prompts then evicts some before the second run)
    srv = server(prefix_cache_prompts=4096)
    db = tmp_path / "reuse.duckdb"
    path = scenario_file(n_personas=6, steps=2)
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db,
                                       llm=f"{srv.base_url}?model=offline", concurrency=2))
    rows = _calls(db)
    ok = [r for r in rows if r[0] == "ok"]
    assert ok and all(r[2] is not None and 0 <= r[2] < r[1] for r in ok)
    # the world and the shared instructions come first in every agent's prompt: the server
    # reused some of every step's prompts after the first one
    assert sum(r[2] for r in ok) > 0
    cached, prompt = summary.prefix_reused
    assert (cached, prompt) == (sum(r[2] for r in rows if r[2] is not None),
                                sum(r[1] for r in rows if r[2] is not None))
    assert summary.prefix_estimated is not None and 0 < summary.prefix_estimated < 1

    cli_db = tmp_path / "cli.duckdb"
    code = CliRunner().invoke(app, ["run", str(path), "--db", str(cli_db),
                                    "--llm", f"{srv.base_url}?model=offline"],
                              env={"COLUMNS": "250"})
    assert code.exit_code == 0, code.output
    con = duckdb.connect(str(cli_db), read_only=True)
    try:
        run_id = con.execute("SELECT run_id FROM runs").fetchone()[0]
        cached, prompt = prefix_reused(con, run_id)
    finally:
        con.close()
    # the server remembers the first run's prompts: this run's are reused almost whole
    assert cached / prompt > 0.9
    # the summary table's cell, its wrapped lines joined (the console may be narrower than COLUMNS
    # when it was made before this test)
    text = re.sub(r"[│\s]+", " ", code.output)
    cell = text[text.index("prefix cache"):]
    assert f"{cached / prompt:.0%} of prompt tokens reused ({cached:,} of {prompt:,}" in cell, cell
    assert "estimated shared prefix" in cell[:300], cell


def test_a_server_that_reports_nothing_leaves_the_column_null(server, scenario_file,
                                                             tmp_path: Path) -> None:
    srv = server(dialect="llama-cpp-python")
    db = tmp_path / "silent.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_file(n_personas=4, steps=1)), db=db,
                                       llm=f"{srv.base_url}?model=offline"))
    rows = _calls(db)
    assert rows and all(r[2] is None for r in rows)
    assert summary.prefix_reused is None and summary.prefix_estimated is not None


def test_offline_runs_report_no_reuse(scenario_file, tmp_path: Path) -> None:
    db = tmp_path / "offline.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_file(n_personas=4, steps=1)), db=db))
    assert all(r[2] is None for r in _calls(db))
    assert summary.prefix_reused is None and summary.prefix_estimated is None


def test_prefix_order_groups_equal_keys_first_seen_first_and_unorder_restores() -> None:
    from personahub.sim.society import prefix_order, unorder

    keys = [("a",), ("b",), ("a",), (), ("b",), ("a",)]
    order = prefix_order(keys)
    assert order == [0, 2, 5, 1, 4, 3]
    assert unorder([keys[i] for i in order], order) == keys


def _halves(persona_file, tmp_path: Path) -> Path:
    """Eight agents; half of them hear one event, half another (agents interleaved by id)."""
    people = persona_file(8)
    path = tmp_path / "halves.py"
    path.write_text(
        "from personahub.sim.scenario import Audience, Event, GraphGrowth, PersonaSource, Scenario\n"
        f"SCENARIO = Scenario(name='halves', personas=PersonaSource(path={str(people)!r}),\n"
        "    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, seed=7,\n"
        "    world='A river town with a ferry, a market and a school on the west bank.',\n"
        "    events=(Event(step=1, text='Heavy rain is forecast for the east bank; the ferry may '\n"
        "                  'stop running and the market moves indoors to the old grain hall.',\n"
        "                  audience=Audience(where=lambda info: info.agent_id % 2 == 0)),\n"
        "            Event(step=1, text='The west bank school opens its new library on Saturday; '\n"
        "                  'volunteers are asked to bring shelves, paint and books.',\n"
        "                  audience=Audience(where=lambda info: info.agent_id % 2 == 1))))\n")
    return path


def test_a_step_sends_agents_that_heard_the_same_events_together(server, persona_file, tmp_path,
                                                                  monkeypatch) -> None:
    """With a cache of one prompt (one slot, no prompt cache), agents interleaved by what they
    heard lose the events' prefix at every request; grouped, only the first of each group does."""
    import personahub.sim.society as society

    scenario = load_scenario(_halves(persona_file, tmp_path))
    shares = {}
    for grouped in (True, False):
        if not grouped:
            monkeypatch.setattr(society, "prefix_order", lambda keys: list(range(len(keys))))
        srv = server(prefix_cache_prompts=1)
        summary = run_simulation(RunConfig(scenario=scenario, db=tmp_path / f"{grouped}.duckdb",
                                           concurrency=1,
                                                    llm=f"{srv.base_url}?model=offline"))
        cached, prompt = summary.prefix_reused
        shares[grouped] = cached / prompt
        con = duckdb.connect(str(tmp_path / f"{grouped}.duckdb"), read_only=True)
        try:  # the same emissions either way: only the order of the requests changed
            shares[grouped, "emissions"] = con.execute(
                "SELECT persona_id, task, text FROM emissions ORDER BY 1").fetchall()
        finally:
            con.close()
    assert shares[True] > shares[False]
    assert shares[True, "emissions"] == shares[False, "emissions"]


def test_prefix_order_keeps_keys_sharing_their_first_parts_together() -> None:
    from personahub.sim.society import prefix_order

    keys = [("rain", "instruction"), ("sun", "instruction"), ("rain", "tool_spec"),
            ("rain", "instruction"), ("sun", "tool_spec")]
    assert prefix_order(keys) == [0, 3, 2, 1, 4]


@pytest.mark.slow
def test_a_step_sends_the_actions_of_one_kind_together(scenario_file, tmp_path: Path) -> None:
    """Agents that heard the same events act in several kinds: each kind's task follows the events in
    the prompt, so its actions go one after another and a server's cache holds that prefix once."""
    path = scenario_file(n_personas=12, steps=1, graph="GraphGrowth(hops=0, acquaintances=2)",
                         tasks=("instruction", "tool_spec", "knowledge_text"), seed=5)
    db = tmp_path / "kinds.duckdb"
    run_simulation(RunConfig(scenario=load_scenario(path), db=db, concurrency=1))
    con = duckdb.connect(str(db), read_only=True)
    try:
        sent = [r[0] for r in con.execute("SELECT purpose FROM llm_calls WHERE step = 1 "
                                          "ORDER BY started_at").fetchall()]
    finally:
        con.close()
    runs = [kind for i, kind in enumerate(sent) if i == 0 or sent[i - 1] != kind]
    assert len(set(sent)) > 1 and len(runs) == len(set(runs)), sent

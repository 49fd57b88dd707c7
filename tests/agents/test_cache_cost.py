"""Record / replay cache through whole runs, and the cost of a run in SQL."""

import asyncio
import json

import duckdb
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from personahub.analysis.views import install_views, query_files
from personahub.api import run_simulation
from personahub.cli.app import app
from personahub.core.commit import cache_rows_of, records_of
from personahub.core.errors import PersonahubError
from personahub.core.jobs_store import create_job
from personahub.core.store import connect, insert_rows, transaction
from personahub.models.cache import CacheMiss, ResponseCache
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.endpoint_offline import OfflineEndpoint
from personahub.models.offline import OfflineChatModel
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario


def run_content(db, run_id):
    """Everything a run produced, with the run id taken out of ids (a replay is a new run)."""
    con = duckdb.connect(str(db), read_only=True)

    def rows(sql):
        text = json.dumps(con.execute(sql, [run_id]).fetchall(), default=str)
        return json.loads(text.replace(run_id, "RUN"))

    content = {
        "emissions": rows("""SELECT emission_id, step, agent_id, persona_id, task, content, text,
                                    target_persona_id, model, is_duplicate, duplicate_of
                             FROM emissions WHERE run_id = ? ORDER BY emission_id"""),
        "messages": rows("""SELECT message_id, step, sender_id, receiver_id, text, reply_to,
                                   emission_id FROM messages WHERE run_id = ? ORDER BY message_id"""),
        "steps": rows("""SELECT step, n_active, n_emissions, n_messages, n_failed
                         FROM steps WHERE run_id = ? ORDER BY step"""),
        "agents": rows("SELECT agent_id, persona_id FROM run_agents WHERE run_id = ? ORDER BY 1"),
    }
    con.close()
    return content


def calls(db, run_id):
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("""SELECT cached, status, count(*), sum(tokens_in), sum(tokens_out)
                          FROM llm_calls WHERE run_id = ? GROUP BY ALL ORDER BY ALL""",
                       [run_id]).fetchall()
    con.close()
    return rows


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
def test_record_then_replay_over_http_makes_no_request_and_reproduces_every_table(
        server, scenario_file, tmp_path):
    srv = server(error_rate=0.08, malformed_rate=0.1, fault_seed=5)
    db = tmp_path / "cache.duckdb"
    scenario = load_scenario(scenario_file(n_personas=20, steps=3))  # hops=1: expansion too
    spec = f"{srv.base_url}?model=offline"
    common = dict(db=db, llm=spec, concurrency=8, timeout_s=10, max_retries=1)
    recorded = run_simulation(RunConfig(scenario=scenario, **common, cache="record"))
    requests = srv.stats.requests
    assert requests > 0 and srv.stats.errors > 0 and srv.stats.malformed > 0

    replayed = run_simulation(RunConfig(scenario=scenario, **common, cache="replay"))
    assert srv.stats.requests == requests  # not one request reached the server
    assert replayed.run_id != recorded.run_id
    assert run_content(db, replayed.run_id) == run_content(db, recorded.run_id)
    assert replayed.emissions_by_kind == recorded.emissions_by_kind
    assert replayed.failed_actions == recorded.failed_actions

    con = duckdb.connect(str(db), read_only=True)
    for run_id in (recorded.run_id, replayed.run_id):
        assert con.execute("SELECT status FROM runs JOIN jobs ON job_id = run_id WHERE run_id = ?",
                           [run_id]).fetchone()[0] == "finished"
    recorded_answers = con.execute("""SELECT count(*), sum(tokens_in), sum(tokens_out) FROM llm_calls
                                      WHERE run_id = ? AND status <> 'error'""",
                                   [recorded.run_id]).fetchone()
    entries = con.execute("SELECT count(*) FROM llm_cache WHERE response IS NOT NULL").fetchone()[0]
    assert entries == recorded_answers[0]  # one cache entry per answer received (valid or not)
    replay_rows = con.execute("""SELECT bool_and(cached), count(*) FILTER (WHERE status <> 'error'),
                                        sum(tokens_in) FILTER (WHERE status <> 'error'),
                                        sum(tokens_out) FILTER (WHERE status <> 'error'),
                                        count(*) FILTER (WHERE endpoint IS NOT NULL)
                                 FROM llm_calls WHERE run_id = ?""", [replayed.run_id]).fetchone()
    assert replay_rows == (True, *recorded_answers, 0)
    request = json.loads(con.execute("SELECT request FROM llm_cache LIMIT 1").fetchone()[0])
    assert set(request) == {"model", "messages", "schema", "params"}
    assert "127.0.0.1" not in json.dumps(request)
    con.close()


@pytest.mark.slow
def test_replay_offline_counts_zero_engine_calls(scenario_file, tmp_path, monkeypatch):
    db = tmp_path / "offline.duckdb"
    scenario = load_scenario(scenario_file(n_personas=15, steps=2))
    recorded = run_simulation(RunConfig(scenario=scenario, db=db, cache="record"))
    answered = []
    original = OfflineChatModel.answer_async

    async def counting(self, messages, **kwargs):
        answered.append(1)
        return await original(self, messages, **kwargs)

    monkeypatch.setattr(OfflineChatModel, "answer_async", counting)
    replayed = run_simulation(RunConfig(scenario=scenario, db=db, cache="replay"))
    assert answered == []
    assert run_content(db, replayed.run_id) == run_content(db, recorded.run_id)
    assert all(cached for cached, *_ in calls(db, replayed.run_id))
    # a second recording answers every call from the cache too (and still calls nothing)
    again = run_simulation(RunConfig(scenario=scenario, db=db, cache="record"))
    assert answered == [] and all(cached for cached, *_ in calls(db, again.run_id))


def test_replay_miss_is_an_error_naming_the_call(scenario_file, tmp_path):
    db = tmp_path / "miss.duckdb"
    scenario = load_scenario(scenario_file(n_personas=10, steps=1))
    # nothing recorded at all: refused before anything is written
    with pytest.raises(PersonahubError, match="does not exist, so no answer is recorded"):
        run_simulation(RunConfig(scenario=scenario, db=db, cache="replay"))
    assert not db.exists()
    run_simulation(RunConfig(scenario=scenario, db=db, cache="record", seed=1))
    # a different seed changes the prompts the offline engine is keyed on: misses
    with pytest.raises(CacheMiss, match=r"no recorded answer for the 'expand' call \(persona p"):
        run_simulation(RunConfig(scenario=scenario, db=db, cache="replay", seed=2))
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT status, error FROM runs "
                       "JOIN jobs ON job_id = run_id WHERE status <> 'finished'").fetchall()
    assert len(rows) == 1 and rows[0][0] == "failed" and "--cache record" in rows[0][1]
    con.close()


class Answer(BaseModel):
    """A test schema."""

    text: str


class CountingModel(OfflineChatModel):
    """Answers 'answer N' for the N-th request, so samples of one prompt differ."""

    async def answer_async(self, messages, **kwargs):  # noqa: D102
        COUNTER.append(1)
        return AIMessage(json.dumps({"text": f"answer {len(COUNTER)}"}),
                         usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})


COUNTER: list[int] = []


def test_sample_index_keeps_repeated_identical_requests_apart(tmp_path):
    COUNTER.clear()
    con = connect(tmp_path / "samples.duckdb")
    prompt = [HumanMessage("Say something.")]

    def session(mode):
        client = LLMClient(LLMSettings(), endpoints=[OfflineEndpoint(CountingModel(), "counting")])
        client.use_cache(ResponseCache.load(con, mode, client.cache_model))

        async def three():
            return [await client.structured(Answer, prompt, purpose="t") for _ in range(3)]

        results = asyncio.run(three())
        with transaction(con):
            insert_rows(con, "llm_cache", cache_rows_of(results))
        return [r.value.text for r in results], records_of(results)

    recorded, _ = session("record")
    assert recorded == ["answer 1", "answer 2", "answer 3"] and len(COUNTER) == 3
    replayed, records = session("replay")
    assert replayed == recorded and len(COUNTER) == 3
    assert [r.cached for r in records] == [True] * 3
    samples = con.execute("SELECT sample FROM llm_cache ORDER BY sample").fetchall()
    assert samples == [(0,), (1,), (2,)]
    con.close()


def test_cost_per_run_from_known_token_counts(tmp_path):
    db = tmp_path / "cost.duckdb"
    con = connect(db)
    with transaction(con):
        for run_id, options in (("r-priced", {"price_in": 2.0, "price_out": 8.0}),
                                ("r-table", {"price_in": None, "price_out": None}),
                                ("r-unknown", {})):
            create_job(con, run_id, "run", options)
            insert_rows(con, "runs", [{"run_id": run_id}])
        insert_rows(con, "prices", [{"model": "gpt-x", "price_in": 0.5, "price_out": 1.5}])

        def call(run_id, llm, tokens_in, tokens_out, cached=False, i=[0]):  # noqa: B006
            i[0] += 1  # model_name: the served name the writer (core.commit) stores with the label
            name = llm.split("@")[0].removeprefix("openai:")
            return {"call_id": f"c{i[0]}", "run_id": run_id, "llm": llm, "model_name": name,
                    "status": "ok", "tokens_in": tokens_in, "tokens_out": tokens_out,
                    "cached": cached}

        insert_rows(con, "llm_calls", [
            call("r-priced", "gpt-x@http://127.0.0.1:1/v1", 1_000_000, 500_000),
            call("r-priced", "gpt-x@http://127.0.0.1:2/v1", 250_000, 0),
            call("r-priced", "gpt-x", 1_000_000, 1_000_000, cached=True),
            call("r-table", "openai:gpt-x", 2_000_000, 1_000_000),
            call("r-table", "gpt-x@http://h/v1", 0, 0),  # a failed attempt: no tokens
            call("r-unknown", "mystery@http://h/v1", 10, 10),
            call("r-offline", "offline", 1_000, 1_000),  # e.g. a synthesis job (no runs row)
        ])
    install_views(con)
    cost = dict(con.execute("SELECT run_id, cost_usd FROM v_run_cost").fetchall())
    # 1.25M in x $2 + 0.5M out x $8 (the cached call is not billed)
    assert cost["r-priced"] == pytest.approx(2.5 + 4.0)
    assert cost["r-table"] == pytest.approx(2 * 0.5 + 1 * 1.5)  # prices table, by model_name
    assert cost["r-unknown"] is None  # a billed call without a price: unknown, not 0
    assert cost["r-offline"] == 0
    row = con.execute("""SELECT calls, cached_calls, tokens_in, tokens_out, cached_tokens_in,
                                cached_cost_usd FROM v_run_cost WHERE run_id = 'r-priced'""").fetchone()
    assert row == (3, 1, 1_250_000, 500_000, 1_000_000, pytest.approx(10.0))
    con.close()


@pytest.mark.slow
def test_cost_of_a_run_through_the_cli(scenario_file, tmp_path):
    from typer.testing import CliRunner

    db = tmp_path / "cli_cost.duckdb"
    runner = CliRunner()
    path = scenario_file(n_personas=8, steps=1)
    result = runner.invoke(app, ["run", str(path), "--db", str(db), "--cache", "record",
                                 "--price-in", "3", "--price-out", "15"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    replay = runner.invoke(app, ["run", str(path), "--db", str(db), "--cache", "replay",
                                 "--price-in", "3", "--price-out", "15"], catch_exceptions=False)
    assert replay.exit_code == 0, replay.output
    query = runner.invoke(app, ["sql", "--db", str(db), "--format", "jsonl",
                                str(query_files()["cost_per_run"])], catch_exceptions=False)
    rows = sorted((json.loads(line) for line in query.output.splitlines()),
                  key=lambda r: r["cached_calls"])
    con = duckdb.connect(str(db), read_only=True)
    tokens_in, tokens_out = con.execute(
        "SELECT sum(tokens_in), sum(tokens_out) FROM llm_calls WHERE NOT cached").fetchone()
    con.close()
    recorded, replayed = rows
    assert recorded["cost_usd"] == pytest.approx((tokens_in * 3 + tokens_out * 15) / 1e6, abs=1e-6)
    assert replayed["cost_usd"] == 0 and replayed["cached_calls"] == replayed["calls"] > 0
    assert replayed["cached_cost_usd"] == pytest.approx(recorded["cost_usd"], abs=1e-5)
    bad = runner.invoke(app, ["run", str(path), "--db", str(db), "--cache", "sometimes"])
    assert bad.exit_code == 2 and "--cache 'sometimes'" in bad.stderr  # a usage error

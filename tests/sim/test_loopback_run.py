"""A whole scenario through langchain-openai's ChatOpenAI against the loopback server."""

import json

import duckdb
import pytest

from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from personahub.tasks import emission_task


@pytest.mark.slow  # end to end; a run over HTTP stays fast in test_llm_seam (one dead endpoint)
def test_run_survives_injected_faults_and_accounts_for_every_call(server, scenario_file, tmp_path):
    srv = server(error_rate=0.1, malformed_rate=0.1, fault_seed=7)
    db = tmp_path / "loopback.duckdb"
    scenario = load_scenario(scenario_file(n_personas=25, steps=3))
    options = RunConfig(scenario=scenario, db=db, llm=f"{srv.base_url}?model=offline",
                        concurrency=8, timeout_s=10)
    summary = run_simulation(options)
    assert summary.engine.startswith("offline@http://127.0.0.1") and not summary.offline
    con = duckdb.connect(str(db), read_only=True)
    statuses = dict(con.execute("SELECT status, count(*) FROM llm_calls GROUP BY 1").fetchall())
    # every request the server saw is exactly one llm_calls row, faults included
    assert statuses.get("error", 0) == srv.stats.errors > 0
    assert statuses.get("invalid", 0) == srv.stats.malformed > 0
    assert statuses["ok"] == srv.stats.answered  # well-formed answers all validate
    assert sum(statuses.values()) == srv.stats.requests
    # no emission lost or half-written: each step accounts for every active agent
    for n_active, n_emissions, n_failed, stored in con.execute("""
            SELECT s.n_active, s.n_emissions, s.n_failed,
                   (SELECT count(*) FROM emissions e WHERE e.run_id = s.run_id AND e.step = s.step)
            FROM steps s ORDER BY s.step""").fetchall():
        assert n_emissions + n_failed == n_active and stored == n_emissions
    for kind, content in con.execute("SELECT task, content FROM emissions").fetchall():
        emission_task(kind).schema.model_validate(json.loads(content))
    assert con.execute("SELECT status FROM runs JOIN jobs ON job_id = run_id").fetchone()[0] == "finished"
    config = con.execute("SELECT config FROM runs JOIN jobs ON job_id = run_id").fetchone()[0]
    assert "api_key" not in config.lower() or "***" in config
    con.close()

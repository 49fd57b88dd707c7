"""The facts a report opens with: engine in words, scenario, seed, dates, calls, tokens, cost."""

from __future__ import annotations

import duckdb

from personahub.analysis.report_header import OFFLINE_ENGINE, engine_text, job_facts, run_facts
from personahub.analysis.views import install_views


def test_engine_line_says_offline_in_words() -> None:
    assert engine_text("offline") == f"offline ({OFFLINE_ENGINE})"
    assert OFFLINE_ENGINE == "offline engine — not a language model"
    assert "not a language model" in engine_text("openai:gpt-4o-mini,offline")
    assert engine_text("openai:gpt-4o-mini") == "openai:gpt-4o-mini"
    assert engine_text(None) == "unknown"


def test_run_facts(launch_db: dict) -> None:
    con = duckdb.connect(str(launch_db["db"]), read_only=True)
    install_views(con)
    facts = dict(run_facts(con, launch_db["run"]))
    calls = con.execute("SELECT count(*) FROM llm_calls WHERE run_id = ?",
                        [launch_db["run"]]).fetchone()
    con.close()
    assert facts["scenario"].startswith("product_launch")
    assert facts["seed"] == "21"
    assert facts["engine"] == "offline (offline engine — not a language model)"
    assert facts["status"] == "finished" and facts["steps"] == "5 of 5"
    assert facts["agents"] == "120"
    assert facts["model calls"].startswith(f"{calls[0]:,} attempts")
    assert facts["failed calls"].startswith("0 ")
    assert "approximate" in facts["tokens"] and facts["cost"].startswith("$0")
    assert "UTC →" in facts["dates"]


def test_job_facts(launch_db: dict) -> None:
    con = duckdb.connect(str(launch_db["db"]), read_only=True)
    install_views(con)
    facts = dict(job_facts(con, launch_db["job"]))
    con.close()
    assert facts["task"] == "math_problem (zero-shot)"
    assert facts["engine"].endswith("(offline engine — not a language model)")
    assert facts["items"].startswith("6 of 6 personas")
    assert facts["model calls"].startswith("6 attempts")
    assert facts["kept"] == "math_problem: 6 of 6 calls kept (100%)"


def test_the_kept_share_names_each_failure_plainly(tmp_path) -> None:
    """Calls are told apart by their attempts: a call kept on its fresh sample counts kept; one
    that failed twice counts under its last attempt's reason."""
    from personahub.analysis.report_header import usage_facts
    from personahub.core.store import connect

    con = connect(tmp_path / "k.duckdb")
    install_views(con)
    rows = [("c1", "p1", 1, "invalid", "answer cut off at max_tokens (finish_reason=length)", 1),
            ("c2", "p1", 2, "ok", None, 2),
            ("c3", "p2", 1, "invalid", "text: Field required", 3),
            ("c4", "p2", 2, "invalid", "rejected: too_short: the instruction is short", 4),
            ("c5", "p3", 1, "error", "HTTP 503: busy", 5),
            ("c6", "p4", 1, "ok", None, 6)]
    for call_id, persona, attempt, status, error, second in rows:
        con.execute("INSERT INTO llm_calls (call_id, run_id, persona_id, purpose, attempt, status, "
                    "error, started_at) VALUES (?, 'j', ?, 'synth:instruction', ?, ?, ?, "
                    "TIMESTAMP '2026-01-01' + to_seconds(?))",
                    [call_id, persona, attempt, status, error, second])
    facts = usage_facts(con, "j", offline=False)
    con.close()
    kept = [value for label, value in facts if label in ("kept", "")]
    assert kept == ["instruction: 2 of 4 calls kept (50%); 2 failed: endpoint error (HTTP 503) ×1, "
                    "rejected by the gate (too_short) ×1"]


def test_decision_facts_count_a_deliberate_runs_decisions_per_step(launch_db: dict, tmp_path) -> None:
    import json

    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario
    from tests.conftest import persona_texts

    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(8)))
    path = tmp_path / "deliberate.py"
    path.write_text("from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario\n"
                    "SCENARIO = Scenario(name='d', personas=PersonaSource(path='people.jsonl'), "
                    "graph=GraphGrowth(hops=0), steps=2, policy='deliberate', seed=2)\n")
    db = tmp_path / "d.duckdb"
    run = run_simulation(RunConfig(scenario=load_scenario(path), db=db)).run_id
    con = duckdb.connect(str(db), read_only=True)
    install_views(con)
    facts = dict(run_facts(con, run))
    nothing = con.execute("SELECT count(*) FROM decisions WHERE action = 'nothing'").fetchone()[0]
    con.close()
    assert facts["decisions"].startswith(f"16 (per step: 8, 8); {nothing} chose nothing, ")
    con = duckdb.connect(str(launch_db["db"]), read_only=True)
    install_views(con)
    assert "decisions" not in dict(run_facts(con, launch_db["run"]))  # scripted: no such fact
    con.close()

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

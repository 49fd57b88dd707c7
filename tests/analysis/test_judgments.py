"""Validity figures from judgments (analysis/judgments.py): Wilson intervals, the latest judge,
the report section and the live view's field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personahub.analysis import live_queries
from personahub.analysis.judgments import (
    OFFLINE_NOTE,
    Rate,
    latest_judge,
    latest_validity,
    validity,
    validity_lines,
    wilson,
)
from personahub.core.store import connect


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
    # method 3 (Wilson score, no continuity correction)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718)])
def test_wilson_matches_published_values(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_edges_and_the_papers_figure():
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(10, 10)
    assert (low, high) == pytest.approx((0.7225, 1.0), abs=5e-5)
    assert Rate(193, 200).text() == "96.5% (193/200; 95% CI 93.0–98.3%)"


def _judgment(judge: str, item: str, valid: bool, criteria: dict[str, bool], *, target: str = "run-1",
              model: str = "m", when: str = "2026-01-01 00:00:00") -> dict:
    return {"judge_id": judge, "target_kind": "run", "target_id": target, "item_id": item,
            "task": "instruction", "valid": valid, "reason": "r", "model": model, "config": "{}",
            "criteria": json.dumps({k: {"yes": v, "reason": "r"} for k, v in criteria.items()}),
            "created_at": when}


def _insert(con, rows: list[dict]) -> None:
    for row in rows:
        con.execute(f"INSERT INTO judgments ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()))


def test_validity_per_criterion_and_latest_judge(tmp_path: Path):
    con = connect(tmp_path / "j.duckdb")
    _insert(con, [
        _judgment("old", "a", False, {"clear": False}, when="2026-01-01 00:00:00"),
        _judgment("new", "a", True, {"clear": True, "answerable": True}, when="2026-01-02 00:00:00"),
        _judgment("new", "b", True, {"clear": True, "answerable": False}, when="2026-01-02 00:00:01"),
        _judgment("new", "c", False, {"clear": False, "answerable": False},
                  when="2026-01-02 00:00:02"),
        _judgment("other", "x", True, {"clear": True}, target="run-2", when="2026-02-01 00:00:00"),
    ])
    assert latest_judge(con, "run-1") == "new" and latest_judge(con, "nope") is None
    figures = latest_validity(con, "run-1")
    assert figures is not None and figures.judge_id == "new"
    assert (figures.valid.yes, figures.valid.n) == (2, 3)
    assert {k: (r.yes, r.n) for k, r in figures.criteria.items()} == {
        "clear": (2, 3), "answerable": (1, 3)}
    assert validity(con, "missing") is None
    lines = validity_lines(figures)
    assert lines[0].startswith("valid: 66.7% (2/3; 95% CI ") and OFFLINE_NOTE not in "".join(lines)
    _insert(con, [_judgment("offline-judge", "z", True, {"clear": True}, target="run-3",
                            model="offline")])
    offline = latest_validity(con, "run-3")
    assert offline is not None and offline.offline and OFFLINE_NOTE in validity_lines(offline)[-1]
    as_json = json.loads(json.dumps(figures.as_dict()))
    assert as_json["valid"]["n"] == 3 and as_json["criteria"]["answerable"]["yes"] == 1
    con.close()


@pytest.mark.slow
def test_report_and_live_view_show_the_validity(launch_db, tmp_path: Path):
    from personahub.analysis.report import write_report
    from personahub.api import run_judge
    from personahub.pipelines.judge import JudgeConfig

    db = tmp_path / "judged.duckdb"
    db.write_bytes(Path(launch_db["db"]).read_bytes())
    con = connect(db, read_only=True)
    try:
        assert live_queries.state(con, launch_db["run"])["validity"] is None
    finally:
        con.close()
    run_judge(JudgeConfig(run=launch_db["run"], db=str(db), sample=8))
    run_judge(JudgeConfig(job=launch_db["job"], db=str(db)))
    con = connect(db, read_only=True)
    try:
        shown = live_queries.state(con, launch_db["run"])["validity"]
        assert shown["valid"]["n"] == 8 and shown["offline"] and shown["model"] == "offline"
        json.dumps(shown)
        html = write_report(con, tmp_path / "run_report", run_id=launch_db["run"]).read_text()
        job_html = write_report(con, tmp_path / "job_report", job_id=launch_db["job"]).read_text()
    finally:
        con.close()
    assert "Validity (personahub judge)" in html
    assert "of 8" not in html.split("Validity (personahub judge)", 1)[1]  # rates, not "x of 8"
    assert "<td>valid</td><td>" in html and "not a judge of quality" in html
    assert "Validity (personahub judge)" in job_html and "well_posed" in job_html

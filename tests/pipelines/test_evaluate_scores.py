"""Scores per task, prompting and persona source with Wilson intervals, and two models'
paired accuracy difference (``pipelines/evaluate_scores.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

from personahub.core.store import connect
from personahub.pipelines.evaluate_scores import (
    DIFFERENCE_COLUMNS,
    GROUP_COLUMNS,
    breakdown_lines,
    group_scores,
    model_differences,
)

N = 30


@pytest.fixture
def con(tmp_path: Path):
    """30 verified items (reference "1"): tasks alternate math_problem / instruction, the first
    10 synthesized few_shot, the rest default; personas: 20 seed, 10 expansion. Model ``a`` is
    right on all, ``b`` on the first 10, ``c`` on items 5..29 (i.e. b and c disagree on 20)."""
    con = connect(tmp_path / "s.duckdb")
    con.executemany("INSERT INTO personas (persona_id, text, source, gate) VALUES (?, ?, ?, 'passed')",
                    [[f"p{i}", f"persona {i}", "seed" if i < 20 else "expansion"]
                     for i in range(N)])
    con.executemany("INSERT INTO synth_items (item_id, job_id, persona_id, task, prompting, "
                    "content, text) VALUES (?, 'j', ?, ?, ?, '{}', ?)",
                    [[f"i{i:02d}", f"p{i}", "math_problem" if i % 2 == 0 else "instruction",
                      "few_shot" if i < 10 else "default", f"item {i}"] for i in range(N)])
    con.executemany("INSERT INTO eval_verified VALUES ('e', ?, true, '1', ?, 3, 2)",
                    [[f"i{i:02d}", json.dumps(["s1", "s2"])] for i in range(N)])
    right = {"a": range(N), "b": range(10), "c": range(5, N)}
    con.executemany("INSERT INTO eval_answers (eval_id, item_id, role, spec, mode, sample, "
                    "answer) VALUES ('e', ?, 'model', ?, 'cot', 0, ?)",
                    [[f"i{i:02d}", m, "1" if i in ok else "2"] for m, ok in right.items()
                     for i in range(N)])
    yield con
    con.close()


def test_scores_per_task_prompting_and_persona_source_with_wilson_intervals(con) -> None:
    table = group_scores(con, "e", ["a", "b"])
    assert list(table.columns) == GROUP_COLUMNS
    b = table[table.model == "b"].set_index(["by", "group"])
    assert b.loc[("all", "all"), ["correct", "total"]].tolist() == [10, 30]
    assert b.loc[("prompting", "few_shot"), ["correct", "total"]].tolist() == [10, 10]
    assert b.loc[("prompting", "default"), ["correct", "total"]].tolist() == [0, 20]
    assert b.loc[("task", "math_problem"), ["correct", "total"]].tolist() == [5, 15]
    assert b.loc[("persona_source", "seed"), ["correct", "total"]].tolist() == [10, 20]
    assert b.loc[("persona_source", "expansion"), ["correct", "total"]].tolist() == [0, 10]
    low, high = binomtest(10, 20).proportion_ci(method="wilson")
    assert b.loc[("persona_source", "seed"), ["low", "high"]].tolist() == pytest.approx([low, high])
    a = table[table.model == "a"].set_index(["by", "group"])
    assert a.loc[("all", "all"), "accuracy"] == 1.0
    lines = breakdown_lines(table, model_differences(con, "e", ["a", "b"]))
    assert any(line.startswith("  b by prompting (95% Wilson): few_shot 10/10 = 100.0%")
               for line in lines)


def test_two_models_differ_with_a_paired_interval_and_mcnemar(con) -> None:
    table = model_differences(con, "e", ["a", "b", "c"], seed=3)
    assert list(table.columns) == DIFFERENCE_COLUMNS
    rows = table.set_index(["model_a", "model_b"])
    ab = rows.loc[("a", "b")]
    assert ab.difference == pytest.approx(20 / 30)
    assert (ab.only_a, ab.only_b, ab["items"]) == (20, 0, 30)
    # exact McNemar: 20 discordant pairs all one way
    assert ab.mcnemar_p == pytest.approx(binomtest(0, 20, 0.5).pvalue)
    assert 0 < ab.low < ab.difference < ab.high <= 1  # well away from no difference
    bc = rows.loc[("b", "c")]
    assert bc.difference == pytest.approx((10 - 25) / 30)
    assert (bc.only_a, bc.only_b) == (5, 20)
    assert bc.low < bc.difference < bc.high < 0
    again = model_differences(con, "e", ["a", "b", "c"], seed=3)
    assert again.equals(table)  # seeded: the same interval
    # a pair that agrees everywhere: the interval is the point, McNemar p = 1
    same = model_differences(con, "e", ["a", "a"]).iloc[0]
    assert (same.low, same.difference, same.high, same.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)
    line = breakdown_lines(group_scores(con, "e", ["a", "b"]),
                           model_differences(con, "e", ["a", "b"]))[-1]
    assert line.startswith("difference a - b: +66.7% on 30 items (95% paired bootstrap +")
    assert "20 vs 0 discordant, McNemar p=1.91e-06" in line

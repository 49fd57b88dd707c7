"""How ``overall`` weighs a calibration's rows: each attribute alike by default (the summary,
the per-attribute table, the intervals and the verdict), each question x group alike on demand."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from personahub.analysis.calibration_verdict import intervals, verdict
from personahub.pipelines.calibrate_scores import overall_lines, per_attribute, summarise_job


def _scores() -> pd.DataFrame:
    """Two questions; SEX has one group scoring 0.9, AGE four groups scoring 0.5 (model), and
    uniform 0.7 everywhere: per attribute the model averages 0.7, per row 0.58."""
    rows = []
    groups = [("SEX", "Female", 0.9)] + [("AGE", f"a{i}", 0.5) for i in range(4)]
    for q in ("Q1", "Q2", "Q3"):
        for attribute, group, value in groups:
            for source, score in (("model", value), ("uniform", 0.7)):
                rows.append({"question_id": q, "attribute": attribute, "group": group,
                             "source": source, "steering": "persona" if source == "model" else "",
                             "representativeness": score, "dispersion": 0.8,
                             "modal_agreement": 1.0, "sd_ratio": float("nan"), "sim_n": 10.0,
                             "sim_refusal": 0.0, "counts": json.dumps([10.0])})
    return pd.DataFrame(rows)


def test_overall_weighs_each_attribute_alike_and_per_group_on_demand() -> None:
    summary = summarise_job(_scores())
    overall = summary[(summary["level"] == "overall") & (summary["source"] == "model")]
    assert overall["representativeness"].item() == pytest.approx((0.9 + 0.5) / 2)
    assert overall["scored"].item() == 15  # every row once
    per_group = summary[(summary["level"] == "overall_per_group") & (summary["source"] == "model")]
    assert per_group["representativeness"].item() == pytest.approx((0.9 + 4 * 0.5) / 5)
    table = per_attribute(summary)
    assert table.loc["overall", "model"] == pytest.approx(0.7)
    assert list(table.index) == ["overall", "SEX", "AGE"]
    by_group = per_attribute(summary, overall="per-group")
    assert by_group.loc["overall", "model"] == pytest.approx(0.58)
    assert by_group.loc["AGE", "model"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="per-attribute"):
        per_attribute(summary, overall="per-row")
    line = overall_lines(table, by_group.head(1))
    assert len(line) == 1 and "model 0.580" in line[0]


def test_intervals_and_verdict_weigh_attributes_alike() -> None:
    scores = _scores()
    got = intervals(scores, seed=1).set_index(["attribute", "who"])
    assert got.loc[("overall", "model"), "mean"] == pytest.approx(0.7)
    assert got.loc[("AGE", "model"), "mean"] == pytest.approx(0.5)
    # per attribute the model ties uniform overall (0.7 each); per row it would lose by 0.12
    lines = verdict(scores, seed=1)
    overall = next(line for line in lines if line.startswith("overall:"))
    assert "0.000" in overall and "0.120" not in overall

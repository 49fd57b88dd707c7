"""Effective panel sizes, bootstrap intervals over questions and the plain-words verdict of a
calibration, on synthetic score tables (``analysis.calibration_verdict``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personahub.analysis.calibration_verdict import (
    intervals,
    panel_sizes,
    question_spread,
    standings,
    verdict,
    worst_groups,
)


def _table(values: dict[str, np.ndarray], *, attributes: tuple[str, ...] = ("SEX",),
           sim_n: float = 10, refused: float = 0, dispersion: float = 0.8) -> pd.DataFrame:
    """A score table: per source, one row per question (and attribute) holding its score."""
    rows = []
    for source, scores in values.items():
        for attribute in attributes:
            for q, value in enumerate(scores):
                model = source in ("model", "perfect_panel")
                rows.append({"question_id": f"Q{q}", "attribute": attribute, "group": "g",
                             "source": source, "steering": "persona" if model else "",
                             "representativeness": value, "dispersion": dispersion,
                             "modal_agreement": 1.0, "sim_n": sim_n + q % 3,
                             "sim_refusal": refused / (sim_n + q % 3 + refused),
                             "counts": json.dumps([sim_n + q % 3, refused])})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_bootstrap_interval_covers_a_known_mean_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(45)
    truth, covered, trials = 0.8, 0, 200
    for trial in range(trials):
        table = _table({"model": rng.normal(truth, 0.05, size=30)})
        row = intervals(table, seed=trial).iloc[0]
        covered += row["low"] <= truth <= row["high"]
    assert 0.90 <= covered / trials <= 0.99


def test_intervals_are_around_each_mean_and_resample_questions_whole() -> None:
    rng = np.random.default_rng(1)
    table = _table({"model": rng.uniform(0.6, 0.7, 20), "uniform": rng.uniform(0.4, 0.5, 20)},
                   attributes=("SEX", "AGE"))
    got = intervals(table, seed=3).set_index(["attribute", "who"])
    assert list(got.index.get_level_values(0).unique()) == ["overall", "SEX", "AGE"]
    for _, row in got.iterrows():
        assert row["low"] < row["mean"] < row["high"]
    assert got.loc[("overall", "model"), "mean"] == pytest.approx(
        table.loc[table["source"] == "model", "representativeness"].mean())
    # questions, not rows, are resampled: the two attributes' copies of a question move
    # together, so the overall interval is as wide as one attribute's
    overall = got.loc[("overall", "model")]
    sex = got.loc[("SEX", "model")]
    assert overall["high"] - overall["low"] == pytest.approx(sex["high"] - sex["low"], rel=0.3)
    assert got.loc[("overall", "model"), "questions"] == 20
    assert intervals(table, seed=3).equals(intervals(table, seed=3))


def test_panel_sizes_min_and_median_per_attribute() -> None:
    table = _table({"model": np.full(6, 0.7), "uniform": np.full(6, 0.5)}, sim_n=4)
    sizes = panel_sizes(table).set_index("attribute")
    assert sizes.loc["overall", "min"] == 4 and sizes.loc["overall", "median"] == 5
    assert sizes.loc["overall", "pairs"] == 6


def test_verdict_names_the_winner_its_margin_and_the_ceiling() -> None:
    rng = np.random.default_rng(2)
    table = _table({"model": rng.uniform(0.80, 0.84, 25), "uniform": rng.uniform(0.60, 0.64, 25),
                    "human_overall": rng.uniform(0.70, 0.74, 25),
                    "human_resample": np.full(25, 0.99), "perfect_panel": np.full(25, 0.90)})
    lines = verdict(table, seed=0)
    assert lines[0].startswith("overall: model wins (0.8")
    assert "0.10" in lines[0] and "above human_overall" in lines[0]
    assert "not a clear win" not in lines[0]
    assert any("(perfect_panel, a perfect simulator with as many answers) 0.900" in line
               and "the best the data allows (human_resample) 0.990" in line for line in lines)
    assert not any(line.startswith("warning") for line in lines)


def test_verdict_says_when_the_model_loses_and_when_a_win_is_unclear() -> None:
    rng = np.random.default_rng(3)
    same = rng.uniform(0.6, 0.8, 25)
    table = _table({"model": same - 0.1 + rng.normal(0, 0.01, 25), "uniform": same,
                    "human_overall": same + 0.05})
    lines = verdict(table, seed=0)
    assert lines[0].startswith("overall: human_overall wins")
    assert "above uniform" in lines[0]
    (below,) = [line for line in lines if line.startswith("overall: model is ")]
    assert below.endswith("below human_overall")
    assert float(below.split()[3]) == pytest.approx(0.15, abs=0.01)
    tie = verdict(_table({"model": same, "uniform": same + rng.normal(0, 0.01, 25)}), seed=0)
    assert "not a clear win" in tie[0]


def test_verdict_warns_of_a_degenerate_model() -> None:
    values = {"model": np.full(5, 0.5), "uniform": np.full(5, 0.6)}
    lines = verdict(_table(values, dispersion=0.0, refused=10, sim_n=10), seed=0)
    assert any("degenerate" in line and "dispersion 0" in line for line in lines)
    assert any("refusal option in" in line and "above 25%" in line for line in lines)
    fine = verdict(_table(values, refused=1, sim_n=10), seed=0)
    assert not any(line.startswith("warning") for line in fine)


def _hand_made() -> pd.DataFrame:
    """Model and uniform rows: SEX (Female, Male) and AGE (18-29) over three questions."""
    model = {("SEX", "Female"): [0.5, 0.6, 0.4], ("SEX", "Male"): [0.9, 0.8, 1.0],
             ("AGE", "18-29"): [0.7, 0.7, 0.1]}
    rows = []
    for (attribute, group), values in model.items():
        for q, value in enumerate(values):
            for source, score in (("model", value), ("uniform", 0.5)):
                rows.append({"question_id": f"Q{q}", "attribute": attribute, "group": group,
                             "source": source, "steering": "persona" if source == "model" else "",
                             "representativeness": score, "dispersion": 0.8,
                             "modal_agreement": 1.0, "sim_n": 10.0, "sim_refusal": 0.0,
                             "counts": json.dumps([10.0, 0.0])})
    return pd.DataFrame(rows)


def test_question_spread_is_per_question_sd_min_and_max_per_level() -> None:
    spread = question_spread(_hand_made()).set_index(["who", "attribute"])
    sex = spread.loc[("model", "SEX")]  # per question, the mean of Female and Male: .7 .7 .7
    assert (sex["mean"], sex["min"], sex["max"]) == pytest.approx((0.7, 0.7, 0.7))
    assert sex["sd"] == pytest.approx(0.0, abs=1e-12)
    age = spread.loc[("model", "AGE")]
    assert (age["min"], age["max"], age["lowest"]) == (pytest.approx(0.1), pytest.approx(0.7),
                                                       "Q2")
    assert age["sd"] == pytest.approx(np.std([0.7, 0.7, 0.1], ddof=1))
    overall = spread.loc[("model", "overall")]  # per question, the mean of SEX's and AGE's
    assert overall["min"] == pytest.approx(0.4) and overall["max"] == pytest.approx(0.7)
    assert overall["sd"] == pytest.approx(np.std([0.7, 0.7, 0.4], ddof=1))
    assert overall["questions"] == 3
    assert spread.loc[("uniform", "overall"), "sd"] == pytest.approx(0.0, abs=1e-12)


def test_the_verdict_names_the_worst_group_with_its_score() -> None:
    worst = worst_groups(_hand_made())
    assert list(worst["group"]) == ["Female", "18-29", "Male"]
    assert worst.iloc[0]["mean"] == pytest.approx(0.5)
    (line,) = [line for line in verdict(_hand_made(), seed=0) if "worst group" in line]
    assert line.startswith("model's worst group: SEX=Female at 0.500 (its mean over 3 questions")
    assert "SEX=Male, 0.900" in line


def _rows(values: dict[tuple[str, str], dict[int, float]], attribute: str = "SEX"
          ) -> pd.DataFrame:
    """Score rows from {(source, steering): {question: score}}, one group per question."""
    rows = []
    for (source, steering), scores in values.items():
        for q, value in scores.items():
            rows.append({"question_id": f"Q{q}", "attribute": attribute, "group": "g",
                         "source": source, "steering": steering, "representativeness": value,
                         "dispersion": 0.8, "modal_agreement": 1.0, "sim_n": 10.0,
                         "sim_refusal": 0.0, "counts": json.dumps([10.0, 0.0])})
    return pd.DataFrame(rows)


def test_every_model_row_stands_against_uniform_and_no_persona_with_a_paired_interval() -> None:
    rng = np.random.default_rng(4)
    uniform = rng.uniform(0.6, 0.9, 22)  # questions differ a lot; the gaps are steady
    table = _rows({("model", "persona"): dict(enumerate(uniform - 0.03 + rng.normal(0, 0.005, 22))),
                   ("model", "attributes"): dict(enumerate(uniform + 0.05)),
                   ("uniform", ""): dict(enumerate(uniform)),
                   ("no_persona", ""): dict(enumerate(uniform - 0.03 + rng.normal(0, 0.05, 22)))})
    got = standings(table, seed=0).set_index(["who", "baseline"])
    below = got.loc[("model[persona]", "uniform")]
    assert below["standing"] == "below" and below["questions"] == 22
    assert below["gap"] == pytest.approx(-0.03, abs=0.003)
    # paired over questions: the questions' spread (0.6 to 0.9) cancels, the interval is tight
    assert below["high"] - below["low"] < 0.01
    assert got.loc[("model[persona]", "no_persona"), "standing"] == "indistinguishable"
    assert set(got.loc["model[attributes]", "standing"]) == {"above"}
    lines = verdict(table, seed=0)
    (line,) = [x for x in lines if x.startswith("model[persona] is below uniform")]
    assert line.startswith(f"model[persona] is below uniform: by {-below['gap']:.3f} "
                           f"[{-below['high']:.3f}, {-below['low']:.3f}] on its 22 questions")
    assert any(x.startswith("model[persona] is indistinguishable from no_persona: ")
               for x in lines)
    assert any(x.startswith("model[attributes] is above no_persona: by ") for x in lines)
    assert all(len(x) <= 100 for x in lines if " is above " in x or " is below " in x)


def test_a_row_scored_on_fewer_questions_is_compared_on_its_own() -> None:
    # a logprobs row held out 5 of 22 questions; on its own 17 it equals uniform, which scores
    # higher on the other 5: over each source's own questions it looked below uniform
    uniform = np.r_[np.full(17, 0.7), np.full(5, 0.9)]
    model = dict(enumerate(uniform[:17] + np.tile([0.01, -0.01], 9)[:17]))
    table = _rows({("model", "logprobs"): model, ("uniform", ""): dict(enumerate(uniform)),
                   ("no_persona", ""): dict(enumerate(np.full(22, 0.5)))})
    means = intervals(table).set_index(["attribute", "who"])["mean"]["overall"]
    assert means["model"] < means["uniform"] - 0.03  # the table's means: different questions
    got = standings(table, seed=0).set_index("baseline")
    assert got.loc["uniform", "questions"] == 17
    assert got.loc["uniform", "standing"] == "indistinguishable"
    assert got.loc["uniform", "gap"] == pytest.approx(np.mean(list(model.values())) - 0.7)
    lines = verdict(table, seed=0)
    assert any(x.startswith("model is indistinguishable from uniform: ")
               and x.endswith("on its 17 questions") for x in lines)
    assert any(x.startswith("model is above no_persona: by 0.2") for x in lines)


def test_the_ceiling_lines_say_the_gap_is_in_the_answers_or_in_the_panel_size() -> None:
    rng = np.random.default_rng(5)
    base = rng.uniform(0.6, 0.8, 20)
    table = _rows({("model", "persona"): dict(enumerate(base - 0.1)),
                   ("perfect_panel", "persona"): dict(enumerate(base)),
                   ("human_resample", ""): dict(enumerate(np.full(20, 0.97))),
                   ("uniform", ""): dict(enumerate(base - 0.05))})
    lines = verdict(table, seed=0)
    assert "model scores 0.6" in "\n".join(lines)
    (gap,) = [x for x in lines if "below perfect_panel" in x]
    assert gap.startswith("model is 0.100 [0.100, 0.100] below perfect_panel: its answers are "
                          "off, not its panel size")
    assert not any("a larger --n" in x for x in lines)
    # tiny panels: even a perfect simulator scores below uniform, and the model is level with it
    tiny = _rows({("model", "persona"): dict(enumerate(base + np.tile([0.01, -0.01], 10))),
                  ("perfect_panel", "persona"): dict(enumerate(base)),
                  ("human_resample", ""): dict(enumerate(np.full(20, 0.97))),
                  ("uniform", ""): dict(enumerate(base + 0.05))})
    lines = verdict(tiny, seed=0)
    assert any(x.startswith("model is level with perfect_panel (") and
               x.endswith("a larger --n would lift both") for x in lines)
    assert any(x.startswith("even perfect_panel (") and "is below uniform (" in x
               for x in lines)

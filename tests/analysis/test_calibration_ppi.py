"""Prediction-powered group shares: a simulated panel corrected by a few
humans through ``ppi-python``, beside the humans-only and simulated-only intervals. A seeded
synthetic population: a demographic cell ``x`` moves the answer, the simulator predicts per
cell, with or without a planted bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from personahub.analysis.calibration_ppi import ppi_shares

TRUE = np.array([0.3, 0.7])  # P(option 0 | x = 0, 1); x is 0 or 1 with equal shares: truth 0.5
TRUTH = 0.5


def _draw(rng: np.random.Generator, bias: float, n: int = 150, big: int = 2000
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Humans' one-hot answers, the simulator's predictions for them and for the panel, and the
    panel's own one-hot answers (drawn from the simulator)."""
    x, xu = rng.integers(0, 2, n), rng.integers(0, 2, big)
    chose = rng.random(n) < TRUE[x]
    answers = np.column_stack([chose, ~chose]).astype(float)

    def predict(cell: np.ndarray) -> np.ndarray:
        p = np.clip(TRUE[cell] + bias, 0, 1)
        return np.column_stack([p, 1 - p])

    simulated = predict(xu)
    picked = rng.random(big) < simulated[:, 0]
    return answers, predict(x), simulated, np.column_stack([picked, ~picked]).astype(float)


@pytest.mark.slow
def test_ppi_covers_the_truth_where_a_biased_simulator_alone_does_not() -> None:
    rng = np.random.default_rng(45)
    draws, covered, sim_covered = 200, 0, 0
    for _ in range(draws):
        got = ppi_shares(*_draw(rng, bias=0.15), alpha=0.1)
        covered += got["ppi"].low[0] <= TRUTH <= got["ppi"].high[0]
        sim_covered += got["simulated"].low[0] <= TRUTH <= got["simulated"].high[0]
    # nominal 90%: a binomial(200, 0.9) falls below 0.84 with probability < 0.5%
    assert covered / draws >= 0.84
    assert sim_covered == 0  # the panel alone is confidently wrong (0.65)


@pytest.mark.slow
def test_with_a_good_simulator_ppi_is_not_wider_than_humans_only() -> None:
    rng = np.random.default_rng(7)
    ratios = []
    for _ in range(50):
        got = ppi_shares(*_draw(rng, bias=0.0))
        ppi = got["ppi"].high - got["ppi"].low
        humans = got["humans"].high - got["humans"].low
        assert (ppi <= humans * 1.001).all()
        ratios.append(float(ppi[0] / humans[0]))
    assert np.median(ratios) < 0.95  # the predictions explain part of the answers: narrower


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="K columns"):
        ppi_shares(np.ones((3, 2)), np.ones((3, 3)), np.ones((5, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="K columns"):
        ppi_shares(np.ones((3, 2)), np.ones((3, 2)), np.ones((5, 2)), np.ones((5, 3)))


def test_the_simulated_only_share_is_the_panels_own_answers() -> None:
    # 20 panel personas: 6 chose the first option; their smoothed predictions say about 0.32
    panel = np.eye(2)[[0] * 6 + [1] * 14]
    first = np.tile([0.30, 0.34], 10)
    predictions = np.column_stack([first, 1 - first])
    humans = np.eye(2)[[0, 1, 1, 0, 1]]
    got = ppi_shares(humans, predictions[:5], predictions, panel)["simulated"]
    assert got.estimate.tolist() == pytest.approx([0.3, 0.7])
    low, high = proportion_confint(6, 20, alpha=0.05, method="wilson")
    assert (got.low[0], got.high[0]) == pytest.approx((low, high))
    assert got.high[0] - got.low[0] > 0.3  # 20 answers: not the 0.02 of the predictions' mean




@pytest.mark.slow
def test_calibrate_with_humans_prints_ppi_and_the_api_returns_it(tmp_path: Path) -> None:
    import personahub
    from tests.analysis.test_survey_respondents import _people, _respondent_csv
    from tests.cli_helpers import invoke, one_line_error
    from tests.pipeline_helpers import rows
    from tests.pipelines.calibrate_fixtures import make_population

    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db, n=60)
    people = _people(n=80)
    survey = _respondent_csv(tmp_path / "survey.csv", people)
    sample = _respondent_csv(tmp_path / "sample.csv", people.iloc[:30])
    bad = _respondent_csv(tmp_path / "bad.csv", people.iloc[:3].assign(weight="x"))
    line = one_line_error(invoke("calibrate", survey, "--population", population, "--humans",
                                 bad, "--db", db))
    assert f"{bad}:2: column weight" in line
    assert rows(db, "SELECT count(*) FROM calibration_jobs") == [(0,)]  # refused before asking
    result = invoke("calibrate", survey, "--population", population, "--n", 10,
                    "--no-persona-n", 1, "--humans", sample, "--db", db)
    assert result.exit_code == 0, result.output
    assert "prediction-powered shares (" in result.stdout and "humans only" in result.stdout
    (job_id,) = [r[0] for r in rows(db, "SELECT job_id FROM calibration_jobs")]
    table = personahub.Calibration(job_id=job_id, db=db).ppi(sample)
    assert set(table["attribute"]) == {"sex", "party"}
    female = table[(table["question_id"] == "WHY") & (table["group"] == "Female")]
    answered = people.iloc[:30][people.iloc[:30]["sex"] == "Female"]
    panel = [p for a, g, p in rows(db, "SELECT attribute, grp, persona_id FROM "
                                       "calibration_panels WHERE job_id = ?", [job_id])
             if (a, g) == ("sex", "Female")]
    chosen = [a for (a,) in rows(db, "SELECT answer FROM calibration_answers WHERE job_id = ? AND "
                                     "question_id = 'WHY' AND steering = 'persona' AND NOT refused "
                                     "AND list_contains(?, persona_id)", [job_id, panel])]
    assert chosen and female["sim_n"].iloc[0] == len(chosen)
    for row in female.itertuples():  # the humans-only estimate is their weighted share
        share = (answered["weight"] * (answered["WHY"] == row.option)).sum() / answered["weight"].sum()
        assert row.humans == pytest.approx(share)
        assert row.humans_n == len(answered)
        assert row.ppi_low <= row.ppi <= row.ppi_high
        # the simulated-only share is the panel's own answers
        assert row.simulated == pytest.approx(chosen.count(row.option) / len(chosen))

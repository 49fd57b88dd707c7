"""Dispersion control (``analysis.calibration_dispersion``): tempering keeps a panel's size and
refusals, spreads it as T grows, and a cross-fitted T brings the SD ratio towards 1."""

from __future__ import annotations

import numpy as np
import pytest

from personahub.analysis.calibration_dispersion import (
    PRIOR,
    cross_fitted,
    fit_temperature,
    temper,
)
from personahub.analysis.calibration_scores import sd_ratio, split
from personahub.analysis.survey import Question

SCALE = Question("S", "Agree?", ("1", "2", "3", "4", "Refused"), (1, 2, 3, 4))


def test_temper_keeps_size_and_refusals_and_spreads_with_t() -> None:
    counts = [0.0, 8.0, 2.0, 0.0, 3.0]
    one = temper(SCALE, counts, 1.0)
    # T = 1 is the Jeffreys-smoothed panel: (8 + 0.5) / (10 + 4 * 0.5) of the 10 answers
    assert one[1] == pytest.approx((8 + PRIOR) / (10 + 4 * PRIOR) * 10)
    assert one[:4].sum() == pytest.approx(10) and one[4] == 3.0
    flat = temper(SCALE, counts, 1e6)
    assert flat[:4] == pytest.approx([2.5] * 4, abs=1e-4)  # T -> infinity: uniform
    sharp = temper(SCALE, counts, 0.05)
    assert sharp[1] == pytest.approx(10, abs=1e-6)  # T -> 0: the mode
    human = np.array([0.25, 0.25, 0.25, 0.25])
    ratios = [sd_ratio(SCALE, split(SCALE, temper(SCALE, counts, t)).distribution, human)
              for t in (0.5, 1, 2, 4)]
    assert ratios == sorted(ratios) and ratios[0] < ratios[-1]


def test_the_fitted_temperature_brings_the_sd_ratio_to_one() -> None:
    # people spread over the whole scale; every panel piles on one or two options
    human = [10.0, 20.0, 20.0, 10.0, 0.0]
    questions = {f"Q{i}": Question(f"Q{i}", "?", SCALE.options, SCALE.ordinal) for i in range(4)}
    panels = {(q, "SEX", ("Female",)): np.array([0.0, 15.0, 5.0, 0.0, 0.0]) for q in questions}
    humans = {key: np.array(human) for key in panels}
    distribution = np.array(human[:4]) / 60
    before = sd_ratio(SCALE, split(SCALE, panels[("Q0", "SEX", ("Female",))]).distribution,
                      distribution)
    t = fit_temperature(questions, panels, humans)
    after = sd_ratio(SCALE, split(SCALE, temper(SCALE, panels[("Q0", "SEX", ("Female",))], t))
                     .distribution, distribution)
    assert before < 0.6 and t > 1
    assert after == pytest.approx(1.0, abs=1e-3)


def test_cross_fitting_tempers_a_question_with_the_other_halfs_temperature() -> None:
    questions = {f"Q{i}": Question(f"Q{i}", "?", SCALE.options, SCALE.ordinal) for i in range(4)}
    panels = {(q, "SEX", ("Female",)): np.array([0.0, 15.0, 5.0, 0.0, 0.0]) for q in questions}
    humans = {key: np.array([10.0, 20.0, 20.0, 10.0, 0.0]) for key in panels}
    _, temperatures = cross_fitted(questions, panels, humans, seed=0)
    first = temperatures["Q0"]
    # Q0's people spreading wider changes the T of the *other* half only
    wider = dict(humans) | {("Q0", "SEX", ("Female",)): np.array([30.0, 0.0, 0.0, 30.0, 0.0])}
    _, moved = cross_fitted(questions, panels, wider, seed=0)
    assert moved["Q0"] == pytest.approx(first)
    others = [q for q in questions if q != "Q0" and moved[q] != pytest.approx(temperatures[q])]
    assert others and all(moved[q] > temperatures[q] for q in others)
    assert cross_fitted({"Q0": questions["Q0"]}, {k: v for k, v in panels.items()
                                                  if k[0] == "Q0"}, humans, 0) == ({}, {})

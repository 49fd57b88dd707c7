"""How often the calibration's interval over panel answers covers the exact expected score, per
effective panel size.

    python bench/bench_calibration_coverage.py [--sizes 2,5,8,20] [--seeds 45,1,2,3]
                                               [--trials 400] [--questions 15] [--resamples 400]
                                               [--concentration 2]

A synthetic survey per seed: ``--questions`` three-option ordinal questions x two groups, the
people's answer shares drawn from a Dirichlet(2, 2, 2) and the model's from a Dirichlet with
every parameter ``--concentration`` (below 1: peaked, as under-dispersed models are). Each trial draws
every question x group panel of ``n`` answers from the model's shares, scores it against the
people (``calibration_scores.representativeness``) and asks ``calibration_verdict.panel_intervals``
for its 95% interval over panel answers (``--resamples`` redraws; the command uses 2,000). The
truth is the exact expected mean score of such panels: every panel of ``n`` answers weighed by
its multinomial probability. Coverage is the share of trials whose interval holds the truth.

One line per size and seed, then per size pooled over the seeds; the last line is
``RESULT sizes=<n,...> coverage=<pooled,...> min=<lowest pooled>``.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pandas as pd
from scipy.stats import multinomial

from personahub.analysis.calibration_scores import representativeness
from personahub.analysis.calibration_verdict import panel_intervals
from personahub.analysis.survey import Question, Survey

OPTIONS = ("low", "mid", "high", "Refused")
Shares = dict[tuple[str, str, str], np.ndarray]  # (question, attribute, group) -> answer shares


def _survey(questions: int, rng: np.random.Generator, concentration: float
            ) -> tuple[Survey, Shares, Shares]:
    asked = {f"Q{q}": Question(f"Q{q}", f"question {q}", OPTIONS, (1.0, 2.0, 3.0))
             for q in range(questions)}
    counts: dict[str, dict[tuple[str, tuple[str, ...]], tuple[float, ...]]] = {}
    humans: Shares = {}
    model: Shares = {}
    for qid in asked:
        counts[qid] = {}
        for group in ("a", "b"):
            people = rng.dirichlet(np.ones(3) * 2)
            counts[qid][("SEX", (group,))] = (*(people * 500), 20.0)
            humans[(qid, "SEX", group)] = people
            model[(qid, "SEX", group)] = rng.dirichlet(np.ones(3) * concentration)
    return Survey(asked, counts), humans, model


def _expected(question: Question, shares: np.ndarray, human: np.ndarray, n: int) -> float:
    panels = np.array([(a, b, n - a - b) for a, b in itertools.product(range(n + 1), repeat=2)
                       if a + b <= n], float)
    scores = [representativeness(question, panel / n, human) for panel in panels]
    return float(multinomial.pmf(panels, n, shares) @ np.asarray(scores))


def coverage(n: int, seed: int, trials: int, questions: int, resamples: int,
             concentration: float = 2.0) -> tuple[float, float]:
    """The share of trials whose interval held the truth, and the median interval width."""
    rng = np.random.default_rng(seed)
    survey, humans, model = _survey(questions, rng, concentration)
    truth = float(np.mean([_expected(survey.questions[k[0]], p, humans[k], n)
                           for k, p in model.items()]))
    covered, widths = 0, []
    for trial in range(trials):
        rows = []
        for (qid, attribute, group), shares in model.items():
            panel = rng.multinomial(n, shares).astype(float)
            rows.append({"question_id": qid, "attribute": attribute, "group": group,
                         "source": "model", "steering": "persona",
                         "representativeness": representativeness(
                             survey.questions[qid], panel / n, humans[(qid, attribute, group)]),
                         "dispersion": 1.0, "sim_n": float(n),
                         "counts": json.dumps([*panel.tolist(), 0.0])})
        row = panel_intervals(pd.DataFrame(rows), survey, seed=trial,
                              resamples=resamples).iloc[0]
        covered += bool(row["panel_low"] <= truth <= row["panel_high"])
        widths.append(float(row["panel_high"] - row["panel_low"]))
    return covered / trials, float(np.median(widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,5,8,20")
    parser.add_argument("--seeds", default="45,1,2,3")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--questions", type=int, default=15)
    parser.add_argument("--resamples", type=int, default=400)
    parser.add_argument("--concentration", type=float, default=2.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    pooled = []
    for n in sizes:
        rates = []
        for seed in seeds:
            rate, width = coverage(n, seed, args.trials, args.questions, args.resamples,
                                   args.concentration)
            rates.append(rate)
            print(f"n={n} seed={seed}: coverage {rate:.4f} over {args.trials} trials, median "
                  f"width {width:.3f}", flush=True)
        pooled.append(float(np.mean(rates)))
        print(f"n={n}: pooled coverage {pooled[-1]:.4f} over {len(seeds) * args.trials} trials",
              flush=True)
    print(f"RESULT sizes={','.join(map(str, sizes))} "
          f"coverage={','.join(f'{c:.4f}' for c in pooled)} min={min(pooled):.4f}")


if __name__ == "__main__":
    main()

"""What a calibration's scores say, read from its score table alone.

Two intervals are shown side by side, not stacked: over questions (which already carries panel
noise) and over panel answers with questions held fixed. Overall means weigh each attribute alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from personahub.analysis.calibration_scores import (
    BASELINES,
    MODEL,
    POPULATION,
    drawn_representativeness,
    row_rng,
    source_label,
    split,
)
from personahub.analysis.survey import Survey

__all__ = ["REFUSAL_WARNING", "STANDING_BASELINES", "intervals", "panel_intervals", "panel_sizes",
           "question_spread", "standings", "verdict", "worst_groups"]

LEVEL = 0.95
RESAMPLES = 2000
# Jeffreys: half an answer per substantive option is added to a panel before it is redrawn, so a
# small panel whose answers all agree (its raw redraws never vary) still carries its noise
PANEL_PRIOR = 0.5
REFUSAL_WARNING = 0.25  # a refusal share above this is warned about
SCORE = "representativeness"
STANDING_BASELINES = ("uniform", "no_persona")  # every model row is set against these


def _labelled(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the scores with each source named as tables name it, whole-population rows left out."""
    scores = scores[scores["attribute"] != POPULATION]
    steerings = list(dict.fromkeys(scores.loc[scores["source"] == MODEL, "steering"]))
    frame = scores.copy()
    frame["who"] = [source_label(s, t or "", steerings)
                    for s, t in zip(frame["source"], frame["steering"], strict=True)]
    return frame


def _levels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """("overall", every row), then (attribute, its rows) per attribute."""
    return [("overall", frame), *((str(a), rows) for a, rows in
                                  frame.groupby("attribute", sort=False))]


def panel_sizes(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the model's effective panel size per question x group: min, median and pairs per source and
    level."""
    model = _labelled(scores[scores["source"] == MODEL])
    rows = []
    for who, own in model.groupby("who", sort=False):
        for where, part in _levels(own):
            n = part["sim_n"].fillna(0)
            rows.append({"who": who, "attribute": where, "min": float(n.min()),
                         "median": float(n.median()), "pairs": len(n)})
    return pd.DataFrame(rows, columns=["who", "attribute", "min", "median", "pairs"])


def _per_question(rows: pd.DataFrame, questions: pd.Index | None = None) -> list[np.ndarray]:
    """Per question, the sum and count of each attribute's scored rows, flattened for a cluster
    bootstrap as [sums 1, counts 1, sums 2, ...] (0 where none).
    """
    scored = rows.dropna(subset=[SCORE])
    per = scored.groupby(["question_id", "attribute"], sort=False)[SCORE].agg(["sum", "count"])
    sums = per["sum"].unstack(fill_value=0.0)
    counts = per["count"].unstack(fill_value=0.0)
    if questions is not None:
        sums, counts = (f.reindex(questions, fill_value=0.0) for f in (sums, counts))
    return [a for c in sums.columns for a in (sums[c].to_numpy(float),
                                              counts[c].to_numpy(float))]


def _interval(samples: Sequence[np.ndarray], statistic: object, seed: int
              ) -> tuple[float, float]:
    """Percentile bootstrap interval over paired per-question samples (NaN with under two questions)."""
    if len(samples[0]) < 2:
        return float("nan"), float("nan")
    result = bootstrap(tuple(samples), statistic, paired=True, vectorized=True,
                       n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile",
                       random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def _ratio(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over attributes of each attribute's mean; an attribute a resample left empty is skipped."""
    means = [np.asarray(sums.sum(axis=axis), float) / counts.sum(axis=axis)
             for sums, counts in zip(samples[::2], samples[1::2], strict=True)]
    with np.errstate(invalid="ignore", divide="ignore"):
        stacked = np.stack(means)
        valid = np.isfinite(stacked)
        return np.asarray(np.where(valid, stacked, 0.0).sum(axis=0) / valid.sum(axis=0))


def _gap_of(split: int) -> object:
    def gap(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return _ratio(*samples[:split], axis=axis) - _ratio(*samples[split:], axis=axis)
    return gap


def intervals(scores: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Each source's mean representativeness per level with a 95% bootstrap interval over questions."""
    rows = []
    for where, part in _levels(_labelled(scores)):
        for who, own in part.groupby("who", sort=False):
            samples = _per_question(own)
            if not samples or not len(samples[0]):
                continue
            low, high = _interval(samples, _ratio, seed)
            rows.append({"who": who, "attribute": where, "mean": float(_ratio(*samples)),
                         "low": low, "high": high, "questions": len(samples[0])})
    return pd.DataFrame(rows, columns=["who", "attribute", "mean", "low", "high", "questions"])


def _panel_deviations(rows: pd.DataFrame, survey: Survey, seed: int, resamples: int
                      ) -> np.ndarray:
    """Per scored model row, redrawn scores of its panel minus their mean (zeros if none).

    Each panel is redrawn at its size from its shares smoothed by PANEL_PRIOR: redrawn from its
    raw shares, a panel of two that agreed never varies, and the interval under-covered at small
    panels (docs/calibration.md gives the coverage measured at each size).
    """
    humans = {(qid, attribute, " / ".join(labels)): counts for qid in survey.counts
              for attribute, labels, counts in survey.groups(qid)}
    deviations = np.zeros((len(rows), resamples))
    for i, row in enumerate(rows.itertuples(index=False)):
        question = survey.questions.get(row.question_id)
        human = humans.get((row.question_id, row.attribute, row.group))
        if question is None or human is None or not isinstance(row.counts, str):
            continue
        sim, people = split(question, json.loads(row.counts)), split(question, human)
        if sim.distribution is None or people.distribution is None:
            continue
        rng = row_rng(seed, row.question_id, row.attribute, row.group, row.steering, "panel")
        smoothed = sim.distribution * sim.n + PANEL_PRIOR
        drawn = drawn_representativeness(question, smoothed / smoothed.sum(),
                                         people.distribution, sim.n, rng, resamples)
        if drawn.size:
            deviations[i] = drawn - drawn.mean()
    return deviations


def panel_intervals(scores: pd.DataFrame, survey: Survey, seed: int = 0,
                    skip: Sequence[str] = (), resamples: int = RESAMPLES) -> pd.DataFrame:
    """Return the model's mean representativeness per level with a 95% interval over panel answers,
    questions fixed; skip names steerings without a panel to redraw.
    """
    frame = _labelled(scores)  # labelled before skipping: the labels name every steering
    frame = frame[(frame["source"] == MODEL) & ~frame["steering"].isin(list(skip))]
    frame = frame.dropna(subset=[SCORE]).reset_index(drop=True)
    columns = ["who", "attribute", "mean", "panel_low", "panel_high", "pairs"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    deviations = _panel_deviations(frame, survey, seed, resamples)
    values = frame[SCORE].to_numpy(float)[:, None] + deviations
    rows = []
    for who, own in frame.groupby("who", sort=False):
        means = {str(a): values[part.index].mean(axis=0)
                 for a, part in own.groupby("attribute", sort=False)}
        levels = [("overall", np.mean(list(means.values()), axis=0)), *means.items()]
        for where, redrawn in levels:
            mean = float(redrawn.mean())  # the deviations are centred: the observed mean
            low, high = np.quantile(redrawn, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
            pairs = len(own) if where == "overall" else int((own["attribute"] == where).sum())
            rows.append({"who": who, "attribute": where, "mean": mean, "panel_low": float(low),
                         "panel_high": float(high), "pairs": pairs})
    return pd.DataFrame(rows, columns=columns)


def question_spread(scores: pd.DataFrame) -> pd.DataFrame:
    """Each source's per-question representativeness and its spread across questions."""
    frame = _labelled(scores).dropna(subset=[SCORE])
    per = frame.groupby(["who", "attribute", "question_id"], sort=False)[SCORE].mean()
    rows = []
    for who, own in per.groupby(level="who", sort=False):
        by_attribute = own.droplevel("who")
        overall = by_attribute.groupby(level="question_id", sort=False).mean()
        levels = [("overall", overall),
                  *((str(a), part.droplevel("attribute"))
                    for a, part in by_attribute.groupby(level="attribute", sort=False))]
        for where, values in levels:
            rows.append({"who": who, "attribute": where, "mean": float(values.mean()),
                         "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                         "min": float(values.min()), "max": float(values.max()),
                         "lowest": str(values.idxmin()), "questions": len(values)})
    return pd.DataFrame(rows, columns=["who", "attribute", "mean", "sd", "min", "max", "lowest",
                                       "questions"])


def worst_groups(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the model's mean representativeness per group, lowest first."""
    frame = _labelled(scores[scores["source"] == MODEL]).dropna(subset=[SCORE])
    grouped = frame.groupby(["who", "attribute", "group"], sort=False)[SCORE]
    table = grouped.agg(mean="mean", questions="count").reset_index()
    return table.sort_values(["who", "mean"], kind="stable").reset_index(drop=True)


def _paired(part: pd.DataFrame, a: str, b: str, seed: int
            ) -> tuple[float, float, float, int]:
    """Gap of one source's mean over another's on the questions both scored, with a paired
    bootstrap interval (the same resampled questions for both) and the number of those questions.
    """
    own_a, own_b = part[part["who"] == a], part[part["who"] == b]
    both = (pd.Index(own_a.dropna(subset=[SCORE])["question_id"].unique())
            .intersection(pd.Index(own_b.dropna(subset=[SCORE])["question_id"].unique())))
    samples_a = _per_question(own_a[own_a["question_id"].isin(both)], both)
    samples_b = _per_question(own_b[own_b["question_id"].isin(both)], both)
    if not len(both) or not samples_a or not samples_b:
        return float("nan"), float("nan"), float("nan"), 0
    statistic = _gap_of(len(samples_a))
    gap = float(statistic(*samples_a, *samples_b))  # type: ignore[operator]
    low, high = _interval([*samples_a, *samples_b], statistic, seed)
    return gap, low, high, len(both)


def _gap_interval(part: pd.DataFrame, a: str, b: str, seed: int) -> tuple[float, float, float]:
    """Gap of one source's mean over another's on the questions both scored, with a paired bootstrap
    interval.
    """
    return _paired(part, a, b, seed)[:3]


def _standing(low: float, high: float) -> str:
    """Above, below or indistinguishable, from a gap's interval ("no interval" without one)."""
    if np.isnan(low):
        return "no interval"
    return "above" if low > 0 else "below" if high < 0 else "indistinguishable"


def standings(scores: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Each model row's overall mean against uniform and no_persona, on its own questions.

    The gap is the model's mean minus the baseline's over the questions both scored (a
    few-shot or logprobs row leaves its held-out questions out, so its baselines do too), with
    a 95% paired bootstrap interval over those questions.

    Args:
        scores: a calibration's per question x group x source scores.
        seed: the bootstrap's seed.

    Returns:
        One row per model row and baseline: who, baseline, questions, gap, low, high and
        standing ("above", "below", "indistinguishable", or "no interval" with one question).
        A baseline with no score (no_persona not asked) has no row.
    """
    frame = _labelled(scores)
    models = list(dict.fromkeys(frame.loc[frame["source"] == MODEL, "who"]))
    rows = []
    for who in models:
        for baseline in STANDING_BASELINES:
            gap, low, high, questions = _paired(frame, who, baseline, seed)
            if questions:
                rows.append({"who": who, "baseline": baseline, "questions": questions,
                             "gap": gap, "low": low, "high": high,
                             "standing": _standing(low, high)})
    return pd.DataFrame(rows, columns=["who", "baseline", "questions", "gap", "low", "high",
                                       "standing"])


def _standing_line(row: pd.Series) -> str:
    """One plain sentence: a model row above, below or level with a baseline."""
    on = f"on its {row['questions']} question{'s' * (row['questions'] != 1)}"
    who, baseline, gap = row["who"], row["baseline"], float(row["gap"])
    if row["standing"] == "no interval":
        side = "above" if gap >= 0 else "below"
        return f"{who} is {abs(gap):.3f} {side} {baseline} {on} (one question: no interval)"
    if row["standing"] == "indistinguishable":
        return (f"{who} is indistinguishable from {baseline}: {gap:+.3f}"
                f"{_ci(row['low'], row['high'])} {on}")
    side = "above" if row["standing"] == "above" else "below"
    low, high = sorted((abs(row["low"]), abs(row["high"])))
    return f"{who} is {side} {baseline}: by {abs(gap):.3f}{_ci(low, high)} {on}"


def _ci(low: float, high: float) -> str:
    return "" if np.isnan(low) else f" [{low:.3f}, {high:.3f}]"


def _ceiling_lines(part: pd.DataFrame, overall: pd.DataFrame, who: str, seed: int) -> list[str]:
    """Where a model row stands against its two ceilings, perfect_panel (the best at its panel
    size) and human_resample (the best the data allows), and what a larger --n can change.
    """
    ceiling, floor = f"perfect_panel{who[len(MODEL):]}", "human_resample"
    if ceiling not in overall.index or floor not in overall.index:
        return []
    model, top, noise = (float(overall.loc[w, "mean"]) for w in (who, ceiling, floor))
    lines = [f"{who} scores {model:.3f}: the best at its panel size (perfect_panel, a perfect "
             f"simulator with as many answers) {top:.3f}, the best the data allows "
             f"(human_resample) {noise:.3f}"]
    gap, low, high, _ = _paired(part, who, ceiling, seed)  # the model minus its ceiling
    if _standing(low, high) == "indistinguishable":
        lines.append(f"{who} is level with perfect_panel ({gap:+.3f}{_ci(low, high)}): "
                     "a larger --n would lift both")
    elif np.isfinite(gap) and gap < 0:
        lines.append(f"{who} is {-gap:.3f}{_ci(-high, -low)} below perfect_panel: its answers "
                     "are off, not its panel size")
    uniform = float(overall.loc["uniform", "mean"]) if "uniform" in overall.index else np.nan
    if top < uniform:
        lines.append(f"even perfect_panel ({top:.3f}) is below uniform ({uniform:.3f}) at this "
                     "panel size: a larger --n is needed")
    return lines


def verdict(scores: pd.DataFrame, seed: int = 0) -> list[str]:
    """Return the calibration's verdict, one sentence a line: the winner overall and per attribute, each
    model row against uniform and no_persona, the model against its two ceilings, its
    worst group, warnings.
    """
    frame = _labelled(scores)
    means = intervals(scores, seed).set_index(["attribute", "who"])
    models = list(dict.fromkeys(frame.loc[frame["source"] == MODEL, "who"]))
    if not models or means.empty:
        return ["no group was scored: no verdict"]
    contenders = [*models, *BASELINES]
    lines = []
    for where, part in _levels(frame):
        if where not in means.index.get_level_values(0):
            continue
        level = means.loc[where]
        ranked = [w for w in level.sort_values("mean", ascending=False).index if w in contenders]
        if len(ranked) < 2:
            continue
        first, second = ranked[0], ranked[1]
        gap, low, high = _gap_interval(part, first, second, seed)
        unsure = "" if np.isnan(low) or low > 0 else " (the interval holds 0: not a clear win)"
        lines.append(f"{where}: {first} wins ({level.loc[first, 'mean']:.3f}"
                     f"{_ci(level.loc[first, 'low'], level.loc[first, 'high'])}), "
                     f"{gap:.3f}{_ci(low, high)} above {second}{unsure}")
        if where == "overall":
            for who in (m for m in models if m not in (first, second) and m in level.index):
                gap, low, high = _gap_interval(part, first, who, seed)
                lines.append(f"overall: {who} is {gap:.3f}{_ci(low, high)} below {first}")
    standing = standings(scores, seed)
    overall = means.loc["overall"]
    for who in models:
        lines += [_standing_line(row) for _, row in standing[standing["who"] == who].iterrows()]
        lines += _ceiling_lines(frame, overall, who, seed)
    worst = worst_groups(scores)
    for who in models:
        own = worst[worst["who"] == who]
        if len(own) > 1:
            low = own.iloc[0]
            lines.append(f"{who}'s worst group: {low['attribute']}={low['group']} at "
                         f"{low['mean']:.3f} (its mean over {low['questions']} questions; "
                         f"the best, {own.iloc[-1]['attribute']}={own.iloc[-1]['group']}, "
                         f"{own.iloc[-1]['mean']:.3f})")
    lines += _warnings(frame, models)
    return lines


def _warnings(frame: pd.DataFrame, models: Sequence[str]) -> list[str]:
    """Warnings on a degenerate model: no spread at all, or too many refusals."""
    lines = []
    for who in models:
        own = frame[frame["who"] == who]
        spread = own["dispersion"].dropna()
        if len(spread) and (spread <= 1e-12).all():
            lines.append(f"warning: {who} is degenerate: in every question x group all its "
                         "personas gave the same answer (dispersion 0)")
        elif len(spread) and (spread <= 1e-12).mean() > 0.5:
            lines.append(f"warning: {who}: in {(spread <= 1e-12).mean():.0%} of question x "
                         "group pairs all its personas gave the same answer (dispersion 0)")
        counts = [json.loads(c) for c in own["counts"] if isinstance(c, str)]
        totals = own["counts"].map(lambda c: sum(json.loads(c)) if isinstance(c, str) else 0.0)
        answered = float(totals.sum())
        share = (float((totals - own["sim_n"].fillna(0)).sum()) / answered if answered > 0
                 else 0.0)
        if share <= REFUSAL_WARNING:
            continue
        shown = _share_above(share, REFUSAL_WARNING)
        if is_stated(counts):
            lines.append(f"note: {who} put {shown} of its stated shares on refusal options "
                         f"(above {REFUSAL_WARNING:.0%}): its scores compare the substantive "
                         "shares, rescaled to sum to 1")
        else:
            lines.append(f"warning: {who} chose a refusal option in {shown} of its answers "
                         f"(above {REFUSAL_WARNING:.0%}): its scores rest on the rest")
    return lines


def is_stated(counts: Sequence[Sequence[float]]) -> bool:
    """Whether a row's counts are stated shares (each question x group's sum to 1, not whole
    answers): a distribution, logprobs or few-shot row, as against a panel's answers."""
    return (bool(counts) and all(abs(sum(c) - 1.0) < 1e-6 for c in counts)
            and any(v != int(v) for c in counts for v in c))


def _share_above(share: float, threshold: float) -> str:
    """Return a share above a threshold, with as many decimals as it takes to read above it (25.3%,
    not 25%)."""
    for digits in range(4):
        text = f"{share:.{digits}%}"
        if float(text.rstrip("%")) / 100 > threshold:
            return text
    return f"{share:.4%}"


def archetype_verdicts(scores: pd.DataFrame, price: pd.DataFrame, seed: int = 0) -> list[str]:
    """Return the price of archetypes in words: per K, the calls it saved, how alike its answers are to
    asking every agent (beside people against a fresh sample of themselves), and whether it scores
    above, below or level with asking every agent against people (a paired 95% bootstrap over the
    questions both scored), with what that means.

    Args:
        scores: a calibration's per question x group x source scores.
        price: its price table (``Calibration.archetype_price()``): per K and group, similarity,
            calls and the per-agent row's calls.
        seed: the bootstrap's seed.

    Returns:
        One sentence per K (none without archetypes).
    """
    if price.empty:
        return []
    frame = _labelled(scores)
    whos = frame.drop_duplicates("steering").set_index("steering")["who"]
    model = frame[frame["source"] == MODEL]
    agents = [s for s in dict.fromkeys(model["steering"]) if ":" not in s and s in whos.index]
    lines = []
    for method, part in price.groupby("method", sort=False):
        first = part.iloc[0]
        calls, theirs = int(first["calls"]), int(first["sample_calls"])
        saved = f"{calls:,} calls instead of {theirs:,}" + (
            f" ({calls / theirs:.0%})" if theirs else "")
        alike = (f"its answers are {part['similarity'].mean():.3f} alike to asking every agent's "
                 f"(people against a fresh sample of themselves: "
                 f"{part['human_resample'].mean():.3f})")
        line = f"{method}: {saved}; {alike}"
        if agents and method in whos.index:
            gap, low, high, questions = _paired(frame, whos[method], whos[agents[0]], seed)
            standing = _standing(low, high)
            if standing == "below":
                line += (f"; it scores {-gap:.3f}{_ci(-high, -low)} below asking every agent "
                         "against people: the saving costs accuracy")
            elif standing == "above":
                line += (f"; it scores {gap:.3f}{_ci(low, high)} above asking every agent "
                         "against people: cheaper and no worse")
            elif standing == "indistinguishable":
                line += (f"; against people it is level with asking every agent "
                         f"({gap:+.3f}{_ci(low, high)} on {questions} questions): the saving "
                         "costs no accuracy this calibration can detect")
            else:
                line += f"; against people {gap:+.3f} to asking every agent (one question: no interval)"
        lines.append(line)
    return lines

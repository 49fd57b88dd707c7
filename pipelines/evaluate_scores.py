"""A scored model's accuracy broken down, and two models compared on the same items.

Accuracy is broken down per task, prompting and persona source (the source stands in for
persona clusters, which the project does not compute), with Wilson intervals. Two models are
compared on the same items with a paired bootstrap interval and McNemar's exact test, because
two models' answers to one item are not independent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import duckdb

from personahub.analysis.judgments import wilson
from personahub.personas.store import persona_sources
from personahub.pipelines.synthesis_inputs import item_facets
from personahub.tasks.answer_equivalence import equivalent

if TYPE_CHECKING:
    import pandas as pd

GROUP_COLUMNS = ["model", "by", "group", "correct", "total", "accuracy", "low", "high"]
DIFFERENCE_COLUMNS = ["model_a", "model_b", "items", "accuracy_a", "accuracy_b", "difference",
                      "low", "high", "only_a", "only_b", "mcnemar_p"]


# each solver's or model's answer per item (evaluate.py uses these too)


#: whether two final answers are the same (see same_answers)
Same = Callable[[str, str], bool]


def pair_key(a: str, b: str) -> tuple[str, str]:
    """Return an unordered answer pair in the order the equivalence table stores it (smaller first)."""
    return (a, b) if a <= b else (b, a)


def same_answers(verdicts: Mapping[tuple[str, str], bool] | None = None) -> Same:
    """Answer equality: math-verify's verdict when it decides, else the equivalence judge's
    verdict on the pair, else not equal.
    """
    judged = verdicts or {}

    def same(a: str, b: str) -> bool:
        decided = equivalent(a, b)
        if decided is None:
            return judged.get(pair_key(a, b), False)
        return decided

    return same


def _clusters(answers: Sequence[str], same: Same | None = None) -> list[list[int]]:
    """Return the answers' indices, grouped by equivalence to each group's first answer."""
    same = same or same_answers()
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        for group in groups:
            if same(answers[group[0]], answer):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def _consensus(samples: Sequence[str], same: Same | None = None) -> str:
    """Return a solver's answer from its samples: the first answer of the largest equivalence group."""
    biggest = max(_clusters(samples, same), key=len)
    return samples[biggest[0]]


def solver_answers(con: duckdb.DuckDBPyConnection, eval_id: str,
                   role: str = "solver", same: Same | None = None) -> dict[str, dict[str, str]]:
    """Each solver's answer per item (the consensus of its samples), by spec and item id."""
    by: dict[tuple[str, str], list[str]] = {}
    for spec, item, answer in con.execute(
            "SELECT spec, item_id, answer FROM eval_answers WHERE eval_id = ? AND role = ? "
            "AND answer IS NOT NULL ORDER BY spec, item_id, sample", [eval_id, role]).fetchall():
        by.setdefault((spec, item), []).append(answer)
    out: dict[str, dict[str, str]] = {}
    for (spec, item), samples in by.items():
        out.setdefault(spec, {})[item] = _consensus(samples, same)
    return out



#: the task, prompting and persona source of an outside item (it was not synthesized here)
OUTSIDE = "outside"


def _items(con: duckdb.DuckDBPyConnection, eval_id: str) -> list[tuple[str, str, str, str, str]]:
    """Return the verified test items: (item_id, reference, task, prompting, persona source); an outside
    item's three facets are OUTSIDE."""
    verified = con.execute(
        "SELECT item_id, reference FROM eval_verified WHERE eval_id = ? AND verified "
        "ORDER BY item_id", [eval_id]).fetchall()
    facets = item_facets(con, [item for item, _ in verified])
    sources = persona_sources(con, [f[2] for f in facets.values()])
    return [(item, ref, *((facets[item][0], facets[item][1],
                           sources.get(facets[item][2], "unknown")) if item in facets
                          else (OUTSIDE, OUTSIDE, OUTSIDE)))
            for item, ref in verified]


def correctness(con: duckdb.DuckDBPyConnection, eval_id: str,
                spec: str, same: Same | None = None) -> dict[str, bool]:
    """Whether a scored model answered each verified item correctly (an unanswered item is wrong).
    """
    same = same or same_answers()
    model = solver_answers(con, eval_id, role="model", same=same).get(spec, {})
    return {item: item in model and same(model[item], ref)
            for item, ref, *_ in _items(con, eval_id)}


def group_scores(con: duckdb.DuckDBPyConnection, eval_id: str, specs: Sequence[str], *,
                 alpha: float = 0.05, same: Same | None = None) -> pd.DataFrame:
    """Each model's accuracy overall and per task, prompting and persona source, with Wilson
    intervals: one row per model, breakdown and group.
    """
    import pandas as pd

    items = _items(con, eval_id)
    rows = []
    for spec in specs:
        right = correctness(con, eval_id, spec, same)
        groups: dict[tuple[str, str], list[bool]] = {("all", "all"): []}
        for item_id, _, task, prompting, source in items:
            groups[("all", "all")].append(right[item_id])
            for by, value in (("task", task), ("prompting", prompting),
                              ("persona_source", source)):
                groups.setdefault((by, value), []).append(right[item_id])
        for (by, group), marks in groups.items():
            low, high = wilson(sum(marks), len(marks), alpha)
            rows.append([spec, by, group, sum(marks), len(marks),
                         sum(marks) / len(marks) if marks else None, low, high])
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def model_differences(con: duckdb.DuckDBPyConnection, eval_id: str, specs: Sequence[str], *,
                      alpha: float = 0.05, seed: int = 0,
                      resamples: int = 9999, same: Same | None = None) -> pd.DataFrame:
    """Each pair of models' accuracy difference (a - b) on the same verified items, with a seeded
    paired bootstrap interval, the discordant counts and McNemar's exact p-value.
    """
    import numpy as np
    import pandas as pd
    from scipy.stats import bootstrap
    from statsmodels.stats.contingency_tables import mcnemar

    marks = {spec: correctness(con, eval_id, spec, same) for spec in specs}
    rows = []
    for i, a in enumerate(specs):
        for b in specs[i + 1:]:
            items = sorted(marks[a])
            x = np.array([marks[a][k] for k in items], dtype=float)
            y = np.array([marks[b][k] for k in items], dtype=float)
            only_a, only_b = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
            if len(items) == 0:
                rows.append([a, b, 0, None, None, None, float("nan"),
                             float("nan"), 0, 0, float("nan")])
                continue
            diff = float(x.mean() - y.mean())
            if len(items) > 1 and (only_a or only_b):
                ci = bootstrap((x, y), lambda u, v, axis=-1: u.mean(axis=axis) - v.mean(axis=axis),
                               paired=True, vectorized=True, confidence_level=1 - alpha,
                               n_resamples=resamples, method="percentile",
                               rng=np.random.default_rng(seed)).confidence_interval
                low, high = float(ci.low), float(ci.high)
            else:  # the two models agree on every item: no resample differs
                low = high = diff
            both = int(((x == 1) & (y == 1)).sum())
            neither = len(items) - both - only_a - only_b
            p = float(mcnemar([[both, only_a], [only_b, neither]], exact=True).pvalue)
            rows.append([a, b, len(items), float(x.mean()),
                         float(y.mean()), diff, low, high, only_a, only_b, p])
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


def breakdown_lines(groups: pd.DataFrame, differences: pd.DataFrame) -> list[str]:
    """Console lines: each model's accuracy per breakdown of several groups, and each pair's difference.
    """
    lines = []
    for (model, by), part in groups[groups["by"] != "all"].groupby(["model", "by"], sort=False):
        if len(part) < 2:  # one group: the overall score says it already
            continue
        cells = "; ".join(
            f"{r.group} {r.correct}/{r.total} = {r.accuracy:.1%} ({r.low:.1%}-{r.high:.1%})"
            for r in part.itertuples())
        lines.append(f"  {model} by {by} (95% Wilson): {cells}")
    for r in differences.itertuples():
        if not r.items:
            lines.append(f"difference {r.model_a} - {r.model_b}: no verified items")
            continue
        lines.append(f"difference {r.model_a} - {r.model_b}: {r.difference:+.1%} on {r.items} "
                     f"items (95% paired bootstrap {r.low:+.1%} to {r.high:+.1%}; "
                     f"{r.only_a} vs {r.only_b} discordant, McNemar p={r.mcnemar_p:.3g})")
    return lines


# what exports and the quality table read of an evaluation


def split_of(con: duckdb.DuckDBPyConnection, eval_id: str) -> dict[str, str]:
    """Each item's side of the split: train, test or excluded (contaminated)."""
    return {str(item): str(side) for item, side in con.execute(
        "SELECT item_id, split FROM eval_splits WHERE eval_id = ? ORDER BY item_id",
        [eval_id]).fetchall()}


def contamination_counts(con: duckdb.DuckDBPyConnection, eval_id: str) -> dict[str, int]:
    """Per benchmark file, how many of the job's items it flagged (distinct items)."""
    return {str(bench): int(n) for bench, n in con.execute(
        "SELECT benchmark, count(DISTINCT item_id) FROM eval_contamination WHERE eval_id = ? "
        "GROUP BY benchmark ORDER BY benchmark", [eval_id]).fetchall()}


def verified_counts(con: duckdb.DuckDBPyConnection, eval_id: str) -> tuple[int, int]:
    """Return the split's counts of verified and of answered test items."""
    row = con.execute("SELECT count(*) FILTER (verified), count(*) FROM eval_verified WHERE "
                      "eval_id = ?", [eval_id]).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def referenced_counts(con: duckdb.DuckDBPyConnection, eval_id: str) -> int:
    """Return the split's test items verified by an item set's reference answer."""
    row = con.execute("SELECT count(*) FROM eval_verified WHERE eval_id = ? AND verified AND "
                      "agreed = '[\"reference\"]'", [eval_id]).fetchone()
    return int(row[0]) if row else 0


def split_job_of(con: duckdb.DuckDBPyConnection, eval_id: str) -> str | None:
    """Return the synthesis job (or outside item set) whose items the split divides (None when there
    is no such split)."""
    row = con.execute("SELECT any_value(job_id) FROM eval_splits WHERE eval_id = ?",
                      [eval_id]).fetchone()
    return str(row[0]) if row and row[0] is not None else None

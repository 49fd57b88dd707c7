"""Calibrations side by side: each score's spread over seeds, and the results that flip.

Jobs differing only in seed form a variant. A result (model vs baseline, steering vs steering,
variant vs variant) flips when its sign changes between seeds or variants, as AgentSociety's
polarisation result did on another model; such a result needs its spread beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from personahub.analysis import calibration_store as store
from personahub.analysis.calibration_report import BASELINES as BASELINE_ORDER
from personahub.analysis.calibration_scores import MODEL, SCORES, source_label
from personahub.core.errors import PersonahubError

__all__ = ["Comparison", "compare", "flips", "spread", "variants"]

# settings that do not change what a calibration measures (how it ran, not what it asked)
_NOT_VARIANT = {"seed", "concurrency", "timeout_s", "offline_latency_s", "batch_size", "cache",
                "rps", "executor", "ray_address", "ray_workers", "max_failed_share", "survey",
                "questions_left_out"}


@dataclass(frozen=True)
class Comparison:
    """Jobs by variant, the spread of each score, and the flips."""

    jobs: pd.DataFrame  # job_id, variant, seed
    spread: pd.DataFrame  # variant, who, level, score, mean, sd, min, max, seeds
    flips: pd.DataFrame  # level, result, across, variant, detail
    notes: tuple[str, ...] = ()


def _jobs(con: duckdb.DuckDBPyConnection, job_ids: Sequence[str]) -> list[dict[str, Any]]:
    found = []
    for job_id in job_ids:
        if not store.calibration_exists(con, job_id):
            raise PersonahubError(f"calibration {job_id}: no such calibration in the database "
                                  "(personahub calibrations lists them)")
        row = store.job_row(con, job_id)
        config, seed, status, sha1 = row["config"], row["seed"], row["status"], row["survey_sha1"]
        if store.summary_frame(con, job_id).empty:
            raise PersonahubError(f"calibration {job_id} ({status}) has no scores yet: resume it "
                                  f"first (personahub resume {job_id})")
        found.append({"job_id": job_id, "config": config, "seed": seed,
                      "status": status, "survey_sha1": sha1})
    return found


def variants(configs: Sequence[dict[str, object]]) -> list[str]:
    """Return a label per config: the settings that differ between the configs (ignoring the seed and how
    a job ran), or "all" when none does.
    """
    keys = sorted({k for c in configs for k in c} - _NOT_VARIANT)
    differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    labels = []
    for config in configs:
        parts = [f"{k}={_plain(config.get(k))}" for k in differing]
        labels.append(", ".join(parts) or "all")
    return labels


def _plain(value: object) -> str:
    if isinstance(value, list | tuple):
        return "/".join(str(v) for v in value) or "-"
    return str(value)


def _levels(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Return a job's overall and per-attribute means, the model labelled with its steering."""
    frame = store.summary_levels(con, job_id)
    frame["who"] = [source_label(s, t, ("", "")) for s, t in zip(frame["source"],
                                                                  frame["steering"], strict=True)]
    return frame


def spread(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd, min and max of each score over a variant's seeds."""
    long = scores.melt(id_vars=["variant", "seed", "who", "level"], value_vars=list(SCORES),
                       var_name="score", value_name="value")
    grouped = long.groupby(["variant", "who", "level", "score"], sort=False)["value"]
    out = grouped.agg(mean="mean", sd=lambda v: v.std(ddof=1) if v.count() > 1 else np.nan,
                      min="min", max="max", seeds="count").reset_index()
    return out


def _sign(value: float) -> int:
    return 0 if not np.isfinite(value) or value == 0 else (1 if value > 0 else -1)


def _detail(pairs: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{name}: {value:+.3f}" for name, value in pairs)


def _flip(level: str, result: str, across: str, variant: str,
          pairs: list[tuple[str, float]]) -> dict[str, str] | None:
    signs = {_sign(v) for _, v in pairs} - {0}
    if len(signs) < 2:
        return None
    return {"level": level, "result": result, "across": across, "variant": variant,
            "detail": _detail(pairs)}


def _between_variants(at: pd.DataFrame, level: str, variant_names: list[str],
                      models: list[str]) -> list[dict[str, str]]:
    """One variant's model against another's at one level, on the seeds both ran."""
    found = []
    for i, first in enumerate(variant_names):
        for second in variant_names[i + 1:]:
            left = at[at["variant"] == first].set_index("seed")
            right = at[at["variant"] == second].set_index("seed")
            for model in (m for m in models if m in left and m in right):
                diffs = [(f"seed {int(s)}", float(left.at[s, model] - right.at[s, model]))
                         for s in left.index if s in right.index]
                flip = _flip(level, f"{model}: {first} vs {second}", "seeds", "", diffs)
                if flip:
                    found.append(flip)
    return found


def flips(scores: pd.DataFrame) -> pd.DataFrame:
    """Every result whose sign is not the same across seeds or variants."""
    wide = scores.pivot_table(index=["variant", "seed", "level"], columns="who",
                              values="representativeness", sort=False).reset_index()
    models = [c for c in wide.columns if str(c).startswith(MODEL)]
    baselines = [b for b in BASELINE_ORDER if b in wide.columns]
    results: list[tuple[str, str, str]] = [(m, b, f"{m} vs {b}") for m in models for b in baselines]
    results += [(a, b, f"{a} vs {b}") for i, a in enumerate(models) for b in models[i + 1:]]
    found: list[dict[str, str]] = []
    variant_names = list(dict.fromkeys(wide["variant"]))
    for level in dict.fromkeys(wide["level"]):
        at = wide[wide["level"] == level]
        for a, b, name in results:
            means: list[tuple[str, float]] = []
            for variant in variant_names:
                rows = at[at["variant"] == variant]
                diffs = [(f"seed {int(s)}", float(x - y)) for s, x, y in
                         zip(rows["seed"], rows[a], rows[b], strict=True)]
                flip = _flip(level, name, "seeds", variant, diffs)
                if flip:
                    found.append(flip)
                values = [d for _, d in diffs if np.isfinite(d)]
                if values:
                    means.append((variant, float(np.mean(values))))
            flip = _flip(level, name, "variants", "", means)
            if flip:
                found.append(flip)
        found += _between_variants(at, str(level), variant_names, models)
    return pd.DataFrame(found, columns=["level", "result", "across", "variant", "detail"])


def compare(con: duckdb.DuckDBPyConnection, job_ids: Sequence[str]) -> Comparison:
    """Compare two or more scored calibrations of one survey."""
    if len(set(job_ids)) < 2:
        raise PersonahubError("compare: give two or more calibration job ids")
    jobs = _jobs(con, list(dict.fromkeys(job_ids)))
    surveys = {j["survey_sha1"] for j in jobs}
    if len(surveys) > 1:
        raise PersonahubError("compare: the calibrations scored different surveys (or survey "
                              "files that changed); compare calibrations of one survey")
    labels = variants([j["config"] for j in jobs])
    notes = []
    question_sets = {store.question_ids(con, j["job_id"]) for j in jobs}
    if len(question_sets) > 1:
        notes.append("the calibrations asked different questions of the survey: their means are "
                     "over different questions")
    frames = []
    for job, label in zip(jobs, labels, strict=True):
        frame = _levels(con, job["job_id"])
        frame["variant"], frame["seed"], frame["job_id"] = label, job["seed"], job["job_id"]
        frames.append(frame)
    scores = pd.concat(frames, ignore_index=True).sort_values(["seed"], kind="stable")
    seen = scores.groupby(["variant", "seed"])["job_id"].nunique()
    if (seen > 1).any():
        notes.append("some variant ran a seed twice: both jobs count as seeds of it")
    table = pd.DataFrame({"job_id": [j["job_id"] for j in jobs], "variant": labels,
                          "seed": [j["seed"] for j in jobs], "status": [j["status"] for j in jobs]})
    return Comparison(table, spread(scores), flips(scores), tuple(notes))

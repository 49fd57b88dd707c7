"""An evaluation at a glance, and the splits exports write.

An evaluation is found by its job id, its split id or its synthesis job. The quality table
gathers what a user of the data asks about: the split, verified share, solver agreement,
contamination, judge validity, model accuracy and diversity. The console, the report and the
dataset card all show it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from personahub.analysis.export import EvaluationSides
from personahub.analysis.judgments import latest_validity, wilson
from personahub.core.errors import PersonahubError
from personahub.core.jobs_store import find_job, list_jobs
from personahub.pipelines.evaluate import EVAL_KIND, EVALUATION, EvalConfig, agreement_matrix
from personahub.pipelines.evaluate_items import item_set
from personahub.pipelines.evaluate_scores import (
    contamination_counts,
    group_scores,
    referenced_counts,
    split_job_of,
    split_of,
    verified_counts,
)
from personahub.pipelines.evaluate_split import is_outside, split_summary

if TYPE_CHECKING:
    import pandas as pd

QUALITY_COLUMNS = ["figure", "group", "value", "low", "high", "detail"]
Side = Literal["train", "test"]


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: its split's id, the synthesis job (or outside item set, ``items-...``),
    and the evaluation job (None when only the split was named).
    """

    eval_id: str
    job: str
    job_id: str | None = None
    config: EvalConfig | None = None

    @property
    def models(self) -> tuple[str, ...]:
        """The scored models' specs (as stored: redacted)."""
        return self.config.models if self.config is not None else ()

    @property
    def outside(self) -> bool:
        """Whether it evaluates an outside item set rather than a synthesis job's items."""
        return is_outside(self.job)


def _config(stored: Mapping[str, object]) -> tuple[EvalConfig, str]:
    """Return the settings stored in an evaluation job's row (lists back to tuples), and its split id.
    """
    stored = EVALUATION.upgrade(dict(stored))
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in stored.items() if k in names}
    config = EvalConfig(**fields)
    return config, str(stored.get("split") or config.eval_id)


def find_evaluation(con: duckdb.DuckDBPyConnection, evaluation: str | None = None, *,
                    job: str | None = None) -> Evaluation | None:
    """Find the named evaluation, else the latest evaluation of the synthesis job.

    Args:
        con: the database.
        evaluation: an evaluation job's id or a split's id.
        job: the synthesis job (it must match a named evaluation).

    Returns:
        The evaluation; None when the job has none (a named one that is not found is an error).
    """
    if evaluation is None:
        if job is None:
            raise PersonahubError("give an evaluation id or a synthesis job")
        rows = list_jobs(con, kind=EVAL_KIND, parent_id=job)
        if not rows:
            return None
        config, split = _config(rows[0].config)
        return Evaluation(split, job, rows[0].job_id, config)
    found = find_job(con, evaluation)
    if found is not None and found.kind == EVAL_KIND:
        config, split = _config(found.config)
        ev = Evaluation(split, config.source, found.job_id, config)
    else:
        split_job = split_job_of(con, evaluation)
        if split_job is None:
            raise PersonahubError(f"--evaluation {evaluation}: no such evaluation (give the "
                                  "evaluation's evaluation-... id)")
        ev = Evaluation(evaluation, split_job)
        for row in list_jobs(con, kind=EVAL_KIND):  # the newest job on that split, if any
            config, split = _config(row.config)
            if split == evaluation:
                ev = Evaluation(evaluation, config.source, row.job_id, config)
                break
    if job is not None and ev.job != job:
        raise PersonahubError(f"--evaluation {evaluation} evaluates job {ev.job}, not {job}")
    return ev


def split_item_ids(con: duckdb.DuckDBPyConnection, ev: Evaluation, side: Side) -> frozenset[str]:
    """Return the items of one side of the split; contaminated ones are in neither unless kept."""
    if side not in ("train", "test"):
        raise PersonahubError(f"--split {side!r}: train or test")
    return frozenset(item for item, s in split_of(con, ev.eval_id).items() if s == side)


def _row(figure: str, group: str, value: float | int | None, low: float | None = None,
         high: float | None = None, detail: str = "") -> list[object]:
    return [figure, group, value, low, high, detail]


def quality_table(con: duckdb.DuckDBPyConnection, ev: Evaluation, *, embedder: str = "hash",
                  pairs: int = 200, seed: int = 0) -> pd.DataFrame:
    """Return the evaluation's quality figures in one table.

    Args:
        con: the database.
        ev: the evaluation.
        embedder: the diversity figures' embedder spec ("hash" calls no model).
        pairs: persona/output pairs sampled per task.
        seed: their sampling seed.

    Returns:
        A frame with QUALITY_COLUMNS: figure, group, value, Wilson low/high for shares, detail.
    """
    import pandas as pd

    from personahub.analysis.diversity_table import diversity_table
    from personahub.models.embedders import make_embedder

    sides = split_of(con, ev.eval_id)
    counts = {s: sum(v == s for v in sides.values()) for s in ("train", "test", "excluded")}
    rows = []
    items = item_set(con, ev.job) if ev.outside else None
    if items is not None:
        left = (f"; left out {items.left_out} row{'' if items.left_out == 1 else 's'} without a "
                "question" if items.left_out else "")
        answers = (f"answer column {items.answer_column!r}, {items.with_reference} with a "
                   "reference" if items.answer_column else "no answer column")
        rows.append(_row("item file", Path(items.path).name, items.rows,
                         detail=f"rows; question column {items.question_column!r}, "
                                f"{answers}{left}"))
    rows += [_row("items", "all", len(sides)), _row("split", "train", counts["train"]),
             _row("split", "test", counts["test"])]
    split = split_summary(con, ev.eval_id)
    if split is not None:
        threshold = ev.config.family_threshold if ev.config is not None else None
        rows.append(_row("near-duplicate families",
                         f"Jaccard >= {threshold:g}" if threshold is not None else "all",
                         split.families,
                         detail=f"{split.family_items} items, each family on one side"))
    verified, answered = verified_counts(con, ev.eval_id)
    by_reference = referenced_counts(con, ev.eval_id)
    if answered:
        rows.append(_row("verified share", "test", verified / answered,
                         *wilson(verified, answered), f"{verified}/{answered}"
                         + (f", {by_reference} by reference answer" if by_reference else "")))
    matrix = agreement_matrix(con, ev.eval_id)
    specs = sorted(matrix)
    shares = [(a, b, matrix[a][b]) for i, a in enumerate(specs) for b in specs[i + 1:]]
    known = [(a, b, s) for a, b, s in shares if s is not None]
    if known:
        low = min(known, key=lambda t: t[2])
        rows.append(_row("solver agreement", "mean of pairs",
                         sum(s for _, _, s in known) / len(known),
                         detail=f"{len(specs)} solvers, {len(known)} pairs"))
        rows.append(_row("solver agreement", f"{low[0]} ~ {low[1]}", low[2], detail="lowest pair"))
    for bench, n in contamination_counts(con, ev.eval_id).items():
        name = Path(bench).name
        kept = ev.config is not None and ev.config.keep_contaminated
        rows.append(_row("contaminated share", name, n / len(sides), *wilson(n, len(sides)),
                         f"{n}/{len(sides)} {'kept' if kept else 'left out'}"))
    validity = None if ev.outside else latest_validity(con, ev.job)
    if validity is not None:
        low_v, high_v = validity.valid.interval
        rows.append(_row("judge validity", validity.model, validity.valid.value, low_v, high_v,
                         f"{validity.valid.yes}/{validity.valid.n} ({validity.judge_id})"))
    if ev.models:
        scores = group_scores(con, ev.eval_id, ev.models)
        for r in scores[scores["by"] == "all"].itertuples():
            rows.append(_row("model accuracy", str(r.model), r.accuracy, r.low, r.high,
                             f"{r.correct}/{r.total} verified"))
    diversity = {} if ev.outside else diversity_table(
        con, make_embedder(embedder), job_id=ev.job, all_jobs=False, pairs=pairs, seed=seed)
    for group, result in diversity.items():
        s = result.summary
        rows.append(_row("distinct-2", group, s.distinct_2, detail=f"{s.items} items"))
        rows.append(_row("persona similarity (mean)", group, s.persona_mean,
                         detail=f"{s.pairs} pairs, {embedder}"))
        rows.append(_row("output similarity (mean)", group, s.output_mean,
                         detail=f"{s.pairs} pairs, {embedder}"))
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


# figures that are counts, not shares or means
_COUNTS = ("items", "split", "item file", "near-duplicate families")


def _value(value: Any, figure: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if figure in _COUNTS:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def quality_lines(table: pd.DataFrame) -> list[str]:
    """Return the table as aligned console lines (each value followed by its interval, if any)."""
    cells = [(str(r.figure), str(r.group), _value(r.value, str(r.figure))
              + (f" [{_value(r.low)}, {_value(r.high)}]" if r.low is not None and r.low == r.low
                 else ""), str(r.detail)) for r in table.itertuples()]
    head = ("figure", "group", "value [95% CI]", "detail")
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(3)]
    return ["  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3]
            for c in [head, *cells]]


def card_lines(table: pd.DataFrame) -> list[str]:
    """Return the table in markdown, for the dataset card and the report page."""
    lines = ["| figure | group | value | 95% CI | detail |", "| --- | --- | --- | --- | --- |"]
    for r in table.itertuples():
        ci = (f"{_value(r.low)}–{_value(r.high)}" if r.low is not None and r.low == r.low
              else "")
        lines.append(f"| {r.figure} | {str(r.group).replace('|', '/')} | "
                     f"{_value(r.value, str(r.figure))} | "
                     f"{ci} | {r.detail} |")
    return lines


def export_selection(con: duckdb.DuckDBPyConnection, *, job: str | None,
                     evaluation: str | None = None, split: Side | None = None,
                     hf: bool = False) -> dict[str, object]:
    """Return what an export of a synthesis job writes, given --evaluation and --split.

    Args:
        con: the database.
        job: the synthesis job (None: the evaluation's).
        evaluation: the evaluation (None: the job's latest).
        split: only this side; None writes every item, or both sides for a Hugging Face folder.
        hf: for a Hugging Face export rather than a plain one.

    Returns:
        Keyword arguments for export_accounted or export_hf_accounted (``split``: the sides,
        so the export can say what it left out).
    """
    if job is None and evaluation is None:
        return {}
    ev = find_evaluation(con, evaluation, job=job)
    if ev is not None and ev.outside:
        refuse_outside(con, ev)
    if ev is None:
        if split is not None:
            raise PersonahubError(f"--split {split}: job {job} has no evaluation (personahub "
                                  "evaluate --job ... makes its split)")
        return {"job": job}
    name = ev.job_id or ev.eval_id
    sides = split_of(con, ev.eval_id)
    if not hf:
        return {"job": ev.job, "split": EvaluationSides(name, sides, (split,) if split else None)} \
            | ({"only": split_item_ids(con, ev, split)} if split is not None else {})
    written: tuple[Side, ...] = (split,) if split is not None else ("train", "test")
    return {"job": ev.job, "splits": {s: split_item_ids(con, ev, s) for s in written},
            "evaluation": name, "quality": card_lines(quality_table(con, ev)),
            "split": EvaluationSides(name, sides, written)}


def refuse_outside(con: duckdb.DuckDBPyConnection, ev: Evaluation) -> None:
    """Refuse to export an outside item set's evaluation: its items are someone else's data, in
    eval_items, not a synthesis job's to export."""
    items = item_set(con, ev.job)
    raise PersonahubError(f"--evaluation {ev.job_id or ev.eval_id} evaluates an outside item set "
                          f"({items.path if items is not None else ev.job}): export exports "
                          "synthesized items; its items are in eval_items")


def write_report(con: duckdb.DuckDBPyConnection, out_dir: str | Path, evaluation: str, *,
                 overwrite: bool = False) -> tuple[Path, pd.DataFrame]:
    """Write the evaluation's report page (report --evaluation); returns its path and quality table."""
    import pandas as pd

    from personahub.analysis.evaluation_report import write_evaluation_report

    ev = find_evaluation(con, evaluation)
    assert ev is not None  # a named evaluation is found or refused
    table = quality_table(con, ev)
    scores = group_scores(con, ev.eval_id, ev.models) if ev.models else pd.DataFrame(
        columns=["model", "by", "group", "correct", "total", "accuracy", "low", "high"])
    scores = scores[scores["by"].isin(["all", "task"])].reset_index(drop=True)
    items = item_set(con, ev.job) if ev.outside else None
    facts = [("evaluation", ev.job_id or ev.eval_id), ("split", ev.eval_id),
             ("item file", f"{items.path} (SHA-256 {items.sha256[:12]}…, {ev.job})")
             if items is not None else ("synthesis job", ev.job)]
    if ev.config is not None:
        facts += [("solvers", ", ".join(ev.config.solvers)),
                  ("agree", f"{ev.config.agree} of {len(ev.config.solvers)}"),
                  ("models", ", ".join(ev.config.models) or "none")]
    index = write_evaluation_report(out_dir, title=f"personahub report — evaluation "
                                    f"{ev.job_id or ev.eval_id}", facts=facts, quality=table,
                                    quality_md=card_lines(table), scores=scores,
                                    overwrite=overwrite)
    return index, table

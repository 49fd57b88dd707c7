"""An evaluation's page (``personahub report --evaluation ID``; matplotlib, Agg).

It draws what the caller computed: the quality table and each model's accuracy per task with
Wilson intervals, as index.html and index.md (for a dataset card).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from personahub.analysis.experiment_report import _frame_html
from personahub.analysis.figures import subplots
from personahub.analysis.report import LITERAL_TEXT
from personahub.analysis.report_page import page_head, save_figure
from personahub.core.outputs import atomic_file, staged_folder

__all__ = ["EVALUATION_FILES", "write_evaluation_report"]

EVALUATION_FILES = ("index.html", "index.md", "evaluation_scores.png")
SCORES_NOTE = ("Each scored model's accuracy on the verified test items, overall and per task, "
               "with its 95% Wilson interval.")


def _draw_scores(scores: pd.DataFrame, path: Path) -> None:
    """Accuracy per (model, task) with Wilson error bars; one row per model and group."""
    labels = [f"{r.model}: {r.group}" for r in scores.itertuples()]
    y = np.arange(len(scores))
    acc = scores["accuracy"].to_numpy(float)
    err = np.vstack([acc - scores["low"].to_numpy(float), scores["high"].to_numpy(float) - acc])
    fig, ax = subplots(figsize=(8, max(1.6, 0.45 * len(scores) + 0.9)))
    ax.errorbar(acc, y, xerr=err, fmt="o", capsize=3)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("accuracy on the verified test items (95% Wilson interval)")
    save_figure(fig, path)


def _markdown(title: str, facts: Sequence[tuple[str, str]], quality: Sequence[str],
              scores: pd.DataFrame, drawn: bool) -> str:
    lines = [f"# {title}", "", *(f"- **{k}:** {v}" for k, v in facts), "",
             "## Quality at a glance", "", *quality, "", "## Scores", "", SCORES_NOTE, ""]
    if drawn:
        lines += ["![scores](evaluation_scores.png)", "",
                  "| model | by | group | correct | total | accuracy | 95% CI |",
                  "| --- | --- | --- | --- | --- | --- | --- |",
                  *(f"| {r.model} | {r.by} | {r.group} | {r.correct} | {r.total} | "
                    f"{r.accuracy:.3f} | {r.low:.3f}–{r.high:.3f} |" for r in scores.itertuples())]
    else:
        lines.append("No model was scored (`personahub evaluate --model SPEC`).")
    return "\n".join(lines) + "\n"


def write_evaluation_report(out_dir: str | Path, *, title: str,
                            facts: Sequence[tuple[str, str]], quality: pd.DataFrame,
                            quality_md: Sequence[str], scores: pd.DataFrame,
                            overwrite: bool = False) -> Path:
    """Write an evaluation's page and score chart, all or nothing; returns the HTML path."""
    drawn = not scores.empty and scores["accuracy"].notna().any()
    if drawn:
        scores = scores[scores["accuracy"].notna()]
    with staged_folder(Path(out_dir), overwrite=overwrite, names=EVALUATION_FILES) as staged, \
            matplotlib.rc_context(LITERAL_TEXT):
        if drawn:
            _draw_scores(scores, staged / "evaluation_scores.png")
        images = [("Scores per model and task", "evaluation_scores.png" if drawn else "",
                   SCORES_NOTE if drawn else "No model was scored.")]
        parts = page_head(title, facts, [])
        shown = quality.astype(object).where(quality.notna(), "")  # no "nan" cells
        parts += ["<h2>Quality at a glance</h2>", _frame_html(shown)]
        for heading, image, note in images:
            parts += [f"<h2>{html.escape(heading)}</h2>", f"<p>{html.escape(note)}</p>"]
            if image:
                parts.append(f"<img src='{image}' alt='{html.escape(heading)}'>")
        if drawn:
            parts.append(_frame_html(scores))
        parts.append("</body></html>")
        with atomic_file(staged / "index.html", overwrite=False) as f:
            f.write("\n".join(parts))
        with atomic_file(staged / "index.md", overwrite=False) as f:
            f.write(_markdown(title, facts, quality_md, scores, drawn))
    return Path(out_dir) / "index.html"

"""The calibrate command's console: a 100-column summary of a finished calibration.

``personahub calibrate`` and ``personahub resume`` of a calibration print the same lines, so
they live here rather than in either command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personahub.analysis.calibration_console import fitted, method_table
from personahub.analysis.calibration_store import job_row, scores_frame
from personahub.analysis.calibration_verdict import archetype_verdicts
from personahub.core.store import connect
from personahub.pipelines.calibrate import CALIBRATION
from personahub.pipelines.calibrate_fit import fit_lines
from personahub.pipelines.calibrate_questions import left_out_lines
from personahub.pipelines.calibrate_scores import elicit_lines


def console_lines(summary: Any, db: Path, verbose: bool = False) -> list[str]:
    """Return what calibrate prints: with ``verbose`` every table (the job's report); else lines
    fitting 100 columns: what was asked, the engine, a row per method and baseline with its
    intervals, questions and calls, the price of archetypes in words, and the verdict.

    Args:
        summary: the finished calibration's summary.
        db: the database it was stored in.
        verbose: print every table (``calibrate -v``).

    Returns:
        The console's lines.
    """

    full = CALIBRATION.report(summary, db)
    if verbose:
        return full
    lines = full[:2]  # what was asked and answered, and the engine
    if summary.weighting:
        lines.append(f"human answers: one row per respondent, {summary.weighting}")
    lines += left_out_lines(summary.questions, summary.left_out)
    for name, groups in (("without a matching persona, not scored", summary.empty_groups),
                         ("with fewer personas than --n", summary.small_groups)):
        if groups:
            lines.append(f"{len(groups)} groups {name}: {', '.join(groups[:6])}"
                         + (" ..." if len(groups) > 6 else ""))
    if summary.fit is not None:  # the choice and its held-out scores, never a training score
        lines += fit_lines(summary.fit, summary.intervals, summary.standings,
                           calls=summary.calls, answered=summary.answered_calls)
    else:
        lines += elicit_lines(summary)[1:]  # the logprobs temperature (calls are in the table)
        lines += method_table(summary.intervals, summary.panel_intervals, summary.steering,
                              summary.calls)
    if not summary.price.empty:
        lines.append("the price of archetypes:")
        lines += [f"  {line}" for line in archetype_verdicts(_scores(db, summary.job_id),
                                                               summary.price, _seed(db, summary))]
    if summary.verdict:
        lines += [f"verdict: {summary.verdict[0]}", *(f"  {v}" for v in summary.verdict[1:])]
    if summary.batches:
        lines.append(summary.batches)
    if summary.failed:
        lines.append(f"resume to ask the failed ones again: "
                     f"{CALIBRATION.resume_hint(summary.job_id, db)}")
    lines.append("every table (per attribute, dispersion, panel sizes, the price per group): -v, "
                 "or the report:")
    lines.append(f"  personahub report --calibration {summary.job_id} --db {db} --out report/")
    return fitted(lines)


def _scores(db: Path, job_id: str) -> object:

    con = connect(db, read_only=True)
    try:
        return scores_frame(con, job_id)
    finally:
        con.close()


def _seed(db: Path, summary: Any) -> int:

    con = connect(db, read_only=True)
    try:
        return int(job_row(con, summary.job_id)["seed"] or 0)
    finally:
        con.close()

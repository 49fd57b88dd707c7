"""The survey profile of a fitted calibration (calibrate --fit), for the report and listings.

Read from the job's tables alone: the profile row (what the fit chose and every configuration it
tried, with its training score) and the folds (which questions the fit saw).
"""

from __future__ import annotations

import html

import duckdb

from personahub.analysis import calibration_store as store

__all__ = ["NOT_PROMISED", "profile_html"]

#: what a survey profile does not promise, said wherever one is shown
NOT_PROMISED = ("A profile was chosen and scored on these questions and this population, with "
                "this model. It promises nothing on other questions (other topics, other "
                "wordings), other populations or another model; a run whose agents have seen "
                "events is asked with them, which the calibration did not measure.")


def profile_html(con: duckdb.DuckDBPyConnection, job_id: str) -> list[str]:
    """Return the report's survey-profile section (nothing for a calibration without --fit)."""
    row = store.profile_row(con, job_id)
    if row is None:
        return []
    esc = html.escape
    folds = store.fold_rows(con, job_id)
    held = sorted(q for q, f in folds.items() if f == 0)
    training = sorted(q for q, f in folds.items() if f != 0)
    shown = [e["question_id"] for e in row["examples"]]
    facts = [("method", row["method"]), ("steering", row["steering"]),
             ("temperature", f"{row['temperature']:.3g} (each persona's distribution scaled "
                             "p^(1/T), fitted on the training folds)"),
             ("examples", ", ".join(shown) or "none"), ("model", str(row["model"])),
             ("held-out fold", f"{len(held)} questions, never seen by the fit: {', '.join(held)}"),
             ("training folds", f"{len(training)} questions: {', '.join(training)}"),
             ("use it", f"personahub run SCENARIO --survey-profile {job_id}")]
    items = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    tried = "".join(
        f"<tr><td>{esc(str(c['label']))}</td><td>"
        f"{'-' if c['training'] is None else format(c['training'], '.3f')}</td>"
        f"<td>{c['temperature']:.3g}</td><td>{c['cells']}</td>"
        f"<td>{'chosen' if c['chosen'] else ''}</td></tr>" for c in row["candidates"])
    return ["<h2>Survey profile</h2>",
            "<p>The tables and verdict below score this profile on the held-out fold only. The "
            "training scores here chose it; they are not held-out scores.</p>",
            f"<table>{items}</table>",
            "<h3>Configurations tried (training score: each training fold scored with a "
            "temperature fitted on the others)</h3>",
            "<table><tr><th>configuration</th><th>training score</th><th>T</th>"
            f"<th>question x group pairs</th><th></th></tr>{tried}</table>",
            f"<p>{esc(NOT_PROMISED)}</p>"]

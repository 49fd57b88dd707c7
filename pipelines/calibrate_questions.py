"""Which questions a calibration scored: per model row, and of the survey, with why the rest were
left out.

A few-shot or logprobs row does not score its held-out questions, so the table's means are over
different questions; the console says so beside each row's count (the verdict compares each row
with the baselines on its own questions). A survey's questions that were not asked are counted
by reason, so a wave of 78 questions scored on 22 says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from personahub.analysis.calibration_scores import MODEL, POPULATION, source_label
from personahub.pipelines.elicit import find

__all__ = ["SHOWN_IDS", "left_out_lines", "question_count_lines", "questions_per_row"]

SHOWN_IDS = 4  # question ids printed per reason a question was left out


def questions_per_row(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the questions each source scored (a row with a representativeness), whole population aside.

    Args:
        scores: a calibration's per question x group x source scores.

    Returns:
        One row per source as tables name it: who, steering (empty for a baseline) and questions.
    """
    scored = scores[(scores["attribute"] != POPULATION) & scores["representativeness"].notna()]
    steerings = list(dict.fromkeys(scored.loc[scored["source"] == MODEL, "steering"]))
    rows = []
    for (source, steering), own in scored.groupby(["source", "steering"], sort=False):
        rows.append({"who": source_label(str(source), str(steering), steerings),
                     "steering": str(steering) if source == MODEL else "",
                     "questions": int(own["question_id"].nunique())})
    return pd.DataFrame(rows, columns=["who", "steering", "questions"])


def _why(steering: str) -> str:
    method = find(steering)
    return "" if method is None else method.held_out_note


def question_count_lines(counts: pd.DataFrame) -> list[str]:
    """Console lines giving each model row's question count when they differ from the baselines'.

    Args:
        counts: questions_per_row's table.

    Returns:
        Nothing when every model row scored as many questions as uniform; else the counts.
    """
    if counts.empty:
        return []
    per = counts.set_index("who")["questions"]
    baseline = int(per["uniform"]) if "uniform" in per.index else None
    models = counts[counts["steering"] != ""]
    if baseline is None or (models["questions"] == baseline).all():
        return []
    cells = [f"  {row.who} {row.questions}" + ("" if row.questions == baseline
                                                 else _why(row.steering))
             for row in models.itertuples(index=False)]
    return [f"questions scored per row: the baselines {baseline}", *cells,
            "  the table's means are over different questions; the verdict compares each row "
            "with", "  uniform and no_persona on the row's own questions"]


def left_out_lines(asked: int, left_out: Mapping[str, Sequence[str]],
                   shown: int = SHOWN_IDS) -> list[str]:
    """Console lines counting the survey's questions the calibration left out, by reason.

    Args:
        asked: the questions the calibration asks.
        left_out: why -> the ids of the questions left out for that reason.
        shown: ids printed per reason.

    Returns:
        Nothing when no question was left out; else a count line and one line per reason.
    """
    dropped = sum(len(ids) for ids in left_out.values())
    if not dropped:
        return []
    lines = [f"questions: {asked} of the survey's {asked + dropped} asked; {dropped} left out:"]
    for reason, ids in left_out.items():
        more = " ..." if len(ids) > shown else ""
        lines.append(f"  {len(ids)} {reason}: {', '.join(ids[:shown])}{more}")
    return lines

"""A calibration's console summary: one row per scored source, and lines fitted to the console.

The default console shows the verdict, this table (each method's and baseline's overall mean
with its intervals, questions and calls) and the intervals; the full tables (per attribute,
dispersion, panel sizes, the price per group) print under ``--verbose`` and go in the report.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from personahub.analysis.calibration_scores import BASELINES, MODEL

#: the console's width: every line fits it, a longer one wraps with an indent
WIDTH = 100

#: the two ceilings, named for what they are (a perfect simulator cannot beat either)
CEILINGS = {
    "perfect_panel": "best at this panel size: a perfect simulator with as many answers",
    "human_resample": "best the data allows: a fresh sample of the same people",
}


def fitted(lines: Iterable[str], width: int = WIDTH) -> list[str]:
    """Each line wrapped to width, its continuation indented two spaces past its own indent."""
    out: list[str] = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()))
        out += textwrap.wrap(line, width=width, initial_indent="", subsequent_indent=indent + "  ",
                             break_long_words=False, break_on_hyphens=False)
    return out


def _interval(low: object, high: object) -> str:
    """``[low, high]`` to three places; blank where either end is missing."""
    if not isinstance(low, float | int) or not isinstance(high, float | int) \
            or pd.isna(low) or pd.isna(high):
        return ""
    return f"[{float(low):.3f}, {float(high):.3f}]"


def row_calls(who: str, steerings: Sequence[str], calls: Mapping[str, int]) -> str:
    """Return the model calls a row made: a steering's share of the sample calls (each steering asks
    the same panels), a method's own, the no_persona baseline's; blank for rows that ask nothing
    (tempered panels, uniform, the human rows)."""
    if who == "no_persona":
        return str(calls.get("no_persona", "")) if calls.get("no_persona") else ""
    if not who.startswith(MODEL):
        return ""
    steering = who[len(MODEL) + 1:-1] if who.endswith("]") else (steerings[0] if steerings else "")
    if steering in steerings:
        sample = calls.get("sample", 0)
        return str(sample // max(len(steerings), 1)) if sample else ""
    return str(calls[steering]) if steering in calls else ""


def method_table(intervals: pd.DataFrame, panel: pd.DataFrame, steerings: Sequence[str],
                 calls: Mapping[str, int]) -> list[str]:
    """One row per model row, baseline and ceiling: its overall mean, its 95% intervals over
    questions and over panel answers, the questions it scored and the calls it made.

    Args:
        intervals: the calibration's intervals over questions (who, attribute, mean, low, high,
            questions).
        panel: the model rows' intervals over panel answers (who, attribute, panel_low,
            panel_high).
        steerings: the calibration's steerings (the sample rows).
        calls: planned calls per method (``sample``, ``distribution``, ..., ``no_persona``).

    Returns:
        Console lines, at most WIDTH wide; none without intervals.
    """
    if intervals.empty:
        return []
    overall = intervals[intervals["attribute"] == "overall"].set_index("who")
    redrawn = (panel[panel["attribute"] == "overall"].set_index("who") if not panel.empty
               else pd.DataFrame(columns=["panel_low", "panel_high"]))
    models = [w for w in overall.index if w.startswith(MODEL)]
    ceilings = [w for w in overall.index if w.split("[")[0] in CEILINGS]
    order = [*models, *(b for b in BASELINES if b in overall.index), *ceilings]
    width = max(len("row"), *(len(w) for w in order))
    head = (f"{'row':<{width}}  {'mean':>5}  {'over questions':<14}  {'over panel answers':<18}"
            f"  {'questions':>9}  {'calls':>6}")
    lines = ["overall representativeness (1 = as people answer), 95% intervals:", head]
    for who in order:
        row = overall.loc[who]
        over_panel = (_interval(redrawn.loc[who, "panel_low"], redrawn.loc[who, "panel_high"])
                      if who in redrawn.index else "")
        lines.append(f"{who:<{width}}  {row['mean']:>5.3f}  {_interval(row['low'], row['high']):<14}"
                     f"  {over_panel:<18}  {int(row['questions']):>9}  "
                     f"{row_calls(who, steerings, calls):>6}".rstrip())
    for who in ceilings:
        lines.append(f"  {who}: {CEILINGS[who.split('[')[0]]}")
    return fitted(lines)

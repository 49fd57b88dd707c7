"""Validity rates from judgments, overall and per criterion, with 95% Wilson intervals.

Wilson because rates sit near 100% (the paper's 96.5% of 200), where the normal interval
spills past 1 and is too narrow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import pandas as pd

def wilson(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of successes / n; (0, 1) when n is 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return 0.0, 1.0
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return max(0.0, float(low)), min(1.0, float(high))


@dataclass(frozen=True)
class Rate:
    """Yes of n with its 95% Wilson interval."""

    yes: int
    n: int

    @property
    def value(self) -> float:
        return self.yes / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.yes, self.n)

    def text(self) -> str:
        """E.g. "96.5% (193/200; 95% CI 93.0–98.3%)"."""
        low, high = self.interval
        return (f"{100 * self.value:.1f}% ({self.yes}/{self.n}; 95% CI "
                f"{100 * low:.1f}–{100 * high:.1f}%)")

    def as_dict(self) -> dict[str, object]:
        low, high = self.interval
        return {"yes": self.yes, "n": self.n, "rate": self.value, "low": low, "high": high}


@dataclass
class Validity:
    """One judge's figures: valid items, and each criterion's yes-rate."""

    judge_id: str
    model: str
    valid: Rate
    criteria: dict[str, Rate] = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        return "offline" in [part.strip() for part in self.model.split(",")]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for the live view."""
        return {"judge_id": self.judge_id, "model": self.model, "offline": self.offline,
                "valid": self.valid.as_dict(),
                "criteria": {name: rate.as_dict() for name, rate in self.criteria.items()}}


def validity(con: duckdb.DuckDBPyConnection, judge_id: str) -> Validity | None:
    """Return a judge's figures (None when it has no judgments)."""
    found = con.execute("SELECT valid, criteria, model FROM judgments WHERE judge_id = ? "
                        "ORDER BY item_id", [judge_id]).fetchall()
    if not found:
        return None
    yes: dict[str, int] = {}
    asked: dict[str, int] = {}
    for _, criteria, _ in found:
        for name, verdict in json.loads(criteria).items():
            asked[name] = asked.get(name, 0) + 1
            yes[name] = yes.get(name, 0) + bool(verdict.get("yes"))
    return Validity(judge_id, str(found[0][2] or ""), Rate(sum(bool(r[0]) for r in found), len(found)),
                    {name: Rate(yes[name], asked[name]) for name in asked})


def judged_item_ids(con: duckdb.DuckDBPyConnection, judge_id: str) -> set[str]:
    """Return the items a judge has rated (what its resume skips)."""
    return {r[0] for r in con.execute("SELECT item_id FROM judgments WHERE judge_id = ?",
                                      [judge_id]).fetchall()}


def judgment_rows(con: duckdb.DuckDBPyConnection, judge_id: str) -> pd.DataFrame:
    """Every column of a judge's judgments (criteria as JSON text), by item id."""
    return con.execute("SELECT * FROM judgments WHERE judge_id = ? ORDER BY item_id",
                       [judge_id]).df()


def sample_judgments(con: duckdb.DuckDBPyConnection, judge_id: str, n: int) -> pd.DataFrame:
    """Return some of the judge's verdicts (item_id, valid, criteria), the same ones every time."""
    return con.execute("SELECT item_id, valid, criteria FROM judgments WHERE judge_id = ? "
                       "ORDER BY hash(item_id) LIMIT ?", [judge_id, n]).df()


def latest_judge(con: duckdb.DuckDBPyConnection, target_id: str) -> str | None:
    """Return the judge that last judged a run or job (None if none did)."""
    found = con.execute("SELECT judge_id FROM judgments WHERE target_id = ? GROUP BY judge_id "
                        "ORDER BY max(created_at) DESC, judge_id LIMIT 1", [target_id]).fetchall()
    return found[0][0] if found else None


def latest_validity(con: duckdb.DuckDBPyConnection, target_id: str) -> Validity | None:
    """Return the latest judge's figures for a run or job, if it was judged."""
    judge_id = latest_judge(con, target_id)
    return validity(con, judge_id) if judge_id is not None else None


OFFLINE_NOTE = ("the offline engine is not a judge of quality: its verdicts are deterministic "
                "stand-ins that test the pipeline, not a measurement")


def validity_lines(figures: Validity) -> list[str]:
    """Return the figures as lines of text, for the CLI and the report."""
    lines = [f"valid: {figures.valid.text()}  [judge {figures.judge_id}, model {figures.model}]"]
    lines += [f"  {name}: {rate.text()}" for name, rate in figures.criteria.items()]
    if figures.offline:
        lines.append(f"note: {OFFLINE_NOTE}")
    return lines

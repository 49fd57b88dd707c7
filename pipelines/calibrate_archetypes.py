"""calibrate --archetypes K: what is lost by asking once per archetype instead of once per persona.

Each archetype is asked once per question for answer shares, and each member's answer is drawn
from them with the member's own seeded generator; the resulting "archetypes:K" row is scored like
any model row.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from personahub.analysis import calibration_store as store
from personahub.analysis.calibration_scores import POPULATION, representativeness, row_rng, split
from personahub.analysis.survey import Question
from personahub.core.errors import UsageError
from personahub.personas.archetypes import Archetypes, group_archetypes
from personahub.pipelines.calibrate_data import panel_personas, profiles
from personahub.pipelines.elicit import stated_row
from personahub.pipelines.elicit.base import Ask, GroupCounts, QuestionPlan, Stored, stated_vector
from personahub.pipelines.elicit.distribution import Distribution
from personahub.pipelines.prompts.population import attribute_lines

__all__ = ["ARCHETYPES", "PRICE_COLUMNS", "ArchetypeMethod", "answer_classes", "archetype_k",
           "archetype_method", "archetype_methods", "archetype_respondent", "check_archetypes",
           "describe", "draw_members", "grouping", "price_lines", "price_table"]

ARCHETYPES = "archetypes"
PRICE_COLUMNS = ["method", "k", "attribute", "group", "questions", "similarity",
                 "tvd", "archetype_refusal", "sample_refusal", "archetype_representativeness",
                 "sample_representativeness", "human_resample", "calls", "sample_calls"]

GroupKey = tuple[str, str]
Personas = Mapping[str, tuple[str, Mapping[str, str]]]  # id -> (text, demographics)


def archetype_method(k: int) -> str:
    """Return the row label of --archetypes K, "archetypes:K"."""
    return f"{ARCHETYPES}:{k}"


def archetype_k(method: str) -> int | None:
    """Return the K of an "archetypes:K" label (None for any other label)."""
    head, colon, tail = method.partition(":")
    return int(tail) if head == ARCHETYPES and colon and tail.isdigit() else None


def archetype_respondent(k: int, archetype: int) -> str:
    """Return the respondent of an archetype's ask (unique across K)."""
    return f"archetype {archetype} of {k}"


def check_archetypes(values: Iterable[int]) -> tuple[int, ...]:
    """Return the --archetypes values, checked: whole numbers from 1, none given twice.

    Raises:
        UsageError: a bad or repeated value.
    """
    chosen = tuple(values)
    for k in chosen:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise UsageError(f"--archetypes {k!r}: give a whole number from 1")
    if len(set(chosen)) != len(chosen):
        raise UsageError("--archetypes: a value is given twice")
    return chosen


def grouping(personas: Personas, k: int, seed: int) -> tuple[list[str], Archetypes]:
    """Return the panel personas (sorted ids) and their grouping into k archetypes.

    Raises:
        UsageError: k is larger than the number of panel personas.
    """
    ids = sorted(personas)
    if k > len(ids):
        raise UsageError(f"--archetypes {k}: the panels hold only {len(ids)} personas")
    grouped = group_archetypes([personas[p][0] for p in ids],
                               [dict(personas[p][1]) for p in ids], k, seed)
    return ids, grouped


def describe(personas: Personas, ids: Sequence[str], grouped: Archetypes, archetype: int) -> str:
    """Describe an archetype as the prompt's Group section: its size, and its representative's text and
    demographics.
    """
    text, attributes = personas[ids[grouped.representatives[archetype]]]
    size = int(grouped.sizes[archetype])
    return (f"{size} people like this one:\n{text}\n" + attribute_lines(dict(attributes))).strip()


def draw_members(shares: np.ndarray, members: Sequence[str], seed: int,
                 question_id: str) -> list[int]:
    """Each member's answer index, drawn from the archetype's shares with the member's own seeded
    generator, so it is stable across runs and resumes.
    """
    p = np.asarray(shares, float)
    p = p / p.sum()
    return [int(row_rng(seed, ARCHETYPES, pid, question_id).choice(len(p), p=p))
            for pid in members]


def archetype_counts(con: duckdb.DuckDBPyConnection, job_id: str,
                     questions: Mapping[str, Question], panels: Mapping[GroupKey, Sequence[str]],
                     personas: Personas, ks: Sequence[int], seed: int
                     ) -> dict[str, dict[tuple[str, str, str], np.ndarray]]:
    """Answer counts per archetypes row and (question, attribute, group), from the members' draws."""
    member_groups: dict[str, list[GroupKey]] = {}
    for key, members in panels.items():
        for pid in members:
            member_groups.setdefault(pid, []).append(key)
    out: dict[str, dict[tuple[str, str, str], np.ndarray]] = {}
    stated = [row for row in store.stated_answers(con, job_id) if archetype_k(row[0]) is not None]
    for k in ks:
        method = archetype_method(k)
        ids, grouped = grouping(personas, k, seed)
        of_archetype = {archetype_respondent(k, a): [ids[i] for i in grouped.members(a)]
                   for a in range(len(grouped))}
        counts = out.setdefault(method, {})
        for row_method, qid, respondent, shares in stated:
            if row_method != method or respondent not in of_archetype:
                continue
            question = questions[qid]
            vector = stated_vector(question, shares)
            if float(vector.sum()) <= 0:
                continue
            who = of_archetype[respondent]
            for pid, option in zip(who, draw_members(vector, who, seed, qid), strict=True):
                for attribute, grp in member_groups.get(pid, []):
                    cell = counts.setdefault((qid, attribute, grp), np.zeros(len(question.options)))
                    cell[option] += 1
    return out


@dataclass(frozen=True)
class ArchetypeMethod(Distribution):
    """Ask each archetype once per question for its shares, and count its members' draws: the
    "archetypes:K" row (--archetypes K, not an --elicit method).
    """

    k: int = 1
    size: int = 0  # the archetypes formed (planning only: at most K)

    NAME = ARCHETYPES
    SYNTAX = f"{ARCHETYPES}:K"
    HELP = "one call per archetype and question; each member's answer drawn from its shares"
    from_panel = True  # one drawn answer per panel member

    @property
    def label(self) -> str:
        """Return "archetypes:K"."""
        return archetype_method(self.k)

    def asks(self, plan: QuestionPlan, held_out: Collection[str]) -> list[Ask]:
        """Plan one ask per archetype."""
        return [Ask(plan.question_id, self.label, archetype_respondent(self.k, a), None)
                for a in range(self.size)]

    def ask_count(self, plan: QuestionPlan, held_out: Collection[str]) -> int:
        """Count one ask per archetype."""
        return self.size

    def distributions(self, stored: Stored) -> dict[str, GroupCounts]:
        """Return the members' draws from their archetype's stated shares, counted per group."""
        personas = profiles(panel_personas(stored.con, stored.panels))
        return archetype_counts(stored.con, stored.job_id, dict(stored.survey.questions),
                                stored.panels, personas, [self.k], stored.seed)


def archetype_methods(ks: Iterable[int]) -> tuple[ArchetypeMethod, ...]:
    """Return the --archetypes K values' rows as methods (scored, not planned: no sizes)."""
    return tuple(ArchetypeMethod(k) for k in ks)


def _tvd(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


def answer_classes(question: Question, counts: Sequence[float]) -> np.ndarray | None:
    """Return the counts as shares of the answer classes: each substantive option, then refusal (every
    refusal option together); None when nothing was answered.

    A refusal is an answer the price compares, not one it drops: a row that refuses less than
    asking every agent differs from it by that much.
    """
    vector = np.asarray(counts, float)
    n = len(question.ordinal)
    classes = np.append(vector[:n], vector[n:].sum())
    total = float(classes.sum())
    return classes / total if total > 0 else None


def price_table(scores: pd.DataFrame, questions: Mapping[str, Question],
                calls: Mapping[str, int], sample: str | None = None) -> pd.DataFrame:
    """Return the price of each K, per group.

    Args:
        scores: a job's scores.
        questions: the job's questions by id.
        calls: answered calls per steering value.
        sample: the per-agent row to compare with (default: the first sampled row: a steering).

    Returns:
        A frame with PRICE_COLUMNS: similarity to the per-agent row over the substantive
        answers (as representativeness, so it reads against the floor), total variation
        distance over the answer classes with refusal as one (answer_classes), both rows'
        refusal shares and representativeness, the human_resample floor, and the calls.
    """
    # per group only: the whole-population rows mix the groups (and may carry no counts)
    model = scores[(scores["source"] == "model") & (scores["attribute"] != POPULATION)]
    methods = [m for m in dict.fromkeys(model["steering"]) if archetype_k(m) is not None]
    # a sampled row: no archetype, no tempered row (":tempered"), no group-level method's row
    agents = [m for m in dict.fromkeys(model["steering"])
              if archetype_k(m) is None and ":" not in m and not stated_row(m)]
    sample = sample or (agents[0] if agents else None)
    if not methods or sample is None:
        return pd.DataFrame(columns=PRICE_COLUMNS)
    keys = ["question_id", "attribute", "group"]
    own = model[model["steering"] == sample].set_index(keys)
    floor = scores[scores["source"] == "human_resample"].groupby(
        ["attribute", "group"], sort=False)["representativeness"].mean()
    rows = []
    for method in methods:
        k = archetype_k(method)
        mine = model[model["steering"] == method]
        for (attribute, group), cells in mine.groupby(["attribute", "group"], sort=False):
            sims, tvds, reps, theirs, refused, others = [], [], [], [], [], []
            for row in cells.itertuples(index=False):
                key = (row.question_id, attribute, group)
                if key not in own.index or not isinstance(row.counts, str):
                    continue
                other = own.loc[key]
                if not isinstance(other["counts"], str):
                    continue
                question = questions[row.question_id]
                mine_counts, their_counts = json.loads(row.counts), json.loads(other["counts"])
                full_a = answer_classes(question, mine_counts)
                full_b = answer_classes(question, their_counts)
                if full_a is None or full_b is None:
                    continue
                tvds.append(_tvd(full_a, full_b))
                refused.append(float(full_a[-1]))
                others.append(float(full_b[-1]))
                reps.append(row.representativeness)
                theirs.append(other["representativeness"])
                a = split(question, mine_counts).distribution
                b = split(question, their_counts).distribution
                if a is not None and b is not None:  # all refused: no opinion to compare
                    sims.append(representativeness(question, a, b))
            rows.append({"method": method, "k": k, "attribute": attribute, "group": group,
                         "questions": len(tvds),
                         "similarity": float(np.mean(sims)) if sims else float("nan"),
                         "tvd": float(np.mean(tvds)) if tvds else float("nan"),
                         "archetype_refusal": float(np.mean(refused)) if refused
                         else float("nan"),
                         "sample_refusal": float(np.mean(others)) if others else float("nan"),
                         "archetype_representativeness": float(np.nanmean(reps)) if reps
                         else float("nan"),
                         "sample_representativeness": float(np.nanmean(theirs)) if theirs
                         else float("nan"),
                         "human_resample": float(floor.get((attribute, group), float("nan"))),
                         "calls": int(calls.get(method, 0)),
                         "sample_calls": int(calls.get(sample, 0))})
    return pd.DataFrame(rows, columns=PRICE_COLUMNS)


def price_lines(table: pd.DataFrame) -> list[str]:
    """Return the price table as console lines: one block per K, one line per group."""
    if table.empty:
        return []
    lines = ["the price of archetypes (archetype row vs per-agent sample, per group; "
             "similarity 1 - W1/(options-1) over the substantive answers, TVD over the answers "
             "with refusal as one, beside people's resample floor):"]
    for method, part in table.groupby("method", sort=False):
        first = part.iloc[0]
        lines.append(f"  {method}: {first['calls']} calls vs {first['sample_calls']} per agent; "
                     f"mean similarity {part['similarity'].mean():.3f}, "
                     f"mean TVD {part['tvd'].mean():.3f}, refusals "
                     f"{part['archetype_refusal'].mean():.0%} vs "
                     f"{part['sample_refusal'].mean():.0%} per agent")
        for row in part.itertuples(index=False):
            lines.append(f"    {row.attribute}={row.group}: similarity {row.similarity:.3f}, "
                         f"TVD {row.tvd:.3f}, refusals {row.archetype_refusal:.0%} (per agent "
                         f"{row.sample_refusal:.0%}), representativeness "
                         f"{row.archetype_representativeness:.3f}"
                         f" (per agent {row.sample_representativeness:.3f}, floor "
                         f"{row.human_resample:.3f})")
    return lines

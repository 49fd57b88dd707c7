"""What a calibration asks about and whom: questions, the human answers, and each group's panel.

Each group's panel is its first N members in the population's seeded order; a persona in
several groups answers once and counts in each, as a real respondent does. Everything is stored
with the job, so a resume never reads the survey file again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np

from personahub.analysis import calibration_store as store
from personahub.analysis.survey import OVERALL, Question, Survey
from personahub.core.errors import PersonahubError, UsageError
from personahub.personas.demographics import KEYS, canonical
from personahub.personas.record import Persona
from personahub.personas.sampling import HubQuery, draw_ids
from personahub.personas.store import fetch_personas

__all__ = ["ALL", "Group", "Selected", "draw_panels", "group_rows", "human_rows", "load_panels",
           "load_survey", "panel_personas", "population_query", "profiles", "select",
           "survey_sha1"]

ALL = "all"  # --population all: every persona of the hub
GroupKey = tuple[str, str]  # (attribute, group label joined by " / ")


@dataclass(frozen=True)
class Group:
    """One survey group personas answer for: its attribute, labels and carve conditions."""

    attribute: str
    labels: tuple[str, ...]
    conditions: tuple[tuple[str, str], ...]

    @property
    def key(self) -> GroupKey:
        return self.attribute, " / ".join(self.labels)

    @property
    def name(self) -> str:
        return f"{self.attribute}={' / '.join(self.labels)}"


@dataclass(frozen=True)
class Selected:
    """The questions a job asks and, per question, the groups it is scored on."""

    survey: Survey
    questions: tuple[str, ...]
    groups: dict[str, tuple[Group, ...]]  # question id -> its scored groups
    # the survey's other questions: why each was left out -> their ids, in reading order
    left_out: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def all_groups(self) -> list[Group]:
        """Every group of every question, once, in reading order."""
        seen: dict[GroupKey, Group] = {}
        for qid in self.questions:
            for group in self.groups[qid]:
                seen.setdefault(group.key, group)
        return list(seen.values())


def survey_sha1(survey: Survey) -> str:
    """Return a fingerprint of a survey's questions and counts, so a comparison can check two jobs share it.
    """
    what = [[q.qid, q.text, list(q.options), list(q.ordinal),
             sorted([a, list(g), list(v)] for (a, g), v in survey.counts.get(q.qid, {}).items())]
            for q in survey.questions.values()]
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _scored_groups(survey: Survey, qid: str, attributes: set[str] | None) -> tuple[Group, ...]:
    question = survey.questions[qid]
    groups = []
    for attribute, labels, counts in survey.groups(qid):
        if attributes is not None and attribute.upper() not in attributes:
            continue
        conditions = survey.conditions(attribute, labels)
        if conditions and float(np.asarray(counts)[: len(question.ordinal)].sum()) > 0:
            groups.append(Group(attribute, labels, conditions))
    return tuple(groups)


def select(survey: Survey, *, questions: Sequence[str] = (), attributes: Sequence[str] = (),
           limit: int | None = None) -> Selected:
    """Select the questions and groups a job asks; an unknown name is a one-line usage error."""
    where = survey.source or "the survey"
    wanted_attributes = {a.upper() for a in attributes} or None
    if wanted_attributes is not None:
        known = {a.upper() for a in survey.attributes()}
        unknown = sorted(wanted_attributes - known)
        if unknown:
            raise UsageError(f"--attribute {unknown[0]}: {where} has no such attribute (it has "
                             f"{', '.join(survey.attributes()) or 'none'})")
    for qid in questions:
        if qid in survey.skipped:
            raise UsageError(f"--question {qid}: {where} cannot score it ({survey.skipped[qid]})")
        if qid not in survey.counts:
            raise UsageError(f"--question {qid}: {where} has no such question with answers")
    chosen = list(dict.fromkeys(questions)) or [q for q in survey.questions if q in survey.counts]
    groups = {qid: _scored_groups(survey, qid, wanted_attributes) for qid in chosen}
    for qid in questions:
        if not groups[qid]:
            raise UsageError(f"--question {qid}: no group of it matches a persona demographic "
                             "(docs/personas.md#demographics)")
    kept = [qid for qid in chosen if groups[qid]]
    limited = kept[limit:] if limit is not None else []
    kept = kept[:limit] if limit is not None else kept
    if not kept:
        raise PersonahubError(f"{where}: no question has a group personas can be matched to "
                              "(age, sex, race, region, education, income, party, ideology, "
                              "marital status)")
    left_out: dict[str, list[str]] = {}
    for qid, reason in survey.skipped.items():
        left_out.setdefault(reason, []).append(qid)
    unmatched = ("no group of --attribute " + ", ".join(sorted(wanted_attributes))
                 if wanted_attributes else "no group with answers that a persona can match")
    for qid in survey.questions:
        if qid in questions or qid in survey.skipped:
            continue
        why = ("not named by --question" if questions
               else "no answers" if qid not in survey.counts
               else unmatched if not groups[qid]
               else f"beyond --limit {limit}" if qid in limited else None)
        if why is not None:
            left_out.setdefault(why, []).append(qid)
    return Selected(survey, tuple(kept), {qid: groups[qid] for qid in kept},
                    {reason: tuple(ids) for reason, ids in left_out.items()})


def question_rows(job_id: str, selected: Selected) -> list[dict[str, object]]:
    """Return the job's rows of the calibration_questions table."""
    rows = []
    for position, qid in enumerate(selected.questions):
        q = selected.survey.questions[qid]
        rows.append({"job_id": job_id, "question_id": qid, "position": position, "text": q.text,
                     "options": json.dumps(list(q.options)), "ordinal": json.dumps(list(q.ordinal))})
    return rows


def human_rows(job_id: str, selected: Selected) -> list[dict[str, object]]:
    """Return the job's calibration_human rows: each scored group's counts and each question's overall."""
    survey = selected.survey
    rows: list[dict[str, object]] = []
    for qid in selected.questions:
        vectors = survey.counts[qid]
        for group in selected.groups[qid]:
            rows.append({"job_id": job_id, "question_id": qid, "attribute": group.attribute,
                         "grp": group.key[1], "labels": json.dumps(list(group.labels)),
                         "counts": json.dumps([float(c) for c in vectors[(group.attribute,
                                                                         group.labels)]])})
        rows.append({"job_id": job_id, "question_id": qid, "attribute": OVERALL, "grp": OVERALL,
                     "labels": json.dumps([OVERALL]),
                     "counts": json.dumps([float(c) for c in survey.overall(qid)])})
    return rows


def load_survey(con: duckdb.DuckDBPyConnection, job_id: str, source: str = "") -> Selected:
    """Load a job's stored questions and human answers as a Survey, and each question's scored groups.
    """
    questions: dict[str, Question] = {}
    for qid, text, options, ordinal in store.question_rows(con, job_id):
        questions[qid] = Question(qid, text, tuple(json.loads(options)),
                                  tuple(float(v) for v in json.loads(ordinal)))
    counts: dict[str, dict[tuple[str, tuple[str, ...]], tuple[float, ...]]] = {q: {} for q in questions}
    groups: dict[str, list[tuple[str, tuple[str, ...]]]] = {q: [] for q in questions}
    for qid, attribute, labels, vector in store.human_rows(con, job_id):
        group = tuple(json.loads(labels))
        counts[qid][(attribute, group)] = tuple(json.loads(vector))
        if attribute != OVERALL:
            groups[qid].append((attribute, group))
    survey = Survey(questions, counts, source=source)
    return Selected(survey, tuple(questions), {
        qid: tuple(Group(a, g, survey.conditions(a, g)) for a, g in keys)
        for qid, keys in groups.items()})


def population_query(population: str, carve: Sequence[str] = ()) -> HubQuery:
    """Return the personas a calibration may ask: a population id (or "all") and carve conditions."""
    own = () if population == ALL else (f"population={population}",)
    return HubQuery(carve=(*own, *carve), carve_label="--population/--carve")


def _matches(attributes: Mapping[str, object], conditions: tuple[tuple[str, str], ...]) -> bool:
    return all(canonical(key, attributes.get(key)) == slug for key, slug in conditions)


def draw_panels(con: duckdb.DuckDBPyConnection, groups: Sequence[Group], query: HubQuery, n: int,
                seed: int) -> dict[GroupKey, list[str]]:
    """Each group's panel: its first n members in the population's seeded order (maybe none)."""
    try:
        # the population is named (population=ID): its members are drawn as the user asked
        order = draw_ids(con, query, None, seed=seed, gates=None)
    except PersonahubError as exc:
        raise PersonahubError(f"--population: {exc} (draw one with personas sample-population)") \
            from None
    attributes = {p.persona_id: p.attributes for p in fetch_personas(con, order)}
    panels: dict[GroupKey, list[str]] = {}
    for group in groups:
        members = panels.setdefault(group.key, [])
        for pid in order:
            if len(members) >= n:
                break
            if _matches(attributes.get(pid, {}), group.conditions):
                members.append(pid)
    return panels


def group_rows(job_id: str, panels: Mapping[GroupKey, Sequence[str]]) -> list[dict[str, object]]:
    """Return the job's calibration_panels rows."""
    return [{"job_id": job_id, "attribute": attribute, "grp": grp, "position": i, "persona_id": pid}
            for (attribute, grp), members in panels.items() for i, pid in enumerate(members)]


def load_panels(con: duckdb.DuckDBPyConnection, job_id: str) -> dict[GroupKey, list[str]]:
    """Load a job's stored panels."""
    panels: dict[GroupKey, list[str]] = {}
    for attribute, grp, pid in store.panel_rows(con, job_id):
        panels.setdefault((attribute, grp), []).append(pid)
    return panels


def panel_personas(con: duckdb.DuckDBPyConnection,
                   panels: Mapping[GroupKey, Sequence[str]]) -> dict[str, Persona]:
    """Return the personas of the panels, by id."""
    ids = list(dict.fromkeys(pid for members in panels.values() for pid in members))
    return {p.persona_id: p for p in fetch_personas(con, ids)}


def demographics_of(attributes: Mapping[str, object]) -> dict[str, str]:
    """Return a persona's canonical demographics."""
    return {k: str(attributes[k]) for k in KEYS if attributes.get(k) not in (None, "")}


def profiles(personas: Mapping[str, Persona]) -> dict[str, tuple[str, dict[str, str]]]:
    """Each panel persona's text and canonical demographics, by id (what the asker is given)."""
    return {pid: (p.text, demographics_of(p.attributes)) for pid, p in personas.items()}

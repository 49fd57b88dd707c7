"""The SQL of the calibration tables, for every other calibration module.

It sits in analysis because both the job (pipelines) and the report read it. Only the scores
are written here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

from personahub.core.jobs_store import find_job, list_jobs
from personahub.core.store import insert_rows, scalar, transaction

__all__ = ["answer_totals", "answered_keys", "answers_by_steering", "answers_frame", "calibration_exists",
           "fold_rows", "human_rows", "job_row", "list_calibrations", "no_persona_counts",
           "panel_answer_counts", "panel_rows", "persona_answers", "profile_row", "question_ids",
           "question_rows", "replace_profile", "replace_scores", "scores_frame", "stated_answers",
           "summary_frame", "summary_levels"]

JOBS = "calibration_jobs"
ANSWERS = "calibration_answers"
FOLDS = "calibration_folds"
PROFILES = "calibration_profiles"
PROFILE_JSON = ("params", "examples", "candidates")  # the profile's JSON columns
FITTED_ROW = "profile"  # the steering of a fit's model row: its profile on the held-out fold


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the file has the calibration tables; a reader does not create them."""
    return _has_table(con, JOBS)


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]))


def calibration_exists(con: duckdb.DuckDBPyConnection, job_id: str) -> bool:
    """Whether the job is a calibration of this database."""
    if not _has_tables(con):
        return False
    return bool(scalar(con, f"SELECT count(*) FROM {JOBS} WHERE job_id = ?", [job_id]))


def job_row(con: duckdb.DuckDBPyConnection, job_id: str) -> dict[str, Any]:
    """Return a calibration's row (steering as a list) with its job status, seed and config."""
    frame = con.execute(f"SELECT * FROM {JOBS} WHERE job_id = ?", [job_id]).df()
    job = find_job(con, job_id)
    if frame.empty or job is None:
        raise KeyError(job_id)
    row: dict[str, Any] = frame.iloc[0].to_dict()
    row["steering"] = json.loads(row["steering"])
    row.update(status=job.status, seed=job.seed, config=job.config)
    return row


def question_rows(con: duckdb.DuckDBPyConnection, job_id: str) -> list[tuple[str, str, str, str]]:
    """(question id, text, options JSON, ordinal JSON) in the job's order."""
    return [tuple(r) for r in con.execute(
        "SELECT question_id, text, options, ordinal FROM calibration_questions WHERE job_id = ? "
        "ORDER BY position", [job_id]).fetchall()]


def question_ids(con: duckdb.DuckDBPyConnection, job_id: str) -> tuple[str, ...]:
    """Return the job's question ids, sorted."""
    return tuple(r[0] for r in con.execute(
        "SELECT question_id FROM calibration_questions WHERE job_id = ? ORDER BY question_id",
        [job_id]).fetchall())


def human_rows(con: duckdb.DuckDBPyConnection, job_id: str) -> list[tuple[str, str, str, str]]:
    """(question id, attribute, labels JSON, counts JSON) in question order."""
    return [tuple(r) for r in con.execute(
        "SELECT h.question_id, h.attribute, h.labels, h.counts FROM calibration_human h "
        "JOIN calibration_questions q USING (job_id, question_id) WHERE h.job_id = ? "
        "ORDER BY q.position, h.rowid", [job_id]).fetchall()]


def panel_rows(con: duckdb.DuckDBPyConnection, job_id: str) -> list[tuple[str, str, str]]:
    """(attribute, group, persona id) of the job's panels, in panel order."""
    return [tuple(r) for r in con.execute(
        "SELECT attribute, grp, persona_id FROM calibration_panels WHERE job_id = ? "
        "ORDER BY attribute, grp, position", [job_id]).fetchall()]


def answered_keys(con: duckdb.DuckDBPyConnection, job_id: str) -> set[tuple[str, str, str]]:
    """(question id, steering, respondent) of every answer stored (what a resume skips)."""
    return {(q, s, r) for q, s, r in con.execute(
        f"SELECT question_id, steering, respondent FROM {ANSWERS} WHERE job_id = ?",
        [job_id]).fetchall()}


def answer_totals(con: duckdb.DuckDBPyConnection, job_id: str) -> tuple[int, int]:
    """(answers, refusals among them)."""
    answered, refused = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE refused) FROM {ANSWERS} WHERE job_id = ?",
        [job_id]).fetchall()[0]
    return int(answered or 0), int(refused or 0)


def answers_by_steering(con: duckdb.DuckDBPyConnection, job_id: str) -> dict[str, int]:
    """Answers per steering value (a steering, none, or an elicitation method)."""
    return {str(s): int(n) for s, n in con.execute(
        f"SELECT steering, count(*) FROM {ANSWERS} WHERE job_id = ? GROUP BY ALL",
        [job_id]).fetchall()}


def panel_answer_counts(con: duckdb.DuckDBPyConnection,
                        job_id: str) -> list[tuple[str, str, str, str, str, int]]:
    """(steering, question id, attribute, group, answer, count) per panel; a persona in several
    panels counts in each.
    """
    return [tuple(r) for r in con.execute(
        f"SELECT a.steering, a.question_id, p.attribute, p.grp, a.answer, count(*) "
        f"FROM {ANSWERS} a JOIN calibration_panels p "
        "ON p.job_id = a.job_id AND p.persona_id = a.persona_id "
        "WHERE a.job_id = ? AND a.persona_id IS NOT NULL GROUP BY ALL", [job_id]).fetchall()]


def no_persona_counts(con: duckdb.DuckDBPyConnection, job_id: str) -> list[tuple[str, str, int]]:
    """(question id, answer, count) of the no-persona asks."""
    return [tuple(r) for r in con.execute(
        f"SELECT question_id, answer, count(*) FROM {ANSWERS} WHERE job_id = ? "
        "AND persona_id IS NULL AND steering = 'none' GROUP BY ALL", [job_id]).fetchall()]


def stated_answers(con: duckdb.DuckDBPyConnection,
                   job_id: str) -> list[tuple[str, str, str, str]]:
    """Return (method, question id, group key, shares JSON) of group-level asks."""
    return [tuple(r) for r in con.execute(
        f"SELECT steering, question_id, respondent, reason FROM {ANSWERS} WHERE job_id = ? "
        "AND persona_id IS NULL AND steering <> 'none' ORDER BY ALL", [job_id]).fetchall()]


def persona_answers(con: duckdb.DuckDBPyConnection, job_id: str,
                    rows: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """(row, question id, persona id, shares JSON) of the given rows' per-persona distributions
    (a fit's configurations), in a stable order.
    """
    if not rows:
        return []
    return [tuple(r) for r in con.execute(
        f"SELECT steering, question_id, persona_id, reason FROM {ANSWERS} WHERE job_id = ? "
        "AND persona_id IS NOT NULL AND list_contains(?, steering) ORDER BY ALL",
        [job_id, list(rows)]).fetchall()]


def fold_rows(con: duckdb.DuckDBPyConnection, job_id: str) -> dict[str, int]:
    """Each question's fold of a fitted calibration (empty for any other)."""
    if not _has_table(con, FOLDS):
        return {}
    return {str(q): int(f) for q, f in con.execute(
        f"SELECT question_id, fold FROM {FOLDS} WHERE job_id = ? ORDER BY question_id",
        [job_id]).fetchall()}


def profile_row(con: duckdb.DuckDBPyConnection, job_id: str) -> dict[str, Any] | None:
    """Return a calibration's survey profile (its JSON columns read), or None: it has none."""
    if not _has_table(con, PROFILES):
        return None
    frame = con.execute(f"SELECT * FROM {PROFILES} WHERE job_id = ?", [job_id]).df()
    if frame.empty:
        return None
    row: dict[str, Any] = frame.iloc[0].to_dict()
    for name in PROFILE_JSON:
        row[name] = json.loads(row[name])
    return row


def replace_profile(con: duckdb.DuckDBPyConnection, row: dict[str, object]) -> None:
    """Store a calibration's survey profile in place of its earlier one, in one transaction."""
    stored = {k: (json.dumps(v) if k in PROFILE_JSON else v) for k, v in row.items()}
    with transaction(con):
        con.execute(f"DELETE FROM {PROFILES} WHERE job_id = ?", [row["job_id"]])
        insert_rows(con, PROFILES, [stored])


def replace_scores(con: duckdb.DuckDBPyConnection, job_id: str, scores: Sequence[dict[str, object]],
                   summary: Sequence[dict[str, object]]) -> None:
    """Store a job's scores and their means in place of its earlier ones, in one transaction."""
    with transaction(con):
        con.execute("DELETE FROM calibration_scores WHERE job_id = ?", [job_id])
        con.execute("DELETE FROM calibration_summary WHERE job_id = ?", [job_id])
        insert_rows(con, "calibration_scores", list(scores))
        insert_rows(con, "calibration_summary", list(summary))


def scores_frame(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Return the job's per question x group x source scores."""
    return con.execute(
        "SELECT * EXCLUDE (job_id, grp), grp AS \"group\" FROM calibration_scores "
        "WHERE job_id = ? ORDER BY rowid", [job_id]).df()


def summary_frame(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Return the job's mean scores per source, steering and level."""
    return con.execute(
        "SELECT source, steering, level, attribute, grp AS \"group\", representativeness, "
        "dispersion, modal_agreement, sd_ratio, scored FROM calibration_summary WHERE job_id = ? "
        "ORDER BY rowid", [job_id]).df()


def summary_levels(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Return the job's overall and per-attribute means."""
    return con.execute(
        "SELECT source, steering, CASE WHEN level = 'overall' THEN 'overall' ELSE attribute END "
        "AS level, representativeness, dispersion, modal_agreement, sd_ratio "
        "FROM calibration_summary "
        "WHERE job_id = ? AND level IN ('overall', 'attribute')", [job_id]).df()


def answers_frame(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Return the job's answers, one row per ask answered."""
    return con.execute(
        f"SELECT * EXCLUDE (job_id) FROM {ANSWERS} WHERE job_id = ? "
        "ORDER BY question_id, steering, respondent", [job_id]).df()


def list_calibrations(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every calibration, newest first, with the first steering's overall representativeness
    (a fitted one's: its profile's, on the held-out questions) and its survey profile, if any.
    """
    if not _has_tables(con):
        return []
    profiles = _has_table(con, PROFILES)
    listed = []
    for job in list_jobs(con, kind="calibration"):
        rows = con.execute(
            f"SELECT c.survey, c.population, c.n, c.steering, c.llm, s.representativeness "
            f"FROM {JOBS} c LEFT JOIN calibration_summary s ON s.job_id = c.job_id "
            "AND s.level = 'overall' AND s.source = 'model' "
            "AND s.steering = coalesce(?, json_extract_string(c.steering, '$[0]')) "
            "WHERE c.job_id = ?",
            [FITTED_ROW if job.config.get("fit") else None, job.job_id]).fetchall()
        if not rows:  # interrupted before its row was written
            continue
        survey, population, n, steering, llm, representativeness = rows[0]
        listed.append({"job_id": job.job_id, "status": job.status, "seed": job.seed,
                       "survey": survey, "population": population, "n": n,
                       "steering": json.loads(steering), "llm": llm,
                       "representativeness": representativeness,
                       "profile": profile_row(con, job.job_id) if profiles else None})
    return listed

"""SQL of the ``experiments`` table and the survey answers an experiment's outcomes read.

An experiment's runs are ordinary runs (``runs``, ``survey_answers``, ...); ``experiments`` links
each (experiment, arm, replicate) to its run, written once the run finished.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from personahub.core.store import insert_rows


def finished_arm_runs(con: duckdb.DuckDBPyConnection, experiment_id: str) -> pd.DataFrame:
    """The experiment's recorded runs (arm, replicate, seed, run_id, is_control, settings), in
    replicate and arm order: a run is recorded only once it finished."""
    return con.execute(
        "SELECT arm, replicate, seed, run_id, is_control, settings FROM experiments "
        "WHERE experiment_id = ? ORDER BY replicate, arm", [experiment_id]).df()


def record_arm_run(con: duckdb.DuckDBPyConnection, experiment_id: str, arm: str, replicate: int,
                   seed: int, run_id: str, is_control: bool, settings: str) -> None:
    """Link a finished run to its experiment, arm and replicate (replacing an older link);
    ``settings`` is the digest of what the run was run with (``experiments.arm_settings``)."""
    con.execute("DELETE FROM experiments WHERE experiment_id = ? AND arm = ? AND replicate = ?",
                [experiment_id, arm, replicate])
    insert_rows(con, "experiments", [{"experiment_id": experiment_id, "arm": arm,
                                      "replicate": replicate, "seed": seed, "run_id": run_id,
                                      "is_control": is_control, "settings": settings}])


def outcome_answers(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], survey_id: str,
                    step: int) -> pd.DataFrame:
    """One row per agent's answer to ``survey_id`` at ``step`` in these runs: run_id, agent_id,
    answer_choice, answer_scale (failed answers are absent)."""
    return con.execute(
        "SELECT run_id, agent_id, answer_choice, answer_scale FROM survey_answers "
        "WHERE run_id IN (SELECT unnest(?)) AND survey_id = ? AND step = ? "
        "ORDER BY run_id, agent_id", [list(run_ids), survey_id, step]).df()

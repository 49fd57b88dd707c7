"""SQL of the experiment tables and the survey answers an experiment's outcomes read.

An experiment's runs are ordinary runs; experiments links each (experiment, arm, replicate) to
its finished run, experiment_attempts to the run it last started, and experiment_agents holds a
within-world randomisation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb
import pandas as pd

from personahub.core.errors import PersonahubError
from personahub.core.store import insert_rows


def finished_arm_runs(con: duckdb.DuckDBPyConnection, experiment_id: str) -> pd.DataFrame:
    """Return the experiment's finished runs, in replicate and arm order."""
    return con.execute(
        "SELECT arm, replicate, seed, run_id, is_control, settings FROM experiments "
        "WHERE experiment_id = ? ORDER BY replicate, arm", [experiment_id]).df()


def record_arm_run(con: duckdb.DuckDBPyConnection, experiment_id: str, arm: str, replicate: int,
                   seed: int, run_id: str, is_control: bool, settings: str) -> None:
    """Link a finished run to its experiment, arm and replicate, replacing an older link."""
    con.execute("DELETE FROM experiments WHERE experiment_id = ? AND arm = ? AND replicate = ?",
                [experiment_id, arm, replicate])
    insert_rows(con, "experiments", [{"experiment_id": experiment_id, "arm": arm,
                                      "replicate": replicate, "seed": seed, "run_id": run_id,
                                      "is_control": is_control, "settings": settings}])


def record_attempt(con: duckdb.DuckDBPyConnection, experiment_id: str, arm: str, replicate: int,
                   run_id: str, settings: str) -> None:
    """Note the run an arm x replicate starts, in place of an earlier one (in the caller's
    transaction: the one that records the run)."""
    con.execute("DELETE FROM experiment_attempts WHERE experiment_id = ? AND arm = ? "
                "AND replicate = ?", [experiment_id, arm, replicate])
    insert_rows(con, "experiment_attempts", [
        {"experiment_id": experiment_id, "arm": arm, "replicate": replicate, "run_id": run_id,
         "settings": settings, "started_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}])


def attempts(con: duckdb.DuckDBPyConnection,
             experiment_id: str) -> list[tuple[str, int, str, str]]:
    """Return the run each arm x replicate of an experiment last started: arm, replicate, run id and
    settings."""
    return [(str(a), int(r), str(i), str(s)) for a, r, i, s in con.execute(
        "SELECT arm, replicate, run_id, settings FROM experiment_attempts WHERE experiment_id = ? "
        "ORDER BY replicate, arm", [experiment_id]).fetchall()]


def record_arm_agents(con: duckdb.DuckDBPyConnection, experiment_id: str, replicate: int,
                      run_id: str, rows: Sequence[tuple[str, int, str]]) -> None:
    """Store a within-world replicate's randomisation, replacing an older one."""
    con.execute("DELETE FROM experiment_agents WHERE experiment_id = ? AND replicate = ?",
                [experiment_id, replicate])
    insert_rows(con, "experiment_agents", [
        {"experiment_id": experiment_id, "replicate": replicate, "run_id": run_id,
         "persona_id": persona_id, "agent_id": agent_id, "arm": arm}
        for persona_id, agent_id, arm in rows])


def arm_agents(con: duckdb.DuckDBPyConnection, experiment_id: str) -> pd.DataFrame:
    """Return a within-world experiment's randomisation: replicate, run_id, persona_id, agent_id, arm."""
    return con.execute(
        "SELECT replicate, run_id, persona_id, agent_id, arm FROM experiment_agents "
        "WHERE experiment_id = ? ORDER BY replicate, agent_id", [experiment_id]).df()


def outcome_answers(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], survey_id: str,
                    step: int) -> pd.DataFrame:
    """Each agent's answer to the survey at a step in these runs (failed answers absent)."""
    return con.execute(
        "SELECT run_id, agent_id, persona_id, answer_choice, answer_scale FROM survey_answers "
        "WHERE run_id IN (SELECT unnest(?)) AND survey_id = ? AND step = ? "
        "ORDER BY run_id, agent_id", [list(run_ids), survey_id, step]).df()


def run_personas(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> pd.DataFrame:
    """Each agent's persona in these runs: run_id, agent_id, persona_id."""
    return con.execute(
        "SELECT run_id, agent_id, persona_id FROM run_agents "
        "WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id, agent_id", [list(run_ids)]).df()


def sql_outcome_values(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], name: str,
                       sql: str) -> pd.DataFrame:
    """Return the values a SQL outcome's query returns for each run: run_id, agent_id, value.

    The query runs once per run with ``$run_id`` bound; a per-run value has a NULL agent_id.

    Raises:
        PersonahubError: the query fails or returns another shape.
    """
    frames = []
    for run_id in run_ids:
        try:
            got = con.execute(sql, {"run_id": run_id}).df()
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PersonahubError(f"outcome {name!r}: its sql failed on run {run_id}: "
                                  f"{first}") from None
        columns = [str(c).lower() for c in got.columns]
        got.columns = columns
        if sorted(columns) == ["agent_id", "value"]:
            if got["agent_id"].duplicated().any():
                raise PersonahubError(f"outcome {name!r}: its sql returned agent "
                                      f"{got['agent_id'][got['agent_id'].duplicated()].iloc[0]} "
                                      f"more than once on run {run_id} (one row per agent)")
        elif columns == ["value"]:
            if len(got) != 1:
                raise PersonahubError(f"outcome {name!r}: its sql returned {len(got)} rows "
                                      f"without agent_id on run {run_id} (a per-run outcome is "
                                      "one row, column value)")
            got = got.assign(agent_id=None)
        else:
            raise PersonahubError(f"outcome {name!r}: its sql must return the columns agent_id, "
                                  f"value (per agent) or value (per run), got "
                                  f"{', '.join(columns) or 'none'}")
        try:
            value = pd.to_numeric(got["value"], errors="raise").astype(float)
        except (TypeError, ValueError):
            raise PersonahubError(f"outcome {name!r}: its sql returned a value that is no "
                                  f"number on run {run_id} ({got['value'].iloc[0]!r})") from None
        frames.append(pd.DataFrame({"run_id": run_id, "agent_id": got["agent_id"],
                                    "value": value}))
    if not frames:
        return pd.DataFrame(columns=["run_id", "agent_id", "value"])
    return pd.concat(frames, ignore_index=True)

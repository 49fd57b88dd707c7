"""What the Python API returns: a handle on one run or job in its DuckDB file, read as DataFrames.

A handle holds ids and the database path, not a connection: every read opens the file read-only
and closes it again, so a notebook never keeps the file locked against the next run or the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

#: the personas a persona job produced (or, for dedup, flagged), by job kind
_PERSONAS_OF = {
    "text_to_persona": "SELECT p.* FROM personas p WHERE p.persona_id IN (SELECT DISTINCT "
                       "unnest(CAST(persona_ids AS VARCHAR[])) FROM text_done WHERE corpus = "
                       "(SELECT corpus FROM text_jobs WHERE job_id = ?)) "
                       "ORDER BY p.seq",
    "dedup": "SELECT * FROM personas WHERE coalesce(is_duplicate, false) AND ? IS NOT NULL "
             "ORDER BY seq",
}


def _read(db: Path, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
    """``query`` on a read-only connection (with the analysis views), closed before returning."""
    from personahub.analysis.views import install_views
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        install_views(con)
        return con.execute(query, list(params or [])).df()
    finally:
        con.close()


def _items_frame(db: Path, *, job: str | None = None, run: str | None = None) -> pd.DataFrame:
    """A run's or synthesis job's items in the export's column layout (``analysis.export``)."""
    from personahub.analysis.export import load_items, parquet_table
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        return parquet_table(load_items(con, job=job, run=run)).to_pandas()
    finally:
        con.close()


@dataclass(frozen=True, kw_only=True)
class Job:
    """A finished (or stopped) job: ``kind``, ``job_id``, ``db`` and what the job function
    returned (``summary``); attributes the handle lacks are read from the summary."""

    kind: str  # synthesis | text_to_persona | expand | dedup | run | judge
    job_id: str
    db: Path
    summary: Any = None

    def __getattr__(self, name: str) -> Any:
        # keeps code written against the summaries (``summary.written``) working on handles
        summary = self.__dict__.get("summary")
        if name.startswith("_") or summary is None:
            raise AttributeError(name)
        return getattr(summary, name)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Any SQL over the database (read-only, analysis views installed) as a DataFrame."""
        return _read(self.db, query, params)

    def calls(self) -> pd.DataFrame:
        """The job's model calls (``llm_calls``)."""
        return self.sql("SELECT * FROM llm_calls WHERE job_id = ? ORDER BY started_at", [self.job_id])

    def export(self, path: str | Path, fmt: str = "chat", *, kind: str | None = None,
               drop_duplicates: bool = False, overwrite: bool = False) -> int:
        """Write a run's or synthesis job's items as ``personahub export`` does: ``fmt`` is
        personahub, chat, parquet (a file) or hf (a folder in the Hub's layout:
        data/*.parquet and a card ``datasets.load_dataset`` reads); returns
        the number of records."""
        from personahub.analysis.export import export
        from personahub.core.errors import PersonahubError
        from personahub.core.outputs import check_output
        from personahub.core.store import connect

        if self.kind not in ("run", "synthesis"):
            raise PersonahubError(f"export: a {self.kind} job has no items to export; use .items()")
        which = {"run": self.job_id} if self.kind == "run" else {"job": self.job_id}
        con = connect(self.db, read_only=True)
        try:
            if fmt == "hf":
                from personahub.analysis.export_hf import HF_FILES, export_hf

                check_output(path, db=self.db, force=overwrite, kind="dir", names=HF_FILES)
                return export_hf(con, path, kind=kind, drop_duplicates=drop_duplicates,
                                 overwrite=overwrite, **which)
            check_output(path, db=self.db, force=overwrite)
            return export(con, path, fmt, kind=kind, drop_duplicates=drop_duplicates,
                          overwrite=overwrite, **which)
        finally:
            con.close()

    def items(self) -> pd.DataFrame:
        """What the job made: synthesized items, or the personas a persona job produced
        (for ``dedup``: the personas flagged as duplicates)."""
        if self.kind == "synthesis":
            return _items_frame(self.db, job=self.job_id)
        if self.kind == "expand":
            return self._expansion_personas()
        return self.sql(_PERSONAS_OF[self.kind], [self.job_id])

    def _expansion_personas(self) -> pd.DataFrame:
        from personahub.core.store import connect
        from personahub.personas.expand import expansion_personas

        con: duckdb.DuckDBPyConnection = connect(self.db, read_only=True)
        try:
            ids = expansion_personas(con, self.job_id)
            return con.execute("SELECT * FROM personas WHERE list_contains(?, persona_id) "
                               "ORDER BY seq", [ids]).df()
        finally:
            con.close()


@dataclass(frozen=True, kw_only=True)
class Run(Job):
    """A simulation run: ``run_id``, ``db``, the ``RunSummary`` and its tables as DataFrames."""

    kind: str = "run"

    @property
    def run_id(self) -> str:
        return self.job_id

    def items(self) -> pd.DataFrame:
        """The run's emissions in the export's column layout (persona text, task, JSON content)."""
        return _items_frame(self.db, run=self.job_id)

    def emissions(self) -> pd.DataFrame:
        """Rows of ``emissions`` for this run, by step and agent."""
        return self.sql("SELECT * FROM emissions WHERE run_id = ? ORDER BY step, agent_id",
                        [self.job_id])

    def survey_answers(self) -> pd.DataFrame:
        """Rows of ``survey_answers`` for this run, by step, survey and agent."""
        return self.sql("SELECT * FROM survey_answers WHERE run_id = ? "
                        "ORDER BY step, survey_id, agent_id", [self.job_id])

    def messages(self) -> pd.DataFrame:
        """Rows of ``messages`` for this run."""
        return self.sql("SELECT * FROM messages WHERE run_id = ? ORDER BY step", [self.job_id])

    def decisions(self) -> pd.DataFrame:
        """Rows of ``decisions`` for this run (deliberate policy; empty for scripted runs)."""
        return self.sql("SELECT * FROM decisions WHERE run_id = ? ORDER BY step, agent_id",
                        [self.job_id])

    def interview(self, question: str, *, llm: str = "offline", **options: Any) -> pd.DataFrame:
        """Ask this run's agents ``question`` (``personahub.interview``: ``agent=`` or
        ``carve=``/``where=``, ``step=``, model flags); a DataFrame, one row per agent."""
        from personahub.api import interview

        return interview(question, run=self.job_id, db=self.db, llm=llm, **options)

    async def interview_async(self, question: str, *, llm: str = "offline",
                              **options: Any) -> pd.DataFrame:
        """``interview`` for ``await``."""
        from personahub.api import interview_async

        return await interview_async(question, run=self.job_id, db=self.db, llm=llm, **options)


@dataclass(frozen=True, kw_only=True)
class Judged(Job):
    """A judge (``personahub.judge``): ``judge_id``, ``db``, the ``JudgeSummary``, its
    judgments as a DataFrame and its validity figures."""

    kind: str = "judge"

    @property
    def judge_id(self) -> str:
        return self.job_id

    def items(self) -> pd.DataFrame:
        """The judge's rows of ``judgments`` (criteria as JSON text), by item id."""
        return self.sql("SELECT * FROM judgments WHERE judge_id = ? ORDER BY item_id", [self.job_id])

    def validity(self) -> Any:
        """The validity rate and per-criterion rates with 95% Wilson intervals
        (``analysis.judgments.Validity``; ``.valid.text()``, ``.as_dict()``)."""
        from personahub.analysis.judgments import validity
        from personahub.core.store import connect

        con = connect(self.db, read_only=True)
        try:
            return validity(con, self.job_id)
        finally:
            con.close()


@dataclass(frozen=True, kw_only=True)
class Calibration(Job):
    """A calibration (``personahub.calibrate``): ``job_id``, ``db``, the ``CalibrationSummary``
    and its tables as DataFrames (docs/calibration.md)."""

    kind: str = "calibration"

    def _frame(self, name: str) -> pd.DataFrame:
        from personahub.analysis import calibration_store
        from personahub.core.store import connect

        con = connect(self.db, read_only=True)
        try:
            frame: pd.DataFrame = getattr(calibration_store, name)(con, self.job_id)
            return frame
        finally:
            con.close()

    def scores(self) -> pd.DataFrame:
        """One row per question x group x source (``model`` per steering and the baselines
        ``uniform``, ``human_overall``, ``no_persona``): representativeness, dispersion, modal
        agreement, the refusal shares, the simulated counts."""
        return self._frame("scores_frame")

    def summary_table(self) -> pd.DataFrame:
        """The scores' means per source and steering: ``level`` overall, attribute and group."""
        return self._frame("summary_frame")

    def per_attribute(self, score: str = "representativeness") -> pd.DataFrame:
        """One row overall and per attribute, one column per source (as the command prints)."""
        from personahub.pipelines.calibrate_scores import per_attribute

        return per_attribute(self.summary_table(), score)

    def answers(self) -> pd.DataFrame:
        """Every answer: question, steering, respondent (a persona id, ``#k`` without one),
        the option chosen, whether it is a refusal, the model's reason."""
        return self._frame("answers_frame")

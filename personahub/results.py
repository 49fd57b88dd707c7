"""What the Python API returns: a handle on one run or job in its DuckDB file, read as DataFrames.

A handle holds ids and the path, not a connection: every read opens the file read-only and
closes it, so a notebook never locks the file against the next run or the CLI.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personahub.python_names import speaks_python

if TYPE_CHECKING:
    import pandas as pd

    from personahub.analysis.judgments import Validity
    from personahub.core.jobs_store import JobRow


def _read(db: Path, query: str, params: Sequence[object] | None = None) -> pd.DataFrame:
    """Run a query on a read-only connection with the analysis views."""
    from personahub.analysis.views import install_views
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        install_views(con)
        return con.execute(query, list(params or [])).df()
    finally:
        con.close()


def _frame(db: Path, read: Callable[..., pd.DataFrame], *args: object) -> pd.DataFrame:
    """Call a table owner's read on a read-only connection with the analysis views."""
    from personahub.analysis.views import install_views
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        install_views(con)
        return read(con, *args)
    finally:
        con.close()


#: rows a handle's card shows, picked by a hash of their id so they are the same each time
SAMPLE_ROWS = 3
_CELL = 120  # characters of a text cell in a card


def _counts(summary: object) -> dict[str, int | str]:
    """Return a summary's whole-number fields and small dicts of them."""
    if summary is None or not dataclasses.is_dataclass(summary):
        return {}
    counts: dict[str, int | str] = {}
    for field in dataclasses.fields(summary):
        value = getattr(summary, field.name)
        if isinstance(value, int) and not isinstance(value, bool):
            counts[field.name] = value
        elif isinstance(value, dict) and value and all(isinstance(v, int) for v in value.values()):
            counts[field.name] = ", ".join(f"{k}={v}" for k, v in value.items())
    return counts


def _cut(value: object) -> object:
    """Return a text cell cut to a line's length; any other value (a step, an agent id) as it is."""
    if not isinstance(value, str) or len(value) <= _CELL:
        return value
    return value[:_CELL - 1] + "…"


@dataclass(frozen=True, kw_only=True, repr=False)
class Job:
    """A finished or stopped job in a DuckDB file: its kind, id, database and summary.

    An attribute the handle lacks is read from the summary (job.written).
    """

    kind: str  # as the jobs table names it
    job_id: str
    db: Path
    summary: object = None

    def __post_init__(self) -> None:
        # the tables hold ids as text, whatever the caller typed
        object.__setattr__(self, "job_id", str(self.job_id))
        object.__setattr__(self, "db", Path(self.db))

    def __getattr__(self, name: str) -> object:
        # code written against the summaries keeps working on handles
        summary = self.__dict__.get("summary")
        if name.startswith("_") or summary is None:
            raise AttributeError(name)
        return getattr(summary, name)

    def sql(self, query: str, params: Sequence[object] | None = None) -> pd.DataFrame:
        """Run any SQL over the database, read-only, with the analysis views installed.

        Args:
            query: the SQL, with ``?`` placeholders.
            params: the placeholders' values.

        Returns:
            The result as a DataFrame.
        """
        return _read(self.db, query, params)

    def _row(self) -> JobRow | None:
        """Return the job's row of the jobs table, or None."""
        from personahub.core.jobs_store import find_job
        from personahub.core.store import connect

        con = connect(self.db, read_only=True)
        try:
            return find_job(con, self.job_id)
        finally:
            con.close()

    @property
    def status(self) -> str:
        """The job's status as the database has it now (finished, interrupted, ...)."""
        row = self._row()
        return str(row.status) if row is not None else "unknown"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, job_id={self.job_id!r}, db={str(self.db)!r})"

    def sample(self, n: int = SAMPLE_ROWS) -> pd.DataFrame:
        """Return a few of the job's items, the same rows each time, text cut short.

        Args:
            n: how many rows.

        Returns:
            A DataFrame of at most n rows.
        """
        from personahub.runtime import registered_spec

        spec = registered_spec(self.kind)
        frame = _frame(self.db, spec.sample, self.job_id, int(n)) if spec is not None else None
        if frame is None:
            frame = self.items().head(n)
        return frame.apply(lambda column: column.map(_cut))

    def _repr_html_(self) -> str:
        """Return the notebook's view: ids, status, counts and a few sampled rows."""
        rows = [("kind", self.kind), ("id", self.job_id), ("status", self.status),
                ("database", str(self.db)), *_counts(self.summary).items()]
        head = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                       for k, v in rows)
        try:
            sample = self.sample()
        except Exception as exc:  # noqa: BLE001 - a card shows what it can
            body = f"<p>(no sample: {html.escape(type(exc).__name__)})</p>"
        else:
            body = (f"<p>{len(sample)} sampled rows</p>" + sample.to_html(index=False)
                    if len(sample) else "<p>no rows yet</p>")
        title = html.escape(f"{type(self).__name__} {self.job_id}")
        return f"<div><strong>{title}</strong><table>{head}</table>{body}</div>"

    def calls(self) -> pd.DataFrame:
        """Return the job's model calls.

        Returns:
            Its rows of ``llm_calls`` as a DataFrame.
        """
        from personahub.core.call_log import job_calls

        return _frame(self.db, job_calls, self.job_id)

    @speaks_python({"out": "path", "force": "overwrite"})
    def export(self, path: str | Path, fmt: str = "chat", *, task: str | None = None,
               drop_duplicates: bool = False, overwrite: bool = False) -> int:
        """Write a run's or synthesis job's items to a file, as the export command does.

        Args:
            path: the file, or for ``hf`` the folder, to write.
            fmt: personahub, chat, parquet, or hf (the Hub's layout, which datasets reads).
            task: keep only items of this task (instruction, npc_dialogue, ...).
            drop_duplicates: leave out items flagged as near-duplicates.
            overwrite: replace an existing file or folder.

        Returns:
            The number of records written.

        Raises:
            PersonahubError: the job is neither a run nor a synthesis job.
        """
        from personahub.analysis.export import export
        from personahub.core.errors import PersonahubError
        from personahub.core.outputs import check_output
        from personahub.core.store import connect

        if self.kind not in ("run", "synthesis"):
            raise PersonahubError(f"export: a {self.kind} job has no items to export; use .items()")
        which: dict[str, Any] = ({"run": self.job_id} if self.kind == "run"
                                 else {"job": self.job_id})
        con = connect(self.db, read_only=True)
        try:
            if fmt == "hf":
                from personahub.analysis.export_hf import HF_FILES, export_hf
                from personahub.pipelines.evaluate_quality import export_selection

                check_output(path, db=self.db, force=overwrite, kind="dir", names=HF_FILES)
                if self.kind == "synthesis":  # an evaluated job writes its splits
                    which |= export_selection(con, job=self.job_id, hf=True)
                return export_hf(con, path, task=task, drop_duplicates=drop_duplicates,
                                 overwrite=overwrite, **which)
            check_output(path, db=self.db, force=overwrite)
            return export(con, path, fmt, task=task, drop_duplicates=drop_duplicates,
                          overwrite=overwrite, **which)
        finally:
            con.close()

    def items(self) -> pd.DataFrame:
        """Return what the job made, as a DataFrame: what its kind's spec reads (``JobSpec.items``).

        Returns:
            A run's emissions or a synthesis job's items in the export's column layout, the
            personas a persona job made, a dedup's flagged duplicates, a judge's judgments.

        Raises:
            KeyError: The job's kind makes nothing a handle lists.
        """
        from personahub.runtime import registered_spec

        spec = registered_spec(self.kind)
        made = _frame(self.db, spec.items, self.job_id) if spec is not None else None
        if made is None:
            raise KeyError(self.kind)
        return made


@dataclass(frozen=True, kw_only=True, repr=False)
class Run(Job):
    """A simulation run: its id, database, summary and tables as DataFrames."""

    kind: str = "run"

    @property
    def run_id(self) -> str:
        """The run's id (the job id)."""
        return self.job_id

    def emissions(self) -> pd.DataFrame:
        """Return what the agents emitted in this run.

        Returns:
            Its rows of ``emissions``, by step and agent.
        """
        return self._rows("emissions")

    def survey_answers(self) -> pd.DataFrame:
        """Return the agents' survey answers in this run.

        Returns:
            Its rows of ``survey_answers``, by step, survey and agent.
        """
        return self._rows("survey_answers")

    def survey_shares(self, survey: str | None = None, *, wide: bool = False) -> pd.DataFrame:
        """Each survey answer's share per step.

        Answers keep the survey's order; a choice nobody picked at a step shows as 0.

        Args:
            survey: keep only this survey.
            wide: one survey as steps x answers, ready for ``.plot.bar(stacked=True)``.

        Returns:
            One row per survey, step and answer with n and share, or the wide table.

        Raises:
            PersonahubError: ``wide=True`` over more than one survey.
        """
        import pandas as pd

        from personahub.sim.run_queries import survey_answer_values

        answers = _frame(self.db, survey_answer_values, self.job_id, survey)
        frames = []
        for survey_id, group in answers.groupby("survey_id", sort=True):
            order = self._survey_options(str(survey_id))
            order += sorted(set(group.answer.dropna()) - set(order))
            counts = pd.crosstab(group.step, group.answer).reindex(columns=order, fill_value=0)
            tidy = counts.stack().rename("n").reset_index()
            tidy.insert(0, "survey_id", survey_id)
            tidy["share"] = tidy.n / tidy.groupby("step").n.transform("sum")
            tidy["answer"] = pd.Categorical(tidy.answer, categories=order, ordered=True)
            frames.append(tidy)
        columns = ["survey_id", "step", "answer", "n", "share"]
        result = (pd.concat(frames, ignore_index=True) if frames
                  else pd.DataFrame({c: [] for c in columns}))[columns]
        if not wide:
            return result
        if result.survey_id.nunique() > 1:
            from personahub.core.errors import PersonahubError

            raise PersonahubError("survey_shares(wide=True): name one survey (survey=...)")
        return result.pivot(index="step", columns="answer", values="share")

    def _survey_options(self, survey_id: str) -> list[str]:
        """Return the survey's answer options in its scenario's order (none for free answers)."""
        row = self._row()
        config = row.config if row is not None else {}
        surveys = ((config.get("scenario") or {}).get("surveys")) or []
        found: dict[str, Any] = next((s for s in surveys if s.get("id") == survey_id), {})
        return [str(o) for o in found.get("options") or []]

    def timeline(self) -> pd.DataFrame:
        """Return the run step by step.

        Returns:
            One row per committed step: its counts (emissions, messages, answers, failures,
            duplicates, events, injected texts), start and seconds.
        """
        from personahub.sim.run_queries import timeline

        return _frame(self.db, timeline, self.job_id)

    def messages(self) -> pd.DataFrame:
        """Return the messages agents sent each other in this run.

        Returns:
            Its rows of ``messages``.
        """
        return self._rows("messages")

    def decisions(self) -> pd.DataFrame:
        """Return the deliberate policy's decisions in this run (none for scripted runs).

        Returns:
            Its rows of ``decisions``.
        """
        return self._rows("decisions")

    def _rows(self, table: str) -> pd.DataFrame:
        from personahub.sim.run_queries import run_rows

        return _frame(self.db, run_rows, table, self.job_id)

    def interview(self, question: str, *, llm: str = "offline", **options: Any) -> pd.DataFrame:
        """Ask this run's agents a question.

        Args:
            question: what to ask.
            llm: the model spec (default: the offline engine).
            **options: as for personahub.interview (agent or carve and where, step, model flags).

        Returns:
            A DataFrame, one row per agent asked.
        """
        from personahub.interviews import interview

        return interview(question, run=self.job_id, db=self.db, llm=llm, **options)

    async def interview_async(self, question: str, *, llm: str = "offline",
                              **options: Any) -> pd.DataFrame:
        """Run interview, for await.

        Args:
            question, llm, **options: as for interview.

        Returns:
            A DataFrame, one row per agent asked.
        """
        from personahub.interviews import interview_async

        return await interview_async(question, run=self.job_id, db=self.db, llm=llm, **options)


@dataclass(frozen=True, kw_only=True, repr=False)
class Judged(Job):
    """A judge's handle: its id, database, summary, judgments and validity figures."""

    kind: str = "judge"

    @property
    def judge_id(self) -> str:
        """The judge's id (the job id)."""
        return self.job_id

    def validity(self) -> Validity | None:
        """Return the validity rate and per-criterion rates with 95% Wilson intervals.

        Returns:
            A Validity, or None when the judge has no judgments.
        """
        from personahub.analysis.judgments import validity
        from personahub.core.store import connect

        con = connect(self.db, read_only=True)
        try:
            return validity(con, self.job_id)
        finally:
            con.close()


@dataclass(frozen=True, kw_only=True, repr=False)
class Calibration(Job):
    """A calibration's handle: its id, database, summary and tables (docs/calibration.md)."""

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
        """Return the scores of every source, per question and group.

        Returns:
            One row per question, group and source (the model per steering, the baselines,
            floor and ceilings): representativeness, dispersion, modal agreement, refusals, counts.
        """
        return self._frame("scores_frame")

    def summary_table(self) -> pd.DataFrame:
        """Return the scores' means per source and steering.

        Returns:
            A DataFrame with levels overall, attribute and group.
        """
        return self._frame("summary_frame")

    def per_attribute(self, score: str = "representativeness",
                      overall: str = "per-attribute") -> pd.DataFrame:
        """One score overall and per attribute, as the command prints it.

        Args:
            score: which score (a column of ``summary_table()``).
            overall: how the overall row weighs: ``per-attribute`` (the default) or ``per-group``.

        Returns:
            One row overall and per attribute, one column per source.
        """
        from personahub.pipelines.calibrate_scores import per_attribute

        return per_attribute(self.summary_table(), score, overall)

    def _seed(self) -> int:
        from personahub.analysis import calibration_store
        from personahub.core.store import connect

        con = connect(self.db, read_only=True)
        try:
            return int(calibration_store.job_row(con, self.job_id)["seed"] or 0)
        finally:
            con.close()

    def sd_ratios(self) -> pd.DataFrame:
        """Return the model's SD ratio (simulated / human) per ordinal question, mean over groups.

        One column per steering; a tempered steering adds a column for after tempering.

        Returns:
            One row per ordinal question, lowest first.
        """
        from personahub.pipelines.calibrate_scores import sd_by_question

        return sd_by_question(self.scores())

    def temperatures(self) -> pd.DataFrame:
        """Return the temperatures tempering fitted, each on the other half of the questions.

        Returns:
            One row per steering and temperature with the questions tempered; empty without.
        """
        from personahub.pipelines.calibrate_scores import fitted_temperatures

        return fitted_temperatures(self.scores())

    def panel_sizes(self) -> pd.DataFrame:
        """Return the model's effective panel size: substantive answers per question x group.

        A stated distribution has no panel and is not listed.

        Returns:
            Min and median per attribute and overall, per steering.
        """
        from personahub.pipelines.calibrate_scores import panel_sizes_of

        return panel_sizes_of(self.scores())

    def archetype_price(self) -> pd.DataFrame:
        """Return what ``--archetypes K`` costs: per K and group, the archetype answers against per-agent
        ones.

        Returns:
            One row per K and group: similarity (substantive answers) and total variation
            distance (refusal counted as an answer), means over questions, both rows' refusal
            shares and representativeness, the floor and the calls; empty without.
        """
        from personahub.analysis import calibration_store
        from personahub.core.store import connect
        from personahub.pipelines.calibrate_archetypes import price_table
        from personahub.pipelines.calibrate_data import load_survey

        con = connect(self.db, read_only=True)
        try:
            scores = calibration_store.scores_frame(con, self.job_id)
            questions = load_survey(con, self.job_id).survey.questions
            calls = calibration_store.answers_by_steering(con, self.job_id)
        finally:
            con.close()
        return price_table(scores, questions, calls)

    def intervals(self) -> pd.DataFrame:
        """Every source's mean representativeness with 95% bootstrap intervals.

        One interval resamples questions; for a model with panels, another resamples panel
        answers. Seeded with the job's seed, so they repeat.

        Returns:
            One row per source, per attribute and overall (panel bounds NaN where no panel).
        """
        from personahub.analysis import calibration_store
        from personahub.analysis.calibration_verdict import intervals
        from personahub.core.store import connect
        from personahub.pipelines.calibrate_data import load_survey
        from personahub.pipelines.calibrate_scores import panel_intervals_of

        con = connect(self.db, read_only=True)
        try:
            scores = calibration_store.scores_frame(con, self.job_id)
            survey = load_survey(con, self.job_id).survey
        finally:
            con.close()
        seed = self._seed()
        panel = panel_intervals_of(scores, survey, seed)[["who", "attribute", "panel_low",
                                                          "panel_high"]]
        return intervals(scores, seed).merge(panel, on=["who", "attribute"], how="left")

    def question_spread(self) -> pd.DataFrame:
        """Every source's per-question representativeness summarised across questions.

        A question's score is its mean over the level's groups, so the spread is between
        questions.

        Returns:
            One row per source and level: mean, sd, min, max, the lowest question and the count.
        """
        from personahub.analysis.calibration_verdict import question_spread

        return question_spread(self.scores())

    def ppi(self, humans: str | Path, *, steering: str | None = None,
            alpha: float = 0.05) -> pd.DataFrame:
        """Group shares corrected by a small human sample (prediction-powered inference).

        Shown beside the humans-only and simulated-only intervals.

        Args:
            humans: a respondent-level file (CSV or Parquet) on the same questions.
            steering: whose answers predict (default: the job's first steering).
            alpha: one minus the intervals' coverage.

        Returns:
            One row per question, group and option.
        """
        from personahub.analysis.calibration_ppi import ppi_table
        from personahub.analysis.survey_respondents import read_respondent_rows
        from personahub.core.store import connect

        sample = read_respondent_rows(humans)
        con = connect(self.db, read_only=True)
        try:
            return ppi_table(con, self.job_id, sample, steering=steering, alpha=alpha)
        finally:
            con.close()

    @property
    def verdict(self) -> list[str]:
        """The scores in plain sentences, as the command prints them.

        The winner overall and per attribute, the model between ceiling and floor, warnings, and
        the model's ranking (top option against chance, rank correlation).
        """
        from personahub.analysis.calibration_ranking import ranking_verdict
        from personahub.analysis.calibration_verdict import verdict

        return verdict(self.scores(), self._seed()) + ranking_verdict(self.ranking())

    def ranking(self, per: str = "source") -> pd.DataFrame:
        """Ranking alignment: does each source choose what people choose most, and rank the
        options as they do?

        Args:
            per: ``source`` (default): per source, top-option hits against chance and the mean
                Kendall tau, each with its one-sided p; ``pair``: one row per question x group
                and source.

        Returns:
            The table (docs/calibration.md, "Ranking").
        """
        from personahub.analysis.calibration_ranking import (
            ranking_cells,
            ranking_summary,
            stored_survey,
        )
        from personahub.core.errors import UsageError
        from personahub.core.store import connect

        if per not in ("source", "pair"):
            raise UsageError(f"ranking(per={per!r}): use 'source' or 'pair'")
        con = connect(self.db, read_only=True)
        try:
            cells = ranking_cells(self.scores(), stored_survey(con, self.job_id))
        finally:
            con.close()
        return cells if per == "pair" else ranking_summary(cells)

    def profile(self) -> dict[str, object] | None:
        """Return the survey profile a ``fit=True`` calibration chose (None without one).

        Returns:
            Its method, steering, temperature, params, examples, model and every configuration
            tried with its training score (``candidates``), and the folds (question id to fold;
            fold 0 is held out).
        """
        from personahub.analysis import calibration_store
        from personahub.core.store import connect

        con = connect(self.db, read_only=True)
        try:
            row = calibration_store.profile_row(con, self.job_id)
            if row is not None:
                row["folds"] = calibration_store.fold_rows(con, self.job_id)
            return row
        finally:
            con.close()

    def answers(self) -> pd.DataFrame:
        """Every answer the calibration collected.

        Returns:
            Question, steering, respondent, the option chosen, refusal, and the model's reason.
        """
        return self._frame("answers_frame")


def handle_class(kind: str) -> type[Job]:
    """Return the handle class for a job kind: the Job subclass whose kind default names it, else Job.

    Args:
        kind: a job kind, as the ``jobs`` table names it.

    Returns:
        The handle class to build the job's handle with.
    """
    for handle in Job.__subclasses__():
        if getattr(handle, "kind", None) == kind:
            return handle
    return Job

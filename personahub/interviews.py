"""The Python API's interview: ask a run's agents a question.

A module of its own so a run's handle can use it without api and results importing each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personahub.core.errors import PersonahubError
from personahub.job_calls import async_twin, job_function
from personahub.progress_bars import ProgressSetting, progress_hook
from personahub.python_names import DEFAULT_DB, as_conditions, as_id, refuse_unknown

if TYPE_CHECKING:
    import pandas as pd

    from personahub.core.commit import ProgressHook
    from personahub.core.contracts import StructuredCaller
    from personahub.pipelines.interview import InterviewConfig, InterviewResult


_ASKS = ("agent", "where", "carve", "step", "limit")


def interview_config(question: str, db: str | Path, run: str, llm: str,
                     options: dict[str, object]) -> InterviewConfig:
    """Return the InterviewConfig that interview builds; the command builds the same one."""
    from personahub.pipelines.interview import InterviewConfig

    known = {f.name for f in dataclasses.fields(InterviewConfig)}
    refuse_unknown("interview", options, known - {"run_id", "question", "db", "llm"})
    given = as_conditions(options)
    return InterviewConfig(run_id=run, question=question, db=str(db), llm=llm, **given)


def run_interview(config: InterviewConfig | Mapping[str, object], db: str | Path, *,
                  resume: str | None = None, fresh: bool = False,
                  client: StructuredCaller | None = None, progress: ProgressHook | None = None,
                  on_ready: Callable[[StructuredCaller | None], None] | None = None,
                  on_start: Callable[[str, bool], None] | None = None,
                  warn: Callable[[str], None] | None = None) -> InterviewResult:
    """Run or resume an interview and return all its answers.

    A new one is checked read-only first, so a bad input writes nothing."""
    from personahub import runtime
    from personahub.pipelines.interview import INTERVIEW, InterviewConfig, prepare

    if isinstance(config, InterviewConfig) and resume is None:
        prepare(db, config.request())
    elif not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database")
    result = runtime.run(INTERVIEW, config, db, resume=resume, fresh=fresh, client=client,
                         progress=progress, on_ready=on_ready, on_start=on_start, warn=warn)
    summary: InterviewResult = result.summary
    return summary


@job_function
def interview(question: str | None = None, *, run: str | int | None = None,
              db: str | Path = DEFAULT_DB, llm: str = "offline", resume: str | int | None = None,
              progress: ProgressSetting = None, **options: Any) -> pd.DataFrame:
    """Ask a run's agents a question; the run is not changed, the answers are stored.

    Args:
        question: what to ask (None only with resume).
        run: the run whose agents answer (text or a number).
        db: the DuckDB file.
        llm: the model spec (default: the offline engine).
        resume: a stopped interview's batch_id: only agents not yet answered are asked.
        progress: as for run_scenario.
        **options: agent for one agent, or carve (``KEY OP VALUE``) and/or where (SQL over
            personas) for a group; limit, step, batch_size, the model and batch flags.

    Returns:
        A DataFrame, one row per agent asked, with its answer, status and model.

    Raises:
        PersonahubError: neither a question and run nor resume was given, or both.
    """
    import pandas as pd

    run, resume = as_id(run), as_id(resume)
    if "agent" in options:
        options = {**options, "agent": as_id(options["agent"])}
    config: InterviewConfig | dict[str, object]
    if resume is not None:  # a resume takes only engine settings from the caller
        from personahub.pipelines.interview import resume_settings

        if question is not None or run is not None:
            raise PersonahubError("interview(resume=...): the interview keeps its question and "
                                  "run; give neither")
        config = resume_settings(llm=llm, db=str(db), **options)
    else:
        if question is None or run is None:
            raise PersonahubError("interview: give a question and run= (or resume=JOB_ID)")
        config = interview_config(question, db, run, llm, options)
    with progress_hook(progress) as hook:
        result = run_interview(config, db, resume=resume, progress=hook)
    frame = pd.DataFrame(result.rows).drop(columns=["content"], errors="ignore")
    frame.attrs["offline"] = result.offline
    frame.attrs["batch_id"] = result.batch_id
    return frame


interview_async = async_twin(interview)

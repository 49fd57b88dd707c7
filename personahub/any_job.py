"""Any job by its id, whatever its kind: list every job, or resume one.

The jobs and resume commands use these functions too, so command and API cannot drift. A
resumed job keeps its stored config and recorded model; only how it runs is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personahub.core.errors import PersonahubError, UsageError
from personahub.core.jobs_store import STATUSES
from personahub.job_calls import async_twin, job_function
from personahub.progress_bars import ProgressSetting, progress_hook
from personahub.python_names import DEFAULT_DB, as_id, refuse_unknown, speaks_python
from personahub.results import Job, handle_class

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from personahub.core.commit import ProgressHook
    from personahub.core.contracts import StructuredCaller
    from personahub.core.kernel import JobResult

def _check_filters(con: duckdb.DuckDBPyConnection, kind: str | None, status: str | None) -> None:
    """Refuse an unknown kind or status: an empty listing would hide the typo."""
    from personahub.core.jobs_store import job_kinds
    from personahub.core.kernel import registered
    from personahub.pipelines.labels import SHIPPED

    if status is not None and status not in STATUSES:
        raise UsageError(f"--status {status}: no such status; choose from {', '.join(STATUSES)}")
    if kind is not None:  # shipped kinds are known without importing their specs
        kinds = sorted({*SHIPPED, *registered(), *job_kinds(con)})
        if kind not in kinds:
            raise UsageError(f"--kind {kind}: no such job kind; choose from {', '.join(kinds)}")


def _what(kind: str, config: dict[str, object]) -> str:
    """Return a few words on what a job makes; shipped kinds avoid importing the model stack."""
    from personahub.core.kernel import spec_for
    from personahub.pipelines.labels import SHIPPED

    if kind in SHIPPED:
        return SHIPPED[kind].label(config)
    spec = spec_for(kind)
    return spec.label(config) if spec is not None else ""


def job_rows(db: str | Path, *, kind: str | None = None,
             status: str | None = None) -> list[dict[str, Any]]:
    """Every job, newest first, as rows of the jobs table's columns plus ``what`` it makes."""
    from personahub.core.jobs_store import list_jobs
    from personahub.core.store import connect

    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database")
    con = connect(db, read_only=True)
    try:
        _check_filters(con, kind, status)
        found = list_jobs(con, kind=kind, status=status)
    finally:
        con.close()
    rows = []
    for r in found:
        rows.append({"job_id": r.job_id, "kind": r.kind, "status": r.status,
                     "started_at": r.started_at, "finished_at": r.finished_at,
                     "what": _what(r.kind, r.config),
                     "parent_id": r.parent_id, "error": r.error})
    return rows


@speaks_python()
def jobs(*, db: str | Path = DEFAULT_DB, kind: str | None = None,
         status: str | None = None) -> pd.DataFrame:
    """Every job in a database, newest first.

    Args:
        db: the DuckDB file.
        kind: keep only jobs of this kind.
        status: keep only jobs with this status (finished, interrupted, ...).

    Returns:
        A DataFrame of the jobs table's columns and ``what``, a few words on what each makes.

    Raises:
        UsageError: an unknown kind or status.
    """
    import pandas as pd

    columns = ["job_id", "kind", "status", "started_at", "finished_at", "what", "parent_id",
               "error"]
    return pd.DataFrame(job_rows(db, kind=kind, status=status), columns=columns)


@dataclass(frozen=True)
class Resumed:
    """What a resume did: the job's kind and the kernel's result (ran is False if it had ended)."""

    kind: str
    result: JobResult[object]


def resume_job(job_id: str, db: str | Path, *, llm: str | None = None,
               engine: dict[str, object] | None = None, progress: ProgressHook | None = None,
               client: StructuredCaller | None = None,
               on_ready: Callable[[StructuredCaller | None], None] | None = None,
               on_start: Callable[[str, bool], None] | None = None,
               warn: Callable[[str], None] | None = None) -> Resumed:
    """Resume a job with its kind's spec; llm replaces the recorded (redacted) model spec and
    engine says how it runs this time."""
    from personahub import runtime
    from personahub.models.client import resolve_spec

    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database")
    row = runtime.stored_job(db, job_id)
    if row is None:
        raise PersonahubError(f"resume {job_id}: no such job in {db} (personahub jobs lists them)")
    spec = runtime.registered_spec(row.kind)
    if spec is None:
        raise PersonahubError(f"resume {job_id}: no job spec of kind {row.kind!r} is registered")
    # without llm, ask the model the job was asking
    model = resolve_spec(llm) if llm is not None else runtime.recorded_llm(db, job_id)
    given = {"llm": model, **{k: v for k, v in (engine or {}).items() if v is not None}}
    result = runtime.run(spec, given, db, resume=job_id, client=client, progress=progress,
                         on_ready=on_ready, on_start=on_start, warn=warn)
    return Resumed(row.kind, result)


def handle_of(resumed: Resumed, db: str | Path) -> Job:
    """Return the API's handle of a resumed job, of its kind's class."""
    handle = handle_class(resumed.kind)
    return handle(kind=resumed.kind, job_id=resumed.result.job_id, db=Path(db),
                  summary=resumed.result.summary)

#: the engine options a resume of any job takes from its caller
RESUME_OPTIONS = frozenset({"cache", "executor", "ray_address", "ray_workers",
                            "max_failed_share"})


def _resume_engine(engine: dict[str, object]) -> dict[str, object]:
    """Return resume's engine keywords; an unknown one is refused by name."""
    refuse_unknown("resume", engine, set(RESUME_OPTIONS))
    return {name: engine.get(name) for name in sorted(RESUME_OPTIONS)}


@job_function
def resume(job_id: str | int, *, db: str | Path = DEFAULT_DB, llm: str | None = None,
           progress: ProgressSetting = None, **engine: object) -> Job:
    """Resume any stopped job by its id; one that had ended is returned as it is.

    Args:
        job_id: the job's id (text or a number).
        db: the DuckDB file holding it.
        llm: the model spec to ask, with its credentials (None: the one the job recorded).
        progress: as for run_scenario.
        **engine: how this resume runs: cache, executor, ray_address, ray_workers,
            max_failed_share (None or not given: the job's); an unknown keyword is refused.

    Returns:
        The job's handle: Run, Judged, Calibration, or Job.

    Raises:
        PersonahubError: no such database, job, or registered kind.
    """
    job_id = as_id(job_id)
    with progress_hook(progress) as hook:
        resumed = resume_job(job_id, db, llm=llm, engine=_resume_engine(engine), progress=hook)
    return handle_of(resumed, db)


resume_async = async_twin(resume)

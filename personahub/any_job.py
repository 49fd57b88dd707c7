"""Any job by its id, whatever its kind: list every job, or resume one.

``personahub jobs`` and ``personahub resume`` use these functions too, so the command and the API
cannot drift. A resume runs the kind's registered spec on the job kernel: the job keeps what it
makes (its stored config) and the model it recorded unless given another; only how it runs
(cache, executor, failure share) is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personahub.bridge import call_blocking, call_in_thread
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.jobs_store import STATUSES
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
    """A kind neither registered nor in the database, or an unknown status, is a usage error
    (an empty listing would hide the typo)."""
    from personahub.core.jobs_store import job_kinds
    from personahub.core.kernel import registered
    from personahub.pipelines.labels import SHIPPED

    if status is not None and status not in STATUSES:
        raise UsageError(f"--status {status}: no such status; choose from {', '.join(STATUSES)}")
    if kind is not None:  # the shipped kinds without importing their specs, and any registered
        kinds = sorted({*SHIPPED, *registered(), *job_kinds(con)})
        if kind not in kinds:
            raise UsageError(f"--kind {kind}: no such job kind; choose from {', '.join(kinds)}")


def _what(kind: str, config: dict[str, Any]) -> str:
    """A few words on what a job makes: a shipped kind's label without importing its spec (the
    model stack); a kind registered from outside in this process labels itself."""
    from personahub.core.kernel import spec_for
    from personahub.pipelines.labels import SHIPPED

    if kind in SHIPPED:
        return SHIPPED[kind].label(config)
    spec = spec_for(kind)
    return spec.label(config) if spec is not None else ""


def job_rows(db: str | Path, *, kind: str | None = None,
             status: str | None = None) -> list[dict[str, Any]]:
    """Every job in ``db``, newest first, as plain rows: id, kind, status, times, a few words on
    what it makes (``what``), its parent run or job, and why it stopped (``error``). Every key
    but ``what`` (a few words from the job's ``config``, by its kind) is the ``jobs`` table's
    column of that name."""
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
    """Every job in a database, newest first, as ``personahub jobs`` lists them.

    Args:
        db: the DuckDB file.
        kind: keep only jobs of this kind.
        status: keep only jobs with this status (finished, interrupted, ...).

    Returns:
        A DataFrame with the ``jobs`` table's columns (job_id, kind, status, started_at,
        finished_at, parent_id, error) and ``what``, a few words on what each job makes.

    Raises:
        UsageError: an unknown kind or status (an empty listing would hide the typo).
    """
    import pandas as pd

    columns = ["job_id", "kind", "status", "started_at", "finished_at", "what", "parent_id",
               "error"]
    return pd.DataFrame(job_rows(db, kind=kind, status=status), columns=columns)


@dataclass(frozen=True)
class Resumed:
    """What a resume did: the job's ``kind`` and the kernel's ``result`` (``result.ran`` is
    False for a job that had already ended: nothing was asked)."""

    kind: str
    result: JobResult[Any]


def resume_job(job_id: str, db: str | Path, *, llm: str | None = None,
               engine: dict[str, Any] | None = None, progress: ProgressHook | None = None,
               client: StructuredCaller | None = None,
               on_ready: Callable[[StructuredCaller | None], None] | None = None,
               on_start: Callable[[str, bool], None] | None = None,
               warn: Callable[[str], None] | None = None) -> Resumed:
    """Resume job ``job_id`` of ``db`` through the kernel with its kind's spec. ``llm`` replaces
    the recorded (redacted) model spec; ``engine`` holds how it runs this time (``cache``,
    ``executor``, ``ray_address``, ``ray_workers``, ``max_failed_share``; None values are
    dropped). An unknown job or database is one error naming it."""
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
    # without llm the recorded spec, as every command's --resume does: a resume asks the model
    # the job was asking
    model = resolve_spec(llm) if llm is not None else runtime.recorded_llm(db, job_id)
    given = {"llm": model, **{k: v for k, v in (engine or {}).items() if v is not None}}
    result = runtime.run(spec, given, db, resume=job_id, client=client, progress=progress,
                         on_ready=on_ready, on_start=on_start, warn=warn)
    return Resumed(row.kind, result)


def handle_of(resumed: Resumed, db: str | Path) -> Job:
    """The API's handle of a resumed job: its kind's own (``Run``, ``Judged``,
    ``Calibration``) or ``Job`` (``personahub.results.handle_class``)."""
    handle = handle_class(resumed.kind)
    return handle(kind=resumed.kind, job_id=resumed.result.job_id, db=Path(db),
                  summary=resumed.result.summary)

def _resume(job_id: str | int, db: str | Path, engine: dict[str, Any], llm: str | None,
            progress: ProgressSetting) -> Job:
    job_id = as_id(job_id)
    with progress_hook(progress) as hook:
        resumed = resume_job(job_id, db, llm=llm, engine=engine, progress=hook)
    return handle_of(resumed, db)


#: the engine options a resume of any job takes from its caller (``personahub resume``'s too)
RESUME_OPTIONS = frozenset({"cache", "executor", "ray_address", "ray_workers",
                            "max_failed_share"})


def _resume_engine(engine: dict[str, Any]) -> dict[str, Any]:
    """``resume``'s engine keywords, an unknown one refused by name."""
    refuse_unknown("resume", engine, set(RESUME_OPTIONS))
    return {name: engine.get(name) for name in sorted(RESUME_OPTIONS)}


@speaks_python()
def resume(job_id: str | int, *, db: str | Path = DEFAULT_DB, llm: str | None = None,
           progress: ProgressSetting = None, **engine: Any) -> Job:
    """Resume any stopped job by its id, as ``personahub resume ID`` does.

    The job goes on with its own settings; a job that had already ended is returned as it is,
    nothing asked.

    Args:
        job_id: the job's id (text or a number).
        db: the DuckDB file holding it.
        llm: the model spec to ask, with its credentials (None: the one the job recorded).
        progress: as for ``run_scenario``.
        **engine: how this resume runs: cache, executor, ray_address, ray_workers,
            max_failed_share (None or not given: the job's); an unknown keyword is refused.

    Returns:
        The job's handle: ``Run`` for a run, ``Judged``, ``Calibration``, else ``Job``.

    Raises:
        PersonahubError: no such database, job, or registered kind.
    """
    return call_blocking(partial(_resume, job_id, db, _resume_engine(engine), llm, progress))


@speaks_python()
async def resume_async(job_id: str | int, *, db: str | Path = DEFAULT_DB, llm: str | None = None,
                       progress: ProgressSetting = None, **engine: Any) -> Job:
    """``resume`` for ``await``: the job runs in a worker thread.

    Args:
        job_id, db, llm, progress, **engine: as for ``resume``.

    Returns:
        The job's handle.
    """
    return await call_in_thread(partial(_resume, job_id, db, _resume_engine(engine), llm,
                                        progress))

"""The standard wiring of the job kernel: what the CLI and the Python API run every job with.

The core imports nothing above it, so the kernel is handed its dependencies; this module
supplies the standard ones: the model client factory with its cache, and the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from personahub.core.commit import ProgressHook
from personahub.core.contracts import StructuredCaller
from personahub.core.kernel import (
    Executor,
    JobResult,
    JobSpec,
    RecordHook,
    registered,
    run_job,
    spec_for,
)

if TYPE_CHECKING:
    import duckdb

    from personahub.core.jobs_store import JobRow
    from personahub.pipelines.labels import ShippedKind

B = TypeVar("B")
C = TypeVar("C")
R = TypeVar("R")
S = TypeVar("S")


class StandardModels:
    """The model layer as the kernel uses it: build a client, check it is reachable, cache it.

    A client given here is used as it is. warn hears of each unreachable endpoint of several.
    """

    def __init__(self, client: StructuredCaller | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.warn = warn

    def build(self, settings: Any) -> StructuredCaller:
        if self.client is not None:
            return self.client
        from personahub.models.client import make_client
        from personahub.tasks.registry import offline_writer

        # the offline engine reads the kinds' own field writers from the registry
        return make_client(settings, field_writers=offline_writer)

    def check_reachable(self, client: StructuredCaller) -> None:
        if self.client is not None:
            return
        from personahub.models.client import check_reachable

        for label in check_reachable(client):  # type: ignore[arg-type]  # built by make_client
            if self.warn is not None:
                self.warn(label)

    def attach_cache(self, con: duckdb.DuckDBPyConnection, client: StructuredCaller, mode: str) -> None:
        from personahub.models.cache import attach_cache

        attach_cache(con, client, mode)

    def redact(self, spec: str) -> str:
        from personahub.models.client import redact_spec

        return redact_spec(spec)


def executor_for(config: object) -> Executor:
    """Return the executor a config names: local (default) or ray."""
    name = getattr(config, "executor", "local")
    if name == "ray":
        from personahub.executors.ray_executor import RayExecutor

        return RayExecutor(getattr(config, "ray_address", None), getattr(config, "ray_workers", None))
    from personahub.executors.local import LocalExecutor

    return LocalExecutor()


def run(spec: JobSpec[C, B, R, S], config: C | Mapping[str, object], db: str | Path, *,
        resume: str | None = None, fresh: bool = False, client: StructuredCaller | None = None,
        progress: ProgressHook | None = None,
        on_ready: Callable[[StructuredCaller | None], None] | None = None,
        on_start: Callable[[str, bool], None] | None = None,
        warn: Callable[[str], None] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
        on_record: RecordHook | None = None) -> JobResult[S]:
    """Run or resume one job with the standard model layer and executors."""
    return run_job(spec, config, db, models=StandardModels(client, warn), executor=executor_for,
                   resume=resume, fresh=fresh, progress=progress, on_ready=on_ready,
                   on_start=on_start, con=con, on_record=on_record)


def stored_job(db: str | Path, job_id: str) -> JobRow | None:
    """Return a job's row, read-only; None when there is no such job or database."""
    from personahub.core.jobs_store import find_job
    from personahub.core.store import connect

    if not Path(db).exists():
        return None
    con = connect(db, read_only=True)
    try:
        return find_job(con, job_id)
    finally:
        con.close()


def recorded_spec(db: str | Path, job_id: str) -> str | None:
    """Return the redacted model spec a job recorded, or None."""
    job = stored_job(db, job_id)
    if job is None:
        return None
    spec = registered_spec(job.kind)
    stored = spec.upgrade(dict(job.config)) if spec is not None else dict(job.config)
    return str(stored["llm"]) if stored.get("llm") else None


def recorded_llm(db: str | Path, job_id: str) -> str:
    """Return the model a resume asks unless given one: the recorded, redacted spec, else offline."""
    return recorded_spec(db, job_id) or "offline"


def registered_spec(kind: str) -> JobSpec[object, object, object, object] | None:
    """Return the spec of a job kind, the shipped specs registered first."""
    _register_shipped()
    return spec_for(kind)


def registered_kinds() -> list[str]:
    """Every registered job kind, the shipped ones and any registered from outside, sorted."""
    _register_shipped()
    return sorted(registered())


def register_kinds(rows: Iterable[ShippedKind]) -> None:
    """Register each row's kind by importing the module its row names, which registers its spec.

    Args:
        rows: Kind rows (pipelines.labels.ShippedKind), the shipped ones or a test's own.
    """
    for row in rows:
        import_module(row.module)


def _register_shipped() -> None:
    """Register the shipped kinds from their rows."""
    from personahub.pipelines.labels import SHIPPED

    register_kinds(SHIPPED.values())

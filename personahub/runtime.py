"""The standard wiring of the job kernel: what the CLI and the Python API run every job with.

``personahub.core.kernel.run_job`` is given its dependencies rather than importing them (the core
imports nothing above it). This module gives the standard ones: the model seam's one client
factory (``models.client.make_client``) with its reachability check and the record/replay
cache (``StandardModels``), and the executor a config names (``executor_for``: ``local`` or
``ray`` from ``personahub/executors``). The CLI and the API call ``run``; nothing else in the package
does (a test may hand ``run`` a client of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from personahub.core.commit import ProgressHook
from personahub.core.contracts import StructuredCaller
from personahub.core.kernel import Executor, JobResult, JobSpec, registered, run_job, spec_for

if TYPE_CHECKING:
    import duckdb

    from personahub.core.jobs_store import JobRow

C = TypeVar("C")
S = TypeVar("S")


class StandardModels:
    """``make_client`` and ``check_reachable`` of the model seam, and its cache. A ``client``
    given here is used as it is (built and checked by its maker: a test double, a command's
    own); ``warn`` hears of each unreachable endpoint of several (the others are used)."""

    def __init__(self, client: StructuredCaller | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.warn = warn

    def build(self, settings: Any) -> StructuredCaller:
        if self.client is not None:
            return self.client
        from personahub.models.client import make_client

        return make_client(settings)

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


def executor_for(config: Any) -> Executor:
    """The executor a (resolved) config names: ``local`` (default) or ``ray``."""
    name = getattr(config, "executor", "local")
    if name == "ray":
        from personahub.executors.ray_executor import RayExecutor

        return RayExecutor(getattr(config, "ray_address", None), getattr(config, "ray_workers", None))
    from personahub.executors.local import LocalExecutor

    return LocalExecutor()


def run(spec: JobSpec[C, Any, Any, S], config: C | Mapping[str, Any], db: str | Path, *,
        resume: str | None = None, fresh: bool = False, client: StructuredCaller | None = None,
        progress: ProgressHook | None = None,
        on_ready: Callable[[StructuredCaller | None], None] | None = None,
        on_start: Callable[[str, bool], None] | None = None,
        warn: Callable[[str], None] | None = None,
        con: duckdb.DuckDBPyConnection | None = None) -> JobResult[S]:
    """Run (or resume) one job of ``spec`` with the standard model seam and executors
    (``con``: on that open connection to ``db``, which the caller closes)."""
    return run_job(spec, config, db, models=StandardModels(client, warn), executor=executor_for,
                   resume=resume, fresh=fresh, progress=progress, on_ready=on_ready,
                   on_start=on_start, con=con)


def stored_job(db: str | Path, job_id: str) -> JobRow | None:
    """Job ``job_id``'s row in ``db``, read through a read-only connection closed at once (None:
    no such job or database)."""
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
    """The (redacted) model spec job ``job_id`` recorded (None: no such job or database, or a
    job that recorded none)."""
    job = stored_job(db, job_id)
    if job is None:
        return None
    spec = registered_spec(job.kind)
    stored = spec.upgrade(dict(job.config)) if spec is not None else dict(job.config)
    return str(stored["llm"]) if stored.get("llm") else None


def recorded_llm(db: str | Path, job_id: str) -> str:
    """What a resume of ``job_id`` asks with unless it is given a model (``--llm``): the model
    spec the job recorded, redacted (give ``--llm`` when it needs credentials); ``offline`` for
    an unknown job (the kernel then refuses it by name) or one that recorded none."""
    return recorded_spec(db, job_id) or "offline"


def registered_spec(kind: str) -> JobSpec[Any, Any, Any, Any] | None:
    """The spec of ``kind`` once the shipped specs are registered (they register on import)."""
    _register_shipped()
    return spec_for(kind)


def registered_kinds() -> list[str]:
    """Every registered job kind, the shipped ones and any registered from outside, sorted."""
    _register_shipped()
    return sorted(registered())


def _register_shipped() -> None:
    """Import the shipped specs' modules: each registers its kind."""
    import personahub.pipelines.calibrate  # noqa: F401 - registers "calibration"
    import personahub.pipelines.dedup  # noqa: F401 - registers "dedup"
    import personahub.pipelines.evaluate  # noqa: F401 - registers "evaluation"
    import personahub.pipelines.expand  # noqa: F401 - registers "expansion"
    import personahub.pipelines.interview  # noqa: F401 - registers "interview"
    import personahub.pipelines.judge  # noqa: F401 - registers "judge"
    import personahub.pipelines.population_write  # noqa: F401 - registers "population_write"
    import personahub.pipelines.run  # noqa: F401 - registers "run"
    import personahub.pipelines.synthesize  # noqa: F401 - registers "synthesis"
    import personahub.pipelines.text_to_persona  # noqa: F401 - registers "text_to_persona"

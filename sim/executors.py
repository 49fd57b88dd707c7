"""Where a job's model calls run: ``local`` (the job's own event loop, the default) or ``ray``
(Ray Data workers, the ``[ray]`` extra; ``sim.executor_ray``).

The executor changes only where a batch's calls are made. The job kernel stays the one place
rows are committed: each batch's answers come back to the driver and are committed in batch
order, so the same seed gives the same rows whichever executor (and however many workers) ran
them. This module imports no Ray: the local path does not pay for the extra.
"""

from __future__ import annotations

import importlib.util

from personahub.personas.errors import PersonahubError

EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs the [ray] extra: pip install 'personahub[ray]' (ray[data]>=2.40)"


def check_executor(name: str, *, cache: str = "off", workers: int | None = None) -> None:
    """Refuse an unknown executor, or a Ray run it cannot do yet, before anything is opened.

    A Ray worker has no database connection, so it cannot answer from (or record into) the
    ``llm_cache`` table: ``--cache`` must stay ``off`` on Ray for now.
    """
    if name not in EXECUTORS:
        raise PersonahubError(f"--executor {name!r}: use one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise PersonahubError(f"--ray-workers must be >= 1, got {workers}")
    if name != "ray":
        return
    if cache != "off":
        raise PersonahubError(f"--executor ray with --cache {cache}: Ray workers cannot reach the "
                              "database's cache yet; use --cache off (or --executor local)")
    if importlib.util.find_spec("ray") is None:
        raise PersonahubError(RAY_MISSING)

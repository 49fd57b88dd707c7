"""Where a job's batches run: ``local`` (the job's own event loop, the default; ``local.py``) or
``ray`` (Ray Data workers and actor pools, the ``[ray]`` extra; ``ray_executor.py``).

The executor changes only where a batch's calls are made. The job kernel (``core/kernel.py``)
stays the one place rows are committed: each batch's answers reach the driver (on Ray, an
independent-batches job's answers as Parquet shards under the job's folder: ``shards.py``) and
are committed in batch order, so the same seed gives the same rows whichever executor (and
however many workers) ran them. This module imports no Ray: the local path does not pay for the
extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from personahub.core.errors import PersonahubError, UsageError

EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs the [ray] extra: pip install 'personahub[ray]' (ray[data]>=2.40)"


def ray_installed() -> bool:
    """Whether the [ray] extra is importable (looked up, not imported: importing Ray takes seconds)."""
    return importlib.util.find_spec("ray") is not None


def check_executor(name: str, *, cache: str = "off", workers: int | None = None,
                   cache_on_driver: bool = False) -> None:
    """Refuse an unknown executor, or a Ray run it cannot do yet, before anything is opened.

    A Ray worker has no database connection, so it cannot answer from (or record into) the
    ``llm_cache`` table. A job whose calls go through ``executor_ray_run.RayCaller``
    (``cache_on_driver``: ``run``, ``personas expand``) keeps the cache on the driver and sends
    only its misses to the workers; the others must keep ``--cache off`` on Ray for now.
    """
    if name not in EXECUTORS:
        raise UsageError(f"--executor {name!r}: use one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise UsageError(f"--ray-workers must be >= 1, got {workers}")
    if name != "ray":
        return
    if cache != "off" and not cache_on_driver:
        raise PersonahubError(f"--executor ray with --cache {cache}: Ray workers cannot reach the "
                              "database's cache yet; use --cache off (or --executor local)")
    if not ray_installed():
        raise PersonahubError(RAY_MISSING)


@contextmanager
def executor_session(name: str, address: str | None) -> Iterator[None]:
    """One Ray connection for a whole job on ``ray`` (a job asking many passes, as an expansion
    does, must not start a Ray per batch); nothing for ``local``."""
    if name != "ray":
        yield
        return
    from personahub.executors.ray_batches import ray_session

    with ray_session(address):
        yield


def minhash_source(executor: object) -> Any:
    """Where dedup's stage 1 runs on ``executor``: signatures in this process (``local``), or,
    on Ray, the whole stage up to its verified pairs (band buckets through a Ray Data shuffle:
    ``ray_minhash.minhash_pair_finder``), so no signature comes to the driver. The dedup spec
    asks this, not which executor it has."""
    if getattr(executor, "name", "local") != "ray":
        from personahub.personas.dedup import local_signatures

        return local_signatures
    from personahub.executors.ray_minhash import minhash_pair_finder

    return minhash_pair_finder(getattr(executor, "address", None),
                               getattr(executor, "workers", None))

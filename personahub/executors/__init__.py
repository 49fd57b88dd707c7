"""Where a job's batches run: local (the job's own event loop, the default) or ray (the extra).

The executor changes only where calls are made: the kernel commits every batch in batch order,
so a seed gives the same rows whichever executor and however many workers ran them. No Ray
import here, so the local path does not pay for the extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from personahub.core.errors import PersonahubError, UsageError

if TYPE_CHECKING:
    from personahub.personas.dedup import MinHashSource

EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs the [ray] extra: pip install 'personahub[ray]' (ray[data]>=2.40)"


def ray_installed() -> bool:
    """Whether the [ray] extra is installed; looked up, not imported, as importing Ray takes seconds."""
    return importlib.util.find_spec("ray") is not None


def check_executor(name: str, *, cache: str = "off", cache_on_driver: bool = False) -> None:
    """Refuse an unknown executor, or a Ray run it cannot do yet, before anything is opened.

    A Ray worker has no database, so it cannot use the cache. Jobs that ask the actor pool
    keep the cache on the driver; the others need ``--cache off`` on Ray for now. The number of
    workers is an engine option, checked with the others (core.engine_options).
    """
    if name not in EXECUTORS:
        raise UsageError(f"--executor {name!r}: use one of {', '.join(EXECUTORS)}")
    if name != "ray":
        return
    if cache != "off" and not cache_on_driver:
        raise PersonahubError(f"--executor ray with --cache {cache}: Ray workers cannot reach the "
                              "database's cache yet; use --cache off (or --executor local)")
    if not ray_installed():
        raise PersonahubError(RAY_MISSING)


@contextmanager
def executor_session(name: str, address: str | None) -> Iterator[None]:
    """One Ray connection for a whole job, so a job of many passes does not start Ray per batch."""
    if name != "ray":
        yield
        return
    from personahub.executors.ray_batches import ray_session

    with ray_session(address):
        yield


def minhash_source(executor: object) -> MinHashSource:
    """Where dedup's stage 1 runs: signatures here (local), or on Ray the whole stage up to its
    verified pairs, so no signature comes to the driver."""
    if getattr(executor, "name", "local") != "ray":
        from personahub.personas.dedup import local_signatures

        return local_signatures
    from personahub.executors.ray_minhash import minhash_pair_finder

    return minhash_pair_finder(getattr(executor, "address", None),
                               getattr(executor, "workers", None))

"""personahub: persona-driven synthetic data and virtual-society simulation.

The project's folders live at the repository root and are linked here, so nothing generic
(``agents`` is also the OpenAI Agents SDK) is installed at top level.

The public API is imported lazily, so ``import personahub`` stays cheap::

    import personahub
    run = personahub.run_scenario("scenarios/riverside_town.py", db="society.duckdb", steps=2)
    run.emissions()  # a pandas DataFrame; run.survey_answers(), run.items(), run.sql("...")

Each job has a sync form, safe inside a running event loop, and an async twin (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("personahub")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"


@cache
def _job_functions() -> dict[str, str]:
    """Map each job function to its module, read from the labels table on first use.

    The table is read lazily so that importing any module of the package (``personahub.core.errors``
    loads this file first) does not load the pipelines; the twins live alongside.
    """
    from personahub.pipelines.labels import SHIPPED

    refs = [ref.split(":") for shipped in SHIPPED.values() for ref in shipped.api]
    return {**{name: module for module, name in refs}, "resume": "personahub.any_job"}


# name -> module that defines it; resolved on first attribute access
_NAMED = {
    "Persona": "personahub.personas.record",
    "Scenario": "personahub.sim.scenario",
    "load_scenario": "personahub.sim.scenario",
    "RunConfig": "personahub.pipelines.run",
    "RunSummary": "personahub.pipelines.run",
    "experiment": "personahub.experiments",
    "experiment_async": "personahub.experiments",
    "Calibration": "personahub.results",
    "Judged": "personahub.results",
    "Run": "personahub.results",
    "Job": "personahub.results",
    "resume_run": "personahub.api",
    "evaluation_quality": "personahub.api",
    "jobs": "personahub.any_job",
    "run_simulation": "personahub.api",
    "SynthConfig": "personahub.pipelines.synthesize",
    "run_synthesis": "personahub.api",
    "FewerItems": "personahub.api",
    "connect": "personahub.core.store",
    "fetch_personas": "personahub.personas.store",
    "PersonahubError": "personahub.core.errors",
}


@cache
def _public_names() -> dict[str, str]:
    """Map each public name to the module defining it: the job functions and twins, then the rest."""
    jobs = _job_functions()
    return {**{name: module for job, module in jobs.items() for name in (job, f"{job}_async")},
            **_NAMED}


# module attributes computed on first access: ``__all__`` and the tables tests read
_TABLES: dict[str, Callable[[], object]] = {
    "__all__": lambda: ["__version__", *_public_names()],
    "_JOBS": _job_functions,
    "_PUBLIC": _public_names,
}


def __getattr__(name: str) -> Any:
    """Resolve a public name (or ``__all__``) on first access, and keep it."""
    if name in _TABLES:
        value = _TABLES[name]()
    elif not name.startswith("__") and name in _public_names():
        value = getattr(import_module(_public_names()[name]), name)
    else:
        raise AttributeError(f"module 'personahub' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__getattr__("__all__"))

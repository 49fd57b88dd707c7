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

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("personahub")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"


def _job_functions() -> dict[str, str]:
    """Each job function's module, read from the cheap labels module; twins live alongside."""
    from personahub.pipelines.labels import SHIPPED

    refs = [ref.split(":") for shipped in SHIPPED.values() for ref in shipped.api]
    return {**{name: module for module, name in refs}, "resume": "personahub.any_job"}


#: each job function -> its module (its ``_async`` twin is there too)
_JOBS = _job_functions()

#: name -> module that defines it; resolved on first attribute access.
_PUBLIC = {
    **{name: module for job, module in _JOBS.items() for name in (job, f"{job}_async")},
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

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'personahub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

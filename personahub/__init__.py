"""personahub: persona-driven synthetic data and virtual-society simulation.

The project's folders (``sim/``, ``agents/``, ``personas/``, ``analysis/``, ``scenarios/``) live at
the repository root but are installed and imported as ``personahub.sim``, ``personahub.agents``, …
so nothing generic (``agents`` is also the OpenAI Agents SDK) is installed at top level.

The public API is imported lazily, so ``import personahub`` stays cheap::

    import personahub
    run = personahub.run_scenario("scenarios/riverside_town.py", db="society.duckdb", steps=2)
    run.emissions()  # a pandas DataFrame; run.survey_answers(), run.items(), run.sql("...")

Each job has a sync form, safe inside a running event loop (Jupyter), and an ``_async`` twin
(``personahub.api``, documented in docs/api.md).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

try:
    __version__ = version("personahub")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

_checkout = Path(__file__).resolve().parent.parent
if not (Path(__file__).parent / "sim").is_dir() and (_checkout / "sim" / "__init__.py").is_file():
    # Imported from a source checkout (the repository root on sys.path): the subpackages are the
    # root folders. Installed copies hold them inside this folder and never take this branch.
    __path__.append(str(_checkout))

#: name -> module that defines it; resolved on first attribute access.
_PUBLIC = {
    "Persona": "personahub.personas.record",
    "Scenario": "personahub.sim.scenario",
    "load_scenario": "personahub.sim.scenario",
    "RunOptions": "personahub.sim.runner",
    "RunSummary": "personahub.sim.runner",
    "run_scenario": "personahub.api",
    "run_scenario_async": "personahub.api",
    "synthesize": "personahub.api",
    "synthesize_async": "personahub.api",
    "text_to_persona": "personahub.api",
    "text_to_persona_async": "personahub.api",
    "expand": "personahub.api",
    "expand_async": "personahub.api",
    "dedup": "personahub.api",
    "dedup_async": "personahub.api",
    "interview": "personahub.api",
    "interview_async": "personahub.api",
    "judge": "personahub.api",
    "judge_async": "personahub.api",
    "Judged": "personahub.results",
    "Run": "personahub.results",
    "Job": "personahub.results",
    "resume_run": "personahub.sim.runner",
    "SynthOptions": "personahub.sim.synthesize",
    "run_synthesis": "personahub.sim.synthesize",
    "connect": "personahub.personas.store",
    "fetch_personas": "personahub.personas.store",
    "PersonahubError": "personahub.personas.errors",
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

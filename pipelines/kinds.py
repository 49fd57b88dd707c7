"""The shipped job kinds, each named once: the module whose import registers its spec, and the
few words ``personahub jobs`` says of a job of it.

The registry (``personahub.runtime.registered_spec`` / ``registered_kinds``) imports the modules
named here, and ``personahub jobs`` / ``personahub.jobs()`` label rows and check ``--kind``
from here, so adding a shipped kind is a line in ``SHIPPED`` beside its spec module (a test
fails when this table and the registry disagree). Light on purpose: it imports only
``labels``, so listing jobs loads no spec module (they bring in LangGraph and LangChain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from personahub.pipelines import labels
from personahub.pipelines.labels import Config


@dataclass(frozen=True)
class ShippedKind:
    """Where a shipped kind lives: ``module`` registers its spec on import; ``label`` gives a
    few words on what a job of it makes, from its stored config (the spec's ``label`` too)."""

    module: str
    label: Callable[[Config], str]


#: every shipped kind: the one place a kind shipped with personahub is named
SHIPPED: dict[str, ShippedKind] = {
    "run": ShippedKind("personahub.pipelines.run", labels.run),
    "synthesis": ShippedKind("personahub.pipelines.synthesize", labels.synthesis),
    "expansion": ShippedKind("personahub.pipelines.expand", labels.expansion),
    "text_to_persona": ShippedKind("personahub.pipelines.text_to_persona",
                                   labels.text_to_persona),
    "dedup": ShippedKind("personahub.pipelines.dedup", labels.dedup),
    "judge": ShippedKind("personahub.pipelines.judge", labels.judge),
    "interview": ShippedKind("personahub.pipelines.interview", labels.interview),
    "calibration": ShippedKind("personahub.pipelines.calibrate", labels.calibration),
    "population_write": ShippedKind("personahub.pipelines.population_write",
                                    labels.population_write),
}

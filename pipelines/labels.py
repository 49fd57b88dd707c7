"""The shipped job kinds, each named once with its module and label (a few words on what a job
makes, for ``personahub jobs``). Kept apart from the specs so listing jobs imports no model stack,
which took most of a listing's time (``bench/bench_reads.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Config = Mapping[str, Any]


def run(config: Config) -> str:
    return str((config.get("scenario") or {}).get("name", ""))


def synthesis(config: Config) -> str:
    return f"{config.get('task', '?')} x{config.get('n', '?')}"


def expansion(config: Config) -> str:
    return f"{config.get('hops')} hop(s) × {config.get('fanout')}"


def text_to_persona(config: Config) -> str:
    return str(config.get("corpus") or Path(str(config.get("path") or "")).name)


def dedup(config: Config) -> str:
    return f"embedder {config.get('embedder') or 'none'}"


def judge(config: Config) -> str:
    target = f"job {config['job']}" if config.get("job") else f"run {config.get('run', '?')}"
    return target + (f", sample {config['sample']}" if config.get("sample") else "")


def interview(config: Config) -> str:
    question = str(config.get("question", ""))
    return f"run {config.get('run_id', '?')}: {question[:40]}"


def calibration(config: Config) -> str:
    return (f"{Path(str(config.get('survey', '?'))).name} x {config.get('population', '?')}, "
            f"n={config.get('n', '?')}")


def population_write(config: Config) -> str:
    files = [Path(str(config[k])).name for k in ("marginals", "joint") if config.get(k)]
    return f"{' + '.join(files)} n={config.get('n', '?')}"


def evaluation(config: Config) -> str:
    solvers, models = config.get("solvers") or [], config.get("models") or []
    return (f"job {config.get('job', '?')}: {len(solvers)} solver(s)"
            + (f", {len(models)} model(s)" if models else ""))


@dataclass(frozen=True)
class ShippedKind:
    """Where a shipped kind lives (``module`` registers its spec) and its ``label`` function."""

    module: str
    label: Callable[[Config], str]


#: every shipped kind: the one place a kind shipped with personahub is named
SHIPPED: dict[str, ShippedKind] = {
    "run": ShippedKind("personahub.pipelines.run", run),
    "synthesis": ShippedKind("personahub.pipelines.synthesize", synthesis),
    "expansion": ShippedKind("personahub.pipelines.expand", expansion),
    "text_to_persona": ShippedKind("personahub.pipelines.text_to_persona", text_to_persona),
    "dedup": ShippedKind("personahub.pipelines.dedup", dedup),
    "judge": ShippedKind("personahub.pipelines.judge", judge),
    "interview": ShippedKind("personahub.pipelines.interview", interview),
    "calibration": ShippedKind("personahub.pipelines.calibrate", calibration),
    "population_write": ShippedKind("personahub.pipelines.population_write", population_write),
    "evaluation": ShippedKind("personahub.pipelines.evaluate", evaluation),
}

"""The shipped job kinds, each named once: the module that registers its spec, its label (a few
words on what a job makes, for personahub jobs), its command and its public job functions.

Commands and functions are import strings, resolved by the command line and the package. This
module imports neither them nor the specs, so listing jobs does not load the model stack, and it
avoids dataclasses because import personahub reads this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

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
    what = (f"items {Path(str(config['items'])).name}" if config.get("items")
            else f"job {config.get('job', '?')}")
    return (f"{what}: {len(solvers)} solver(s)" if solvers else f"{what}: no solver") \
        + (f", {len(models)} model(s)" if models else "")


class ShippedKind(NamedTuple):
    """Where a shipped kind lives and what its messages call it.

    module registers its spec; label describes a job of it; command is registered at
    command_path; api are its job functions, each exported with its _async twin. noun and unit
    name a job and what it counts in messages; id_prefix starts a new job's id (empty: the kind);
    resumed_by_command: a stop's message says to run the command again with --resume (else
    personahub resume).
    """

    module: str
    label: Callable[[Config], str]
    command: str
    command_path: tuple[str, ...]
    api: tuple[str, ...]
    noun: str
    unit: str
    id_prefix: str = ""
    resumed_by_command: bool = False

    @property
    def resume_command(self) -> str | None:
        """The command a stopped job is resumed with, or None for personahub resume."""
        return " ".join(("personahub", *self.command_path)) if self.resumed_by_command else None


#: every shipped kind, in the order personahub.__all__ lists their job functions
SHIPPED: dict[str, ShippedKind] = {
    "run": ShippedKind(
        "personahub.pipelines.run", run, "personahub.cli.run:run", ("run",),
        ("personahub.api:run_scenario",), "run", "actions", resumed_by_command=True),
    "synthesis": ShippedKind(
        "personahub.pipelines.synthesize", synthesis, "personahub.cli.synth:synthesize",
        ("synthesize",), ("personahub.api:synthesize",), "synthesis job", "items", "synth", True),
    "text_to_persona": ShippedKind(
        "personahub.pipelines.text_to_persona", text_to_persona,
        "personahub.cli.personas:personas_from_text", ("personas", "from-text"),
        ("personahub.api:text_to_persona",), "text-to-persona job", "answers", "text", True),
    "expansion": ShippedKind(
        "personahub.pipelines.expand", expansion, "personahub.cli.personas:personas_expand",
        ("personas", "expand"), ("personahub.api:expand",), "expansion", "personas asked", "exp",
        True),
    "dedup": ShippedKind(
        "personahub.pipelines.dedup", dedup, "personahub.cli.dedup:personas_dedup",
        ("personas", "dedup"), ("personahub.api:dedup",), "dedup job", "personas embedded",
        "dedup", True),
    "interview": ShippedKind(
        "personahub.pipelines.interview", interview, "personahub.cli.interview:interview",
        ("interview",), ("personahub.interviews:interview",), "interview", "answers", "iv", True),
    "judge": ShippedKind(
        "personahub.pipelines.judge", judge, "personahub.cli.judge:judge", ("judge",),
        ("personahub.api:judge",), "judge", "items"),
    "evaluation": ShippedKind(
        "personahub.pipelines.evaluate", evaluation, "personahub.cli.evaluate:evaluate",
        ("evaluate",), ("personahub.api:evaluate",), "evaluation", "answers"),
    "calibration": ShippedKind(
        "personahub.pipelines.calibrate", calibration, "personahub.cli.calibrate:calibrate",
        ("calibrate",), ("personahub.api:calibrate",), "calibration", "answers", "calib"),
    "population_write": ShippedKind(
        "personahub.pipelines.population_write", population_write,
        "personahub.cli.population:personas_sample_population", ("personas", "sample-population"),
        ("personahub.api:write_population",), "population job", "personas", "popwrite"),
}

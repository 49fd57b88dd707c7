"""The shipped job kinds, each named once, in one keyword row: the module that registers its
spec, its label (a few words on what a job makes, for personahub jobs), its command and its
public job functions, its tables and the modules that own their SQL, and a sample config.

Commands and functions are import strings, resolved by the command line and the package. This
module imports neither them nor the specs, so listing jobs does not load the model stack, and it
avoids dataclasses because import personahub reads this table. The tests derive their lists of
kinds, tables and configs from these rows (docs/architecture.md, "Adding a job kind").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
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
    what = (f"items {Path(str(config['items'])).name}" if config.get("items")
            else f"job {config.get('job', '?')}")
    return (f"{what}: {len(solvers)} solver(s)" if solvers else f"{what}: no solver") \
        + (f", {len(models)} model(s)" if models else "")


class ShippedKind:
    """One job kind's row: where it lives, what its messages call it, its tables, a sample config.

    Every field is a keyword, so a row reads as what it says. The kernel registers the spec
    that ``module`` defines; ``label`` describes a job of the kind in ``personahub jobs``;
    ``command`` is registered at ``command_path``; ``api`` are its job functions, each exported
    with its ``_async`` twin. ``noun`` and ``unit`` name a job and what it counts in messages;
    ``id_prefix`` starts a new job's id (empty: the kind); ``resumed_by_command``: a stop's
    message says to run the command again with ``--resume`` (else ``personahub resume``).
    ``tables`` are the tables of ``core/schema.sql`` the kind owns, first the one that holds a
    job's rows under its id, and ``sql_owners`` the modules whose SQL reads and writes them.
    ``sample`` is the stored config (as ``jobs.config`` keeps it) of a small offline job of the
    kind: its label reads it, and the tests run it.
    """

    __slots__ = ("api", "command", "command_path", "id_prefix", "label", "module", "noun",
                 "resumed_by_command", "sample", "sql_owners", "tables", "unit")

    module: str
    label: Callable[[Config], str]
    command: str
    command_path: tuple[str, ...]
    api: tuple[str, ...]
    noun: str
    unit: str
    tables: tuple[str, ...]
    sql_owners: tuple[str, ...]
    sample: Config
    id_prefix: str
    resumed_by_command: bool

    def __init__(self, *, module: str, label: Callable[[Config], str], command: str,
                 command_path: tuple[str, ...], api: tuple[str, ...], noun: str, unit: str,
                 tables: tuple[str, ...], sql_owners: tuple[str, ...], sample: Config,
                 id_prefix: str = "", resumed_by_command: bool = False) -> None:
        self.module, self.label, self.command = module, label, command
        self.command_path, self.api = tuple(command_path), tuple(api)
        self.noun, self.unit = noun, unit
        self.tables, self.sql_owners = tuple(tables), tuple(sql_owners)
        self.sample = MappingProxyType(dict(sample))
        self.id_prefix, self.resumed_by_command = id_prefix, resumed_by_command

    def as_dict(self) -> dict[str, object]:
        """Return the row's fields by name."""
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self, **changes: Any) -> ShippedKind:
        """Return a copy of the row with the given fields changed."""
        return ShippedKind(**{**self.as_dict(), **changes})

    def __repr__(self) -> str:
        return f"ShippedKind(module={self.module!r}, command={self.command!r})"

    @property
    def resume_command(self) -> str | None:
        """Return the command a stopped job is resumed with, or None for personahub resume."""
        return " ".join(("personahub", *self.command_path)) if self.resumed_by_command else None


_RUN_LOG = ("runs", "run_agents", "run_archetypes", "run_agent_archetypes", "steps", "emissions",
            "messages", "run_edges", "events", "interventions", "survey_answers", "agent_states",
            "decisions", "experiments", "experiment_attempts", "experiment_agents")
_CALIBRATION = ("calibration_jobs", "calibration_questions", "calibration_human",
                "calibration_panels", "calibration_answers", "calibration_scores",
                "calibration_summary", "calibration_folds", "calibration_profiles")
_EVALUATION = ("eval_item_sets", "eval_items", "eval_splits", "eval_contamination",
               "eval_answers", "eval_verified", "eval_equivalence")

#: every shipped kind, in the order personahub.__all__ lists their job functions
SHIPPED: dict[str, ShippedKind] = {
    "run": ShippedKind(
        module="personahub.pipelines.run", label=run,
        command="personahub.cli.run:run", command_path=("run",),
        api=("personahub.api:run_scenario",), noun="run", unit="actions",
        resumed_by_command=True,
        tables=_RUN_LOG,
        sql_owners=("personahub.sim.store", "personahub.sim.run_queries",
                    "personahub.sim.experiment_store"),
        sample={"scenario": {"name": "riverside"}}),
    "synthesis": ShippedKind(
        module="personahub.pipelines.synthesize", label=synthesis,
        command="personahub.cli.synth:synthesize", command_path=("synthesize",),
        api=("personahub.api:synthesize",), noun="synthesis job", unit="items",
        id_prefix="synth", resumed_by_command=True,
        tables=("synth_jobs", "synth_job_personas", "synth_items"),
        sql_owners=("personahub.pipelines.synthesize", "personahub.pipelines.synthesis_inputs"),
        sample={"task": "instruction", "n": 8, "sample": "head", "batch_size": 3}),
    "text_to_persona": ShippedKind(
        module="personahub.pipelines.text_to_persona", label=text_to_persona,
        command="personahub.cli.personas:personas_from_text",
        command_path=("personas", "from-text"),
        api=("personahub.api:text_to_persona",), noun="text-to-persona job", unit="answers",
        id_prefix="text", resumed_by_command=True,
        tables=("text_jobs", "text_done"),
        sql_owners=("personahub.personas.text_jobs", "personahub.personas.text_to_persona"),
        sample={"corpus": "corpus.txt", "relations": ["read", "like"], "batch_size": 2}),
    "expansion": ShippedKind(
        module="personahub.pipelines.expand", label=expansion,
        command="personahub.cli.personas:personas_expand", command_path=("personas", "expand"),
        api=("personahub.api:expand",), noun="expansion", unit="personas asked",
        id_prefix="exp", resumed_by_command=True,
        tables=("expansions", "expansion_frontier"),
        sql_owners=("personahub.personas.expand",),
        sample={"hops": 2, "fanout": 2, "limit": 4, "batch_size": 2}),
    "dedup": ShippedKind(
        module="personahub.pipelines.dedup", label=dedup,
        command="personahub.cli.dedup:personas_dedup", command_path=("personas", "dedup"),
        api=("personahub.api:dedup",), noun="dedup job", unit="personas embedded",
        id_prefix="dedup", resumed_by_command=True,
        tables=("dedup_jobs", "persona_embeddings", "dedup_judged"),
        sql_owners=("personahub.personas.dedup_jobs", "personahub.personas.embedding_store",
                    "personahub.personas.dedup_languages"),
        sample={"embedder": "hash", "batch_size": 10}),
    "interview": ShippedKind(
        module="personahub.pipelines.interview", label=interview,
        command="personahub.cli.interview:interview", command_path=("interview",),
        api=("personahub.interviews:interview",), noun="interview", unit="answers",
        id_prefix="iv", resumed_by_command=True,
        tables=("interviews",),
        sql_owners=("personahub.pipelines.interview",),
        sample={"run_id": "20250101-090000-a1b2c3", "question": "What did you notice this week?",
                "carve": ["hop=0"], "batch_size": 2}),
    "judge": ShippedKind(
        module="personahub.pipelines.judge", label=judge,
        command="personahub.cli.judge:judge", command_path=("judge",),
        api=("personahub.api:judge",), noun="judge", unit="items",
        tables=("judgments",),
        sql_owners=("personahub.analysis.judgments",),
        sample={"job": "synth-20250101-090000-a1b2c3", "sample": 6, "batch_size": 3}),
    "evaluation": ShippedKind(
        module="personahub.pipelines.evaluate", label=evaluation,
        command="personahub.cli.evaluate:evaluate", command_path=("evaluate",),
        api=("personahub.api:evaluate",), noun="evaluation", unit="answers",
        tables=_EVALUATION,
        sql_owners=("personahub.pipelines.evaluate", "personahub.pipelines.evaluate_scores",
                    "personahub.pipelines.evaluate_split", "personahub.pipelines.evaluate_items"),
        sample={"job": "synth-20250101-090000-a1b2c3", "test_n": 3, "agree": 1,
                "solvers": ["offline?seed=1", "offline?seed=2"], "models": ["offline?seed=3"]}),
    "calibration": ShippedKind(
        module="personahub.pipelines.calibrate", label=calibration,
        command="personahub.cli.calibrate:calibrate", command_path=("calibrate",),
        api=("personahub.api:calibrate",), noun="calibration", unit="answers",
        id_prefix="calib",
        tables=_CALIBRATION,
        sql_owners=("personahub.analysis.calibration_store",),
        sample={"survey": "survey.csv", "population": "pop-5f0c2a9e1d", "n": 5, "seed": 2,
                "no_persona_n": 3, "batch_size": 7}),
    "population_write": ShippedKind(
        module="personahub.pipelines.population_write", label=population_write,
        command="personahub.cli.population:personas_sample_population",
        command_path=("personas", "sample-population"),
        api=("personahub.api:write_population",), noun="population job", unit="personas",
        id_prefix="popwrite",
        tables=("population_jobs",),
        sql_owners=("personahub.pipelines.population_write",),
        sample={"marginals": "marginals.csv", "n": 80, "seed": 5}),
}

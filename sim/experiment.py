"""Experiments on the society: arms as differences from a scenario, replicated over seeds.

A scenario file declares one next to its SCENARIO::

    EXPERIMENT = Experiment(
        arms=(Arm(name="no_rumour", drop_events=(1,)), Arm(name="rumour")),
        replicates=5,
        outcomes=(Outcome(survey="purchase_intent", step=5, options=("definitely", "probably")),),
    )

The first arm is the control. Each arm is its own society from the same seed, or with
``design="within"`` each replicate is one society whose agents are randomised into the arms.
"""

from __future__ import annotations

import dataclasses
import runpy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from personahub.core.plan_limits import MAX_REPLICATES
from personahub.core.validate import check_id
from personahub.sim.scenario import (
    SCENARIO_MODULE,
    Event,
    Intervention,
    Scenario,
    ScenarioError,
    ScenarioValueError,
    _named_fields,
    _valid,
    check_steps,
    load_scenario,
    raised_text,
    scenario_frame,
)

DESIGNS = ("between", "within")
STRATIFY_ATTRIBUTES = "attributes:"
STRATIFY_COMMUNITY = "community"  # Louvain communities of the graph


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ScenarioValueError(message)


def _tuple(value: object, field_name: str) -> tuple[object, ...]:
    _check(isinstance(value, Sequence) and not isinstance(value, str | bytes),
           f"{field_name} must be a tuple, got {value!r}")
    return tuple(value)  # type: ignore[arg-type]


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Arm:
    """One arm: the base scenario with these differences (none: the base scenario itself).

    Attributes:
        name: a short identifier, unique in the experiment.
        drop_events: indices (0-based, in step order) of the base events this arm leaves out.
        add_events: Event objects this arm adds.
        drop_interventions: indices of the base interventions this arm leaves out.
        add_interventions: Intervention objects this arm adds.
        world: text shown after the base world (its world and world_file) as the World
            section's last paragraph, whole (None: the base world alone).
    """

    name: str
    drop_events: tuple[int, ...] = ()
    add_events: tuple[Event, ...] = ()
    drop_interventions: tuple[int, ...] = ()
    add_interventions: tuple[Intervention, ...] = ()
    world: str | None = None

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and self.name.isidentifier(),
               f"arm.name must be a short identifier (letters, digits, _), got {self.name!r}")
        where = f"arm {self.name!r}"
        for name in ("drop_events", "add_events", "drop_interventions", "add_interventions"):
            object.__setattr__(self, name, _tuple(getattr(self, name), f"{where}: {name}"))
        for name in ("drop_events", "drop_interventions"):
            _check(all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                       for i in getattr(self, name)),
                   f"{where}: {name} must hold indices >= 0, got {getattr(self, name)!r}")
        _check(all(isinstance(e, Event) for e in self.add_events),
               f"{where}: add_events must hold Event(...) objects")
        _check(all(isinstance(x, Intervention) for x in self.add_interventions),
               f"{where}: add_interventions must hold Intervention(...) objects")
        _check(self.world is None or (isinstance(self.world, str) and bool(self.world.strip())),
               f"{where}: world must be a non-empty string or None")


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What an experiment measures: a survey's answers at one step, or a SQL query's numbers.

    Attributes:
        survey: the survey id (empty for a SQL outcome).
        step: the step whose answers count.
        options: a choice survey's options whose share is the outcome; empty: the scale's mean.
        name: the outcome's name in tables (default SURVEY@STEP; required with sql).
        sql: a query of (agent_id, value) rows or one value row, the run's id bound as
            ``$run_id``; the outcome is the mean.
    """

    survey: str = ""
    step: int = 0
    options: tuple[str, ...] = ()
    name: str = ""
    sql: str = ""

    def __post_init__(self) -> None:
        _check(isinstance(self.sql, str), f"outcome.sql must be a string, got {self.sql!r}")
        if self.sql:
            _check(isinstance(self.name, str) and bool(self.name),
                   "outcome.sql: give the outcome a name= (it names the outcome in tables)")
            where = f"outcome {self.name!r}"
            _check(not self.survey and not self.step and not self.options,
                   f"{where}: give either sql or survey/step/options, not both")
            _check("$run_id" in self.sql,
                   f"{where}: sql must read the run from the parameter $run_id "
                   "(e.g. WHERE run_id = $run_id)")
            return
        _check(isinstance(self.survey, str) and bool(self.survey),
               f"outcome.survey must be a survey id (or give sql=), got {self.survey!r}")
        _check(isinstance(self.step, int) and not isinstance(self.step, bool) and self.step >= 1,
               f"outcome {self.survey!r}: step must be an int >= 1, got {self.step!r}")
        if isinstance(self.options, str):
            object.__setattr__(self, "options", (self.options,))
        object.__setattr__(self, "options",
                           _tuple(self.options, f"outcome {self.survey!r}: options"))
        if not self.name:
            object.__setattr__(self, "name", f"{self.survey}@{self.step}")

    @property
    def is_share(self) -> bool:
        """Whether the outcome is a share of options rather than a mean."""
        return bool(self.options)

    @property
    def is_sql(self) -> bool:
        """Whether the outcome comes from a SQL query rather than a survey."""
        return bool(self.sql)


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Experiment:
    """Arms (the first is the control), replicates and outcomes.

    Attributes:
        arms: two or more Arm objects; the first is the control.
        outcomes: one or more Outcome objects.
        replicates: runs per arm, with seeds scenario.seed + 0, 1, ...
        design: between (each arm its own society) or within (agents randomised into the arms).
        stratify: within only: ``attributes:<name>`` or ``community`` (Louvain); empty: none.
        id: the experiment's id (default: the scenario's name); a rerun skips finished runs.
    """

    arms: tuple[Arm, ...]
    outcomes: tuple[Outcome, ...]
    replicates: int = 3
    design: str = "between"
    stratify: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", _tuple(self.arms, "experiment.arms"))
        object.__setattr__(self, "outcomes", _tuple(self.outcomes, "experiment.outcomes"))
        _check(len(self.arms) >= 2 and all(isinstance(a, Arm) for a in self.arms),
               "experiment.arms must hold two or more Arm(...) objects (the first is the control)")
        names = [a.name for a in self.arms]
        _check(len(set(names)) == len(names), f"experiment.arms: duplicate arm names in {names}")
        _check(len(self.outcomes) >= 1 and all(isinstance(o, Outcome) for o in self.outcomes),
               "experiment.outcomes must hold one or more Outcome(...) objects")
        outcome_names = [o.name for o in self.outcomes]
        _check(len(set(outcome_names)) == len(outcome_names),
               f"experiment.outcomes: duplicate outcome names in {outcome_names} (give name=)")
        _check(isinstance(self.replicates, int) and not isinstance(self.replicates, bool)
               and 1 <= self.replicates <= MAX_REPLICATES,
               f"experiment.replicates must be an int within 1..{MAX_REPLICATES}, got "
               f"{self.replicates!r}")
        _check(self.design in DESIGNS,
               f"experiment.design must be one of {DESIGNS}, got {self.design!r}")
        _check(isinstance(self.stratify, str) and (
            self.stratify in ("", STRATIFY_COMMUNITY)
            or (self.stratify.startswith(STRATIFY_ATTRIBUTES)
                and bool(self.stratify[len(STRATIFY_ATTRIBUTES):].strip()))),
            f"experiment.stratify must be '', 'community' or 'attributes:<name>', got "
            f"{self.stratify!r}")
        _check(not self.stratify or self.design == "within",
               f"experiment.stratify: {self.stratify!r} needs design='within' (between worlds "
               "randomises no agents)")
        _check(isinstance(self.id, str), f"experiment.id must be a string, got {self.id!r}")
        if self.id:  # empty: the scenario's name
            _valid(check_id, self.id, "experiment.id")

    @property
    def control(self) -> Arm:
        """The control arm (the first)."""
        return self.arms[0]

    def with_replicates(self, replicates: int) -> Experiment:
        """Return the same experiment with another number of replicates."""
        return dataclasses.replace(self, replicates=replicates)


def check_experiment(experiment: Experiment, scenario: Scenario) -> None:
    """Fail, naming the field, when an arm or outcome does not fit the scenario."""
    events, interventions = len(scenario.scheduled_events), len(scenario.interventions)
    for i, arm in enumerate(experiment.arms):
        where = f"experiment.arms[{i}] ({arm.name})"
        for index in arm.drop_events:
            _check(index < events, f"{where}.drop_events: index {index} is out of range (the "
                                   f"scenario has {events} events, 0..{events - 1})")
        for index in arm.drop_interventions:
            _check(index < interventions,
                   f"{where}.drop_interventions: index {index} is out of range (the scenario "
                   f"has {interventions} interventions)")
    surveys = {s.id: s for s in scenario.surveys}
    for i, outcome in enumerate(experiment.outcomes):
        if outcome.is_sql:  # checked when it runs
            continue
        where = f"experiment.outcomes[{i}] ({outcome.name})"
        survey = surveys.get(outcome.survey)
        _check(survey is not None, f"{where}.survey: no survey {outcome.survey!r} in the "
                                   f"scenario (it has: {', '.join(surveys) or 'none'})")
        assert survey is not None
        _check(outcome.step in survey.steps, f"{where}.step: survey {survey.id!r} is asked at "
                                             f"steps {survey.steps}, not {outcome.step}")
        if survey.answer == "choice":
            _check(outcome.is_share, f"{where}.options: give the options of {survey.id!r} "
                                     f"whose share is the outcome ({', '.join(survey.options)})")
            unknown = [o for o in outcome.options if o not in survey.options]
            if unknown:
                raise ScenarioValueError(f"{where}.options: {unknown[0]!r} is not an option of "
                                         f"{survey.id!r} ({', '.join(survey.options)})")
        elif survey.answer == "scale":
            _check(not outcome.is_share, f"{where}.options: {survey.id!r} is a scale; its "
                                         "outcome is the mean, give no options")
        else:
            raise ScenarioValueError(f"{where}.survey: {survey.id!r} has free-text answers, "
                                     "which are no outcome (use a choice or scale survey)")


def arm_scenario(scenario: Scenario, arm: Arm) -> Scenario:
    """Return the base scenario with the arm's differences (the same file, name and seed).

    The arm's world text goes to arm_world, not into world: the prompt shows it after the whole
    base world (world, then world_file) as the World section's last paragraph, so a treated prompt
    is its control's plus that paragraph whatever the base world's source.
    """
    events = [e for i, e in enumerate(scenario.scheduled_events) if i not in arm.drop_events]
    interventions = [x for i, x in enumerate(scenario.interventions)
                     if i not in arm.drop_interventions]
    arm_world = scenario.arm_world if arm.world is None else arm.world.strip()
    changed = dataclasses.replace(scenario, events=(*events, *arm.add_events),
                                  interventions=(*interventions, *arm.add_interventions),
                                  arm_world=arm_world)
    check_steps(changed)
    return changed


def load_experiment(path: str | Path) -> tuple[Scenario, Experiment]:
    """Load a scenario file's SCENARIO and EXPERIMENT, checked against each other (ScenarioError)."""
    scenario = load_scenario(path)
    source = scenario.source or Path(path)
    try:
        namespace = runpy.run_path(str(source), run_name=SCENARIO_MODULE)
    except BaseException as exc:  # noqa: BLE001 - user code; load_scenario ran it once already
        raise ScenarioError(f"{scenario_frame(exc) or source}: scenario {raised_text(exc)}") from None
    experiment = namespace.get("EXPERIMENT")
    if not isinstance(experiment, Experiment):
        raise ScenarioError(f"{source}: defines no EXPERIMENT = Experiment(...) (see "
                            "docs/scenarios.md, \"Experiments\")")
    try:
        check_experiment(experiment, scenario)
        for arm in experiment.arms:
            arm_scenario(scenario, arm)
        if experiment.design == "within":
            within_scenario(scenario, experiment)
    except ScenarioError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    if not experiment.id:
        experiment = dataclasses.replace(experiment, id=scenario.name)
    return scenario, experiment


def within_scenario(scenario: Scenario, experiment: Experiment) -> Scenario:
    """Return the one scenario of a within-world replicate: each arm's changes reach only its agents."""
    names = tuple(a.name for a in experiment.arms)

    def keeping(dropped: str, index: int) -> tuple[str, ...]:
        return tuple(a.name for a in experiment.arms if index not in getattr(a, dropped))

    events: list[Event] = []
    for index, event in enumerate(scenario.scheduled_events):
        arms = keeping("drop_events", index)
        if arms:
            events.append(event if arms == names else dataclasses.replace(
                event, audience=dataclasses.replace(event.audience, arms=arms)))
    interventions: list[Intervention] = []
    for index, x in enumerate(scenario.interventions):
        arms = keeping("drop_interventions", index)
        if arms:
            interventions.append(x if arms == names else dataclasses.replace(x, arms=arms))
    for arm in experiment.arms:
        events += [dataclasses.replace(e, audience=dataclasses.replace(e.audience,
                                                                         arms=(arm.name,)))
                   for e in arm.add_events]
        interventions += [dataclasses.replace(x, arms=(arm.name,)) for x in arm.add_interventions]
    changed = dataclasses.replace(scenario, events=tuple(events),
                                  interventions=tuple(interventions), within_arms=names,
                                  within_stratify=experiment.stratify,
                                  within_worlds=tuple((a.name, a.world.strip())
                                                      for a in experiment.arms if a.world))
    check_steps(changed)
    return changed


def strata(persona_ids: Sequence[str], attributes: Sequence[Mapping[str, object]],
           graph: nx.Graph | None, stratify: str, seed: int) -> list[str]:
    """Each agent's stratum label (communities from a sorted graph, so seeded Louvain is stable)."""
    if not stratify:
        return ["" for _ in persona_ids]
    if stratify.startswith(STRATIFY_ATTRIBUTES):
        name = stratify[len(STRATIFY_ATTRIBUTES):].strip()
        return [str(a.get(name)) for a in attributes]
    members = set(persona_ids)
    canonical = nx.Graph()
    canonical.add_nodes_from(sorted(members))
    if graph is not None:
        canonical.add_edges_from(sorted(tuple(sorted((str(u), str(v))))
                                        for u, v in graph.edges() if u in members and v in members))
    label = {}
    communities = nx.community.louvain_communities(canonical, seed=seed)
    for k, community in enumerate(sorted(communities, key=lambda c: min(c))):
        label.update({node: f"community {k}" for node in community})
    return [label[p] for p in persona_ids]


def assign_arms(persona_ids: Sequence[str], arms: Sequence[str], seed: int,
                labels: Sequence[str] | None = None) -> dict[str, str]:
    """Randomise agents into arms, balanced within each stratum.

    Strata are shuffled and dealt to the arms in turn, the turn carrying over, so arm counts differ
    by at most one within every stratum and overall.

    Args:
        persona_ids: the agents.
        arms: the arm names.
        seed: the replicate's run seed.
        labels: each agent's stratum; None: one stratum.

    Returns:
        persona id -> arm name.
    """
    rng = np.random.default_rng([seed, 47])
    labels = list(labels) if labels is not None else ["" for _ in persona_ids]
    by_stratum: dict[str, list[str]] = {}
    for persona_id, label in zip(persona_ids, labels, strict=True):
        by_stratum.setdefault(label, []).append(persona_id)
    assignment: dict[str, str] = {}
    turn = 0
    for label in sorted(by_stratum):
        members = sorted(by_stratum[label])
        for position in rng.permutation(len(members)):
            assignment[members[int(position)]] = arms[turn % len(arms)]
            turn += 1
    return assignment

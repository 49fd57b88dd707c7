"""The scenario contract: a Python file that defines ``SCENARIO = Scenario(...)``.

Every part is a frozen, keyword-only dataclass validated on construction, so a broken scenario
fails at load time, naming the bad field.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import random
import runpy
import traceback
import warnings
from collections.abc import Callable, Container, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

from personahub.agents.prompts.budget import PromptBudget
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.input_files import MAX_TEXT_FILE_BYTES, MB, file_kind
from personahub.core.plan_limits import MAX_STEPS
from personahub.core.validate import (
    check_int,
    check_number,
    check_seed,
    check_weights,
    read_text_file,
)
from personahub.personas.expand import MAX_HOPS
from personahub.personas.record import Persona
from personahub.personas.sampling import HubQuery
from personahub.sim.memory import AgentMemory
from personahub.tasks import emission_kinds

SEED_PERSONAS = "seed"
HUB = "hub"  # sample the run's own database
ACTIVATION_MODES = ("all", "probability", "count", "function")
INTERVENTION_ACTIONS = ("set_persona", "add_memory", "forget", "add_edge", "remove_edge")
ANSWER_KINDS = ("choice", "scale", "text")
POLICIES = ("scripted", "deliberate")
# A persona id, or an agent id (file order: 1, 2, ...); personas an expansion adds cannot be named.
AgentRef = str | int
_T = TypeVar("_T")
# Scenario fields under their earlier names: still accepted, with a DeprecationWarning.
RENAMED_FIELDS = {"kinds": "tasks", "kind_weights": "task_weights"}


class ScenarioError(PersonahubError):
    """A scenario file is missing, raises, or defines an invalid scenario."""


class ScenarioValueError(ScenarioError, UsageError):
    """A scenario field holds an unusable value: a usage error (the CLI exits 2)."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ScenarioValueError(message)


def _valid(check: Callable[..., object], *args: object, **kwargs: object) -> object:
    try:
        return check(*args, **kwargs)
    except UsageError as exc:
        raise ScenarioValueError(str(exc)) from None


def _named_fields(cls: type[_T]) -> type[_T]:
    """Make a scenario dataclass report an unknown or missing field as a usage error listing the fields."""
    init = cls.__init__
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    shown = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
             if f.init and f.compare]  # load_scenario sets base_dir and source
    required = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]

    renamed = {old: new for old, new in RENAMED_FIELDS.items() if new in names}

    @functools.wraps(init)
    def checked_init(self: object, *args: object, **kwargs: object) -> None:
        for old in [k for k in kwargs if k in renamed]:
            new = renamed[old]
            if new in kwargs:
                raise ScenarioValueError(f"{cls.__name__}: give {new}= only ({old}= is its "
                                         f"earlier name)")
            warnings.warn(f"{cls.__name__}({old}=) is deprecated; use {new}=", DeprecationWarning,
                          stacklevel=2)
            kwargs[new] = kwargs.pop(old)
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            near = difflib.get_close_matches(unknown[0], [*shown, *renamed], n=1)
            hint = f" (did you mean {renamed.get(near[0], near[0])!r}?)" if near else ""
            raise ScenarioValueError(f"{cls.__name__}: unknown field {unknown[0]!r}{hint}; "
                                     f"known: {', '.join(shown)}")
        if args:
            raise ScenarioValueError(f"{cls.__name__}: give its fields by name "
                                     f"({', '.join(shown[:3])}, ...), not by position")
        missing = [k for k in required if k not in kwargs]
        if missing:
            raise ScenarioValueError(f"{cls.__name__}: give {', '.join(missing)} "
                                     f"(required field{'s' * (len(missing) > 1)})")
        init(self, **kwargs)

    cls.__init__ = checked_init  # type: ignore[method-assign]
    return cls


@_named_fields
@dataclass(frozen=True, kw_only=True)
class PersonaSource:
    """Where the scenario's personas come from: a file (the default), or the hub.

    Attributes:
        path: a persona file relative to the scenario file; seed (default) is the shipped set, hub
            samples the run's own database.
        limit: take at most this many (the first, or a seeded sample from the hub).
        fmt: importer format name; auto detects it.
        hub: sample from this database file instead.
        where: hub only: one SQL condition over the personas table.
        carve: hub only: KEY OP VALUE conditions that must all hold, e.g. "age>30".
        seed: hub only: the sampling seed.
        include_ungated: hub only: also draw personas the quality gate did not pass.
    """

    path: str = SEED_PERSONAS
    limit: int | None = None
    fmt: str = "auto"
    hub: str | None = None
    where: str | None = None
    carve: Sequence[str] = ()
    seed: int = 0
    include_ungated: bool = False

    def __post_init__(self) -> None:
        _check(isinstance(self.include_ungated, bool),
               f"personas.include_ungated must be true or false, got {self.include_ungated!r}")
        if self.limit is not None:
            _valid(check_int, self.limit, "personas.limit", low=1)
        if isinstance(self.carve, str):  # one condition given bare
            object.__setattr__(self, "carve", (self.carve,))
        _check(isinstance(self.carve, Sequence) and all(isinstance(c, str) for c in self.carve),
               "personas.carve must be a list of strings KEY OP VALUE, e.g. [\"age>30\"]")
        object.__setattr__(self, "carve", tuple(self.carve))
        _check(self.hub is None or (isinstance(self.hub, str) and bool(self.hub.strip())),
               f"personas.hub must be a database file path, got {self.hub!r}")
        _check(self.hub is None or self.path in (SEED_PERSONAS, HUB),
               f"personas.hub={self.hub!r} and personas.path={self.path!r}: give one source")
        _valid(check_seed, self.seed, "personas.seed")
        if not self.from_hub:
            _check(self.where is None and not self.carve,
                   "personas.where and personas.carve select from the hub: set personas.path="
                   "'hub' (the run's database) or personas.hub=FILE")
        try:
            self.query().conditions()
        except PersonahubError as exc:
            raise ScenarioValueError(str(exc)) from None

    @property
    def from_hub(self) -> bool:
        """Whether the personas are sampled from a database rather than read from a file."""
        return self.hub is not None or self.path == HUB

    def query(self) -> HubQuery:
        """Return the hub query, with this dataclass's field names in its errors."""
        return HubQuery(where=self.where, carve=tuple(self.carve), where_label="personas.where",
                        carve_label="personas.carve")


@_named_fields
@dataclass(frozen=True, kw_only=True)
class GraphGrowth:
    """How the relationship graph is built before the first step.

    Attributes:
        hops: persona-to-persona expansion rounds (0 to 6, as in the paper).
        fanout: related people asked for per persona per round.
        acquaintances: links per persona in a seeded small-world graph.
        rewire: small-world rewiring probability.
        stop_on_rejected: stop setup (resumable) when more than --max-failed-share of a batch
            of personas got no answer past the quality gate; by default the run goes on with
            the graph the kept answers make, and says how many were kept and why the rest were
            not.
    """

    hops: int = 1
    fanout: int = 1
    acquaintances: int = 4
    rewire: float = 0.1
    stop_on_rejected: bool = False

    def __post_init__(self) -> None:
        _valid(check_int, self.hops, "graph.hops", low=0, high=MAX_HOPS)
        _valid(check_int, self.fanout, "graph.fanout", low=1, high=20)
        _valid(check_int, self.acquaintances, "graph.acquaintances", low=0)
        _valid(check_number, self.rewire, "graph.rewire", low=0.0, high=1.0)
        _check(isinstance(self.stop_on_rejected, bool),
               f"graph.stop_on_rejected: {self.stop_on_rejected!r} is not true or false")


@dataclass(frozen=True)
class AgentInfo:
    """What activation functions and audience predicates see of an agent (read-only)."""

    agent_id: int
    persona_id: str
    persona: str
    attributes: Mapping[str, object]
    neighbours: tuple[str, ...]
    memory: tuple[str, ...] = ()


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Activation:
    """Which agents act in a step (idle agents make no model call).

    Attributes:
        mode: all, probability (each agent with probability p), count (count agents drawn per
            step) or function (``when(step, info, rng)`` decides).
        p: the per-agent probability.
        count: agents per step.
        when: the decision function.
    """

    mode: str = "all"
    p: float = 1.0
    count: int = 0
    when: Callable[[int, AgentInfo, random.Random], bool] | None = None

    def __post_init__(self) -> None:
        _check(self.mode in ACTIVATION_MODES,
               f"activation.mode must be one of {ACTIVATION_MODES}, got {self.mode!r}")
        if self.mode == "probability":
            _valid(check_number, self.p, "activation.p", above=0.0, high=1.0)
        if self.mode == "count":
            _valid(check_int, self.count, "activation.count", low=1)
        if self.mode == "function":
            _check(callable(self.when), "activation.when must be a function (step, info, rng) -> bool")
        # a setting the mode never reads would do nothing, silently
        _check(self.when is None or self.mode == "function",
               f"activation.when is given, but mode={self.mode!r} never calls it; give "
               "mode='function'")
        _check(self.p == 1.0 or self.mode == "probability",
               f"activation.p is given, but mode={self.mode!r} never reads it; give "
               "mode='probability'")
        _check(self.count == 0 or self.mode == "count",
               f"activation.count is given, but mode={self.mode!r} never reads it; give "
               "mode='count'")


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Audience:
    """Who receives an event or a survey: everyone, or the agents meeting every set field.

    Attributes:
        personas: these agents (persona ids, or agent ids as ints).
        text_contains: persona text contains any of these (case-insensitive).
        attributes: persona attributes have all these values.
        where: this predicate of an AgentInfo is true.
        near, hops: within hops of this agent on the graph (itself included).
        arms: in one of these arms of a within-world experiment (set by the experiment).
    """

    personas: tuple[AgentRef, ...] = ()
    text_contains: tuple[str, ...] = ()
    attributes: Mapping[str, object] = field(default_factory=dict)
    where: Callable[[AgentInfo], bool] | None = None
    near: AgentRef | None = None
    hops: int = 1
    arms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(not isinstance(self.personas, str), "audience.personas must be a tuple of ids")
        _check(not isinstance(self.arms, str), "audience.arms must be a tuple of arm names")
        object.__setattr__(self, "arms", tuple(self.arms))
        _check(not isinstance(self.text_contains, str),
               "audience.text_contains must be a tuple of strings")
        object.__setattr__(self, "personas", tuple(self.personas))
        object.__setattr__(self, "text_contains", tuple(self.text_contains))
        _check(self.where is None or callable(self.where), "audience.where must be a function")
        _valid(check_int, self.hops, "audience.hops", low=0)

    @property
    def everyone(self) -> bool:
        """True when no criterion is set."""
        return not (self.personas or self.text_contains or self.attributes or self.where
                    or self.near is not None or self.arms)

    def describe(self) -> str:
        """Return a short description stored with delivered events ("all" for everyone)."""
        if self.everyone:
            return "all"
        parts = []
        if self.personas:
            parts.append("personas=" + ",".join(str(p) for p in self.personas))
        if self.text_contains:
            parts.append("text~" + "|".join(self.text_contains))
        if self.attributes:
            parts.append("attributes=" + ",".join(f"{k}:{v}" for k, v in sorted(self.attributes.items())))
        if self.where is not None:
            parts.append(f"where={getattr(self.where, '__name__', 'function')}")
        if self.near is not None:
            parts.append(f"within {self.hops} hops of {self.near}")
        if self.arms:
            parts.append("arms=" + ",".join(self.arms))
        return "; ".join(parts)


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Event:
    """Something that happens at a step, seen by its audience (it enters their memory)."""

    step: int
    text: str
    audience: Audience = field(default_factory=Audience)

    def __post_init__(self) -> None:
        _check(isinstance(self.step, int) and self.step >= 1,
               f"event.step must be an int >= 1, got {self.step!r}")
        _check(isinstance(self.text, str) and bool(self.text.strip()),
               f"event at step {self.step}: text must be a non-empty string")


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Intervention:
    """A change made to the society at the start of a step, before anyone acts.

    Attributes:
        step: when.
        action: set_persona, add_memory, forget, add_edge or remove_edge.
        target: the agent changed (persona id, or agent id as an int).
        other: the other end of an edge.
        text: the new persona text or the memory.
        relation: label of an added edge.
        arms: applied only to targets in these arms of a within-world experiment.
    """

    step: int
    action: str
    target: AgentRef
    other: AgentRef | None = None
    text: str = ""
    relation: str = "acquaintance"
    arms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"intervention at step {self.step}"
        object.__setattr__(self, "arms", tuple(self.arms))
        _check(isinstance(self.step, int) and self.step >= 1, f"{where}: step must be an int >= 1")
        _check(self.action in INTERVENTION_ACTIONS,
               f"{where}: action must be one of {INTERVENTION_ACTIONS}, got {self.action!r}")
        if self.action in ("set_persona", "add_memory"):
            _check(bool(self.text.strip()), f"{where}: {self.action} needs text")
        if self.action in ("add_edge", "remove_edge"):
            _check(self.other is not None and self.other != self.target,
                   f"{where}: {self.action} needs another agent in 'other'")


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Survey:
    """A question asked to agents at chosen steps; answers go to the survey_answers table.

    Attributes:
        id: short identifier.
        question: the question text.
        steps: the steps at which it is asked.
        answer: choice (one of options), scale (an integer low..high) or text.
        options: the choices.
        low, high: the scale's range.
        audience: who is asked (everyone by default).
        remember: the agent remembers its answer.
        profile: a choice survey only: the id of a calibration fitted with --fit whose survey
            profile answers it (each agent's answer drawn from the profile's distribution for
            it); run --survey-profile sets one for every choice survey.
    """

    id: str
    question: str
    steps: tuple[int, ...]
    answer: str = "choice"
    options: tuple[str, ...] = ()
    low: int = 1
    high: int = 5
    audience: Audience = field(default_factory=Audience)
    remember: bool = False
    profile: str | None = None

    def __post_init__(self) -> None:
        where = f"survey {self.id!r}"
        _check(bool(self.id and self.id.strip()), "survey.id must not be empty")
        _check(bool(self.question.strip()), f"{where}: question must not be empty")
        object.__setattr__(self, "steps", tuple(self.steps) if not isinstance(self.steps, int)
                           else (self.steps,))
        _check(bool(self.steps) and all(isinstance(s, int) and s >= 1 for s in self.steps),
               f"{where}: steps must be ints >= 1")
        _check(self.answer in ANSWER_KINDS, f"{where}: answer must be one of {ANSWER_KINDS}")
        object.__setattr__(self, "options", tuple(self.options))
        if self.answer == "choice":
            _check(len(self.options) >= 2 and len(set(self.options)) == len(self.options),
                   f"{where}: a choice survey needs at least two distinct options")
        if self.answer == "scale":
            _valid(check_int, self.low, f"{where}: low")
            _valid(check_int, self.high, f"{where}: high")
            _check(self.low < self.high, f"{where}: scale needs low < high, got {self.low}..{self.high}")
        if self.profile is not None:
            _check(isinstance(self.profile, str) and bool(self.profile.strip()),
                   f"{where}: profile must be a calibration id, got {self.profile!r}")
            _check(self.answer == "choice", f"{where}: a survey profile answers choice surveys "
                                            f"only, not answer={self.answer!r}")


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Memory:
    """How much each agent remembers; older items fold into a bounded keyword summary.

    Attributes:
        observations: events and notes kept verbatim.
        own: the agent's own latest emissions kept verbatim.
        summary_terms: keywords kept in the summary of everything evicted.
        retrieve: Generative Agents retrieval: a prompt recalls the stored items scoring best on
            recency, importance and relevance.
        store: items kept for retrieval besides the verbatim ones.
        top_k: items a prompt recalls.
        reflect_every: every this many steps an agent with new memories reflects: one model call
            writes a summary in its voice that replaces the keyword summary.
        reflect_overflow: also reflect once this many items have left memory.
    The defaults make no extra model call.
    """

    observations: int = 6
    own: int = 3
    summary_terms: int = 24
    retrieve: bool = False
    store: int = 24
    top_k: int = 6
    reflect_every: int | None = None
    reflect_overflow: int | None = None

    def __post_init__(self) -> None:
        for name in ("observations", "own", "summary_terms", "store", "top_k"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool),
                   f"memory.{name} must be an int, got {value!r}")
            _check(value >= 0, f"memory.{name} must be >= 0")
        _check(isinstance(self.retrieve, bool), f"memory.retrieve must be True or False, "
                                                f"got {self.retrieve!r}")
        _check(self.top_k >= 1, "memory.top_k must be >= 1")
        for name in ("reflect_every", "reflect_overflow"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, int) and not isinstance(value, bool)
                                     and value >= 1),
                   f"memory.{name} must be an int >= 1 or None, got {value!r}")

    @property
    def reflects(self) -> bool:
        """Whether agents reflect at all (periodically or on overflow)."""
        return self.reflect_every is not None or self.reflect_overflow is not None

    def new_agent_memory(self, inbox_size: int) -> AgentMemory:
        """Return an empty memory of these sizes, so a restored one matches the run's."""
        return AgentMemory(observations=self.observations, messages=inbox_size, own=self.own,
                           summary_terms=self.summary_terms, retrieve=self.retrieve,
                           store=self.store, top_k=self.top_k, reflect=self.reflects,
                           reflect_overflow=self.reflect_overflow)


@_named_fields
@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A runnable virtual-society scenario.

    Attributes:
        name: short identifier, stored with every run.
        description: one line for humans.
        personas: where the personas come from.
        graph: how the relationship graph grows before the first step.
        steps: number of simulation steps.
        tasks: the output kinds agents write (emission tasks), drawn from in a scripted step.
        task_weights: relative weights for tasks (uniform when None).
        policy: scripted (kind and addressee drawn) or deliberate (a model call decides).
        world: the world text every agent sees.
        world_file: a file of more world text, relative to the scenario file, shown after world.
        events: Event objects, or a mapping step -> texts broadcast to everyone.
        interventions: Intervention objects.
        surveys: Survey objects.
        activation: an Activation, or the probability that an agent acts in a step.
        memory: how much each agent remembers.
        inbox_size: received messages an agent keeps in view.
        prompt_budget: approximate tokens an agent prompt may spend, in all and per part.
        seed: default seed of the run.
        duplicate_window: near-duplicates are checked against this many latest emissions of a kind
            (None: all); bounds memory in long runs.
        within_arms, within_stratify, within_worlds: a within-world experiment's arms, their
            stratification and each arm's extra world text (set by the experiment).
        arm_world: an experiment arm's world text (set by the experiment): the World section's
            last paragraph, after world and world_file, shown whole whatever the prompt budget.
        archetypes: ask choice and scale surveys, and draw actions, once per archetype of this
            many (None: every agent is asked).
        archetype_elicit: distribution or stated (the representative states the shares) or
            sample:N (N members answer), as calibrate --elicit's methods of those names.
        base_dir, source: the file's folder and the file, set when it is loaded.
    """

    name: str
    description: str = ""
    personas: PersonaSource = field(default_factory=PersonaSource)
    graph: GraphGrowth = field(default_factory=GraphGrowth)
    steps: int = 5
    tasks: tuple[str, ...] = ("instruction", "npc_dialogue", "tool_spec")
    task_weights: tuple[float, ...] | None = None
    policy: str = "scripted"
    world: str = ""
    world_file: str | None = None
    events: Sequence[Event] | Mapping[int, tuple[str, ...]] = ()
    interventions: Sequence[Intervention] = ()
    surveys: Sequence[Survey] = ()
    activation: Activation | float = field(default_factory=Activation)
    memory: Memory = field(default_factory=Memory)
    inbox_size: int = 5
    prompt_budget: PromptBudget = field(default_factory=PromptBudget)
    seed: int = 0
    duplicate_window: int | None = 1_000_000
    within_arms: tuple[str, ...] = ()
    within_stratify: str = ""
    within_worlds: tuple[tuple[str, str], ...] = ()
    arm_world: str = ""
    archetypes: int | None = None
    archetype_elicit: str = "stated"
    base_dir: Path = field(default=Path("."), compare=False)
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and bool(self.name.strip()),
               "scenario.name must be a non-empty string")
        _valid(check_int, self.steps, "scenario.steps", low=1, high=MAX_STEPS)
        _valid(check_seed, self.seed, "scenario.seed")
        _check(not isinstance(self.tasks, str | bytes) and isinstance(self.tasks, Sequence),
               f"scenario.tasks must be a tuple of task names, got {self.tasks!r}")
        _check(len(self.tasks) > 0, "scenario.tasks must name at least one emission task")
        known = emission_kinds()
        unknown = [k for k in self.tasks if k not in known]
        _check(not unknown, f"scenario.tasks: unknown task(s) {unknown}; known: {sorted(known)}")
        if self.task_weights is not None:
            _check(not isinstance(self.task_weights, str | bytes) and isinstance(
                self.task_weights, Sequence), "scenario.task_weights must be a tuple of numbers")
            _valid(check_weights, self.task_weights, "scenario.task_weights", len(self.tasks))
        _check(self.policy in POLICIES,
               f"scenario.policy must be one of {POLICIES}, got {self.policy!r}")
        if isinstance(self.activation, int | float) and not isinstance(self.activation, bool):
            _valid(check_number, self.activation, "scenario.activation", above=0.0, high=1.0)
            activation = (Activation() if self.activation == 1.0
                          else Activation(mode="probability", p=float(self.activation)))
            object.__setattr__(self, "activation", activation)
        _check(isinstance(self.activation, Activation),
               "scenario.activation must be an Activation(...) or a probability")
        _check(isinstance(self.memory, Memory), "scenario.memory must be a Memory(...)")
        _valid(check_int, self.inbox_size, "scenario.inbox_size", low=0)
        _check(isinstance(self.world, str), "scenario.world must be a string")
        _check(isinstance(self.arm_world, str), "scenario.arm_world must be a string")
        _check(self.world_file is None or isinstance(self.world_file, str),
               "scenario.world_file must be a file path (a string)")
        _check(isinstance(self.prompt_budget, PromptBudget),
               "scenario.prompt_budget must be a PromptBudget(...)")
        _check(self.duplicate_window is None or (isinstance(self.duplicate_window, int)
                                                 and self.duplicate_window >= 1),
               f"scenario.duplicate_window must be an int >= 1 or None, got {self.duplicate_window!r}")
        if self.archetypes is not None:
            _valid(check_int, self.archetypes, "scenario.archetypes", low=1)
        _valid(archetype_sample_size, self.archetype_elicit, "scenario.archetype_elicit")
        events: list[Event] = []
        if isinstance(self.events, Mapping):
            for step, items in self.events.items():
                _check(isinstance(step, int) and step >= 1,
                       f"scenario.events: step {step!r} must be an int >= 1")
                _check(not isinstance(items, str), f"scenario.events[{step}] must be a tuple of strings")
                events += [item if isinstance(item, Event) else Event(step=step, text=str(item))
                           for item in items]
        else:
            events = list(self.events)
        _check(all(isinstance(e, Event) for e in events), "scenario.events must hold Event(...) objects")
        object.__setattr__(self, "events", tuple(sorted(events, key=lambda e: e.step)))
        _check(all(isinstance(i, Intervention) for i in self.interventions),
               "scenario.interventions must hold Intervention(...) objects")
        object.__setattr__(self, "interventions", tuple(self.interventions))
        _check(all(isinstance(s, Survey) for s in self.surveys),
               "scenario.surveys must hold Survey(...) objects")
        ids = [s.id for s in self.surveys]
        _check(len(set(ids)) == len(ids), f"scenario.surveys: duplicate survey ids in {ids}")
        object.__setattr__(self, "surveys", tuple(self.surveys))
        object.__setattr__(self, "tasks", tuple(self.tasks))

    @property
    def kinds(self) -> tuple[str, ...]:
        """Return tasks under its earlier name (deprecated: read ``tasks``)."""
        warnings.warn("Scenario.kinds is deprecated; read Scenario.tasks", DeprecationWarning,
                      stacklevel=2)
        return self.tasks

    @property
    def kind_weights(self) -> tuple[float, ...] | None:
        """Return task_weights under its earlier name (deprecated: read ``task_weights``)."""
        warnings.warn("Scenario.kind_weights is deprecated; read Scenario.task_weights",
                      DeprecationWarning, stacklevel=2)
        return self.task_weights

    @property
    def scheduled_events(self) -> tuple[Event, ...]:
        """The events sorted by step."""
        return cast(tuple[Event, ...], self.events)

    def events_at(self, step: int) -> list[Event]:
        """Return the events scheduled for a step, in scenario order."""
        return [e for e in self.scheduled_events if e.step == step]

    def interventions_at(self, step: int) -> list[tuple[int, Intervention]]:
        """(index, intervention) pairs scheduled for a step, in scenario order."""
        return [(i, x) for i, x in enumerate(self.interventions) if x.step == step]

    def surveys_at(self, step: int) -> list[Survey]:
        """Return the surveys asked at a step."""
        return [s for s in self.surveys if step in s.steps]

    def world_text(self) -> str:
        """Return the world text plus the contents of the world file, if given.

        Not arm_world: prompts show an arm's text after this world, once the budget trimmed it
        (agents/prompts/budget.py, fit_context).
        """
        parts = [self.world.strip()] if self.world.strip() else []
        if self.world_file:
            path = self.resolve(self.world_file)
            try:
                parts.append(read_text_file(path, "world_file").strip())
            except PersonahubError as exc:
                raise ScenarioError(f"scenario {self.name}: {exc}") from None
        return "\n\n".join(parts)

    def resolve(self, relative: str) -> Path:
        """Resolve a path relative to the scenario file's folder."""
        path = Path(relative)
        return path if path.is_absolute() else self.base_dir / path

    def persona_path(self) -> Path:
        """Return the persona file to import (the shipped seed set by default)."""
        if self.personas.path == SEED_PERSONAS:
            from personahub.personas.importers import seed_file

            return seed_file()
        return self.resolve(self.personas.path)


SCENARIO_MODULE = "__personahub_scenario__"  # the module name a scenario file runs under


#: archetype_elicit's names for the representative stating the shares: calibrate --elicit's
#: method name, then the older spelling (the one stored, so earlier runs compare equal)
STATED = ("distribution", "stated")


def archetype_sample_size(elicit: object, name: str = "--archetype-elicit") -> int | None:
    """Return the N of archetype_elicit "sample:N"; None for "distribution" ("stated").

    The names are calibrate --elicit's methods: the representative states the shares as the
    distribution method does, and N members answer as the sample method's panel does.

    Raises:
        UsageError: any other value (one line naming the option).
    """
    if elicit in STATED:
        return None
    head, _, count = str(elicit).partition(":")
    if isinstance(elicit, str) and head == "sample" and count.isdigit() and int(count) >= 1:
        return int(count)
    raise UsageError(f"{name} must be 'distribution' ('stated') or 'sample:N' with N >= 1, "
                     f"got {elicit!r}")


def scenario_frame(exc: BaseException) -> str | None:
    """FILE:LINE of the innermost scenario-file frame in the traceback, also mid-run."""
    where = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        if frame.f_globals.get("__name__") == SCENARIO_MODULE:
            where = f"{frame.f_code.co_filename}:{line}"
    return where


def raised_text(exc: BaseException) -> str:
    """Describe what user code did, in words: a sys.exit is not an error it raised."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = str(exc).strip().splitlines()
    return f"raised {type(exc).__name__}" + (f": {text[0]}" if text else "")


def load_scenario(path: str | Path) -> Scenario:
    """Execute a scenario file under another module name (so its own CLI hook does not fire).

    Args:
        path: the scenario file.

    Returns:
        Its SCENARIO, with base_dir and source set.

    Raises:
        ScenarioError: the file is missing, raises, or defines no valid SCENARIO.
    """
    path = Path(path).resolve()
    if not path.is_file():
        what = "is a folder, not a scenario file" if path.is_dir() else "not found"
        if path.exists() and not path.is_dir():  # a device or a FIFO: never read
            what = f"is {file_kind(path.stat().st_mode)}, not a scenario file"
        raise ScenarioError(f"scenario file {what}: {path}")
    if path.stat().st_size > MAX_TEXT_FILE_BYTES:
        raise ScenarioError(f"scenario file is larger than {MAX_TEXT_FILE_BYTES // MB} MB, not a "
                            f"scenario: {path}")
    _refuse_nul(path)
    try:
        namespace = runpy.run_path(str(path), run_name=SCENARIO_MODULE)
    except ScenarioError as exc:  # a bad field: still a usage error once the file is named
        raise type(exc)(f"{path}: {exc}") from exc
    except SyntaxError as exc:
        raise ScenarioError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except BaseException as exc:  # noqa: BLE001 - user code: sys.exit, Ctrl-C raised by hand, ...
        raise ScenarioError(f"{scenario_frame(exc) or path}: scenario {raised_text(exc)}") from None
    scenario = namespace.get("SCENARIO")
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"{path}: defines no SCENARIO = Scenario(...)")
    try:
        check_steps(scenario)
    except ScenarioError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    return dataclasses.replace(scenario, base_dir=path.parent, source=path)


def _refuse_nul(path: Path) -> None:
    """Refuse a file holding a NUL byte, naming where (Python's own error gives no line)."""
    data = path.read_bytes()
    at = data.find(b"\0")
    if at < 0:
        return
    line = data.count(b"\n", 0, at) + 1
    column = at - (data.rfind(b"\n", 0, at) + 1) + 1
    raise ScenarioError(f"{path}:{line}: not a Python file (a NUL byte at line {line}, column "
                        f"{column})")


def check_steps(scenario: Scenario) -> None:
    """Fail when an event, intervention or survey is scheduled after the last step."""
    last = scenario.steps

    def late(what: str, step: int) -> None:
        _check(step <= last, f"{what} is scheduled at step {step}, after the last step "
                             f"(steps={last}); it would never happen")

    for event in scenario.scheduled_events:
        late(f"event {event.text[:40]!r}", event.step)
    for x in scenario.interventions:
        late(f"intervention {x.action} of {x.target!r}", x.step)
    for survey in scenario.surveys:
        for step in survey.steps:
            late(f"survey {survey.id!r}", step)


# attributes expansion gives the personas it adds
EXPANDED_ATTRIBUTES = frozenset({"parent", "relation"})


def check_references(scenario: Scenario, personas: Sequence[Persona]) -> None:
    """Fail, naming the field, when the scenario names agents or attributes its personas lack.

    Personas an expansion adds cannot be named: their agent ids are unknown in advance.
    """
    check_named(scenario, len(personas), {p.persona_id for p in personas},
                {k for p in personas for k in p.attributes})


def named_ids(scenario: Scenario) -> set[str]:
    """Return the persona ids (not agent ids) the scenario's audiences and interventions name."""
    named: list[AgentRef | None] = [*(a for e in scenario.scheduled_events
                                      for a in (*e.audience.personas, e.audience.near)),
                                    *(a for s in scenario.surveys
                                      for a in (*s.audience.personas, s.audience.near)),
                                    *(r for x in scenario.interventions for r in (x.target, x.other))]
    return {str(r) for r in named
            if r is not None and (isinstance(r, bool) or not isinstance(r, int))}


def check_named(scenario: Scenario, count: int, ids: Container[str], keys: Set[str]) -> None:
    """Fail, naming the field, when the scenario names agents or attributes its ``count``
    personas lack (``ids``: their persona ids, or those of them the scenario names; ``keys``:
    the attribute names any of them has)."""
    keys = set(keys)
    prefix = str(scenario.source) if scenario.source else f"scenario {scenario.name}"

    def check(ref: AgentRef | None, where: str) -> None:
        if ref is None:
            return
        known = (1 <= ref <= count) if isinstance(ref, int) and not isinstance(ref, bool) \
            else str(ref) in ids
        _check(known, f"{prefix}: {where} names {ref!r}, which is none of the scenario's "
                      f"{count} personas (a persona id from its persona file, or agent id 1..{count})")

    if scenario.graph.hops:
        keys |= EXPANDED_ATTRIBUTES
    audiences = [(f"event at step {e.step}", e.audience) for e in scenario.scheduled_events]
    audiences += [(f"survey {s.id!r}", s.audience) for s in scenario.surveys]
    for where, audience in audiences:
        for ref in audience.personas:
            check(ref, f"{where}: audience.personas")
        check(audience.near, f"{where}: audience.near")
        unknown = sorted(set(audience.attributes) - keys)
        if unknown:
            raise ScenarioValueError(f"{prefix}: {where}: audience.attributes names "
                                     f"{unknown[0]!r}, an attribute none of its personas has "
                                     f"(they have: {', '.join(sorted(keys)) or 'none'})")
    for x in scenario.interventions:
        check(x.target, f"intervention at step {x.step}: target")
        check(x.other, f"intervention at step {x.step}: other")

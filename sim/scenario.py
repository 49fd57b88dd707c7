"""The scenario contract: a Python file that defines ``SCENARIO = Scenario(...)``.

A scenario names its personas, how the relationship graph grows, how many steps run, which
emission kinds agents produce, the world text and scheduled events. Everything is a frozen,
keyword-only dataclass validated on construction, so a broken scenario fails at load time with
the field at fault, before any database is touched.

Run one with ``personahub run FILE`` or ``python FILE`` (which calls ``sim.main(__file__)``).
"""

from __future__ import annotations

import dataclasses
import runpy
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from agents.schemas import EMISSION_SCHEMAS
from personas.errors import PersonahubError
from personas.expand import MAX_HOPS

SEED_PERSONAS = "seed"


class ScenarioError(PersonahubError):
    """A scenario file is missing, raises, or defines an invalid scenario."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ScenarioError(message)


@dataclass(frozen=True, kw_only=True)
class PersonaSource:
    """Where the scenario's personas come from.

    Attributes:
        path: a persona file (any importer format), relative to the scenario file; ``seed``
            (default) is the shipped set of original personas.
        limit: take at most this many, in file order.
        fmt: importer format name (``auto`` detects it).
    """

    path: str = SEED_PERSONAS
    limit: int | None = None
    fmt: str = "auto"

    def __post_init__(self) -> None:
        _check(self.limit is None or self.limit >= 1, f"personas.limit must be >= 1, got {self.limit}")


@dataclass(frozen=True, kw_only=True)
class GraphGrowth:
    """How the relationship graph is built before the first step.

    Attributes:
        hops: persona-to-persona expansion rounds (0 to 6, as in the paper).
        fanout: related people asked for per persona per round.
        acquaintances: each scenario persona is linked to about this many others by a seeded
            small-world graph (relation ``acquaintance``), so a community starts connected.
        rewire: small-world rewiring probability.
    """

    hops: int = 1
    fanout: int = 1
    acquaintances: int = 4
    rewire: float = 0.1

    def __post_init__(self) -> None:
        _check(0 <= self.hops <= MAX_HOPS, f"graph.hops must be within 0..{MAX_HOPS}, got {self.hops}")
        _check(1 <= self.fanout <= 20, f"graph.fanout must be within 1..20, got {self.fanout}")
        _check(self.acquaintances >= 0, "graph.acquaintances must be >= 0")
        _check(0.0 <= self.rewire <= 1.0, "graph.rewire must be within [0, 1]")


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A runnable virtual-society scenario.

    Attributes:
        name: short identifier, stored with every run.
        description: one line for humans.
        personas: where the personas come from.
        graph: how the relationship graph grows before the first step.
        steps: number of simulation steps.
        kinds: emission kinds agents choose from (instruction, npc_dialogue, tool_spec).
        kind_weights: relative weights for ``kinds`` (uniform when None).
        world: the world text every agent sees.
        world_file: a file holding the world text, relative to the scenario file.
        events: step number → events broadcast to all agents at that step.
        activation: probability that an agent acts in a step (idle agents make no model call).
        inbox_size: how many received messages an agent keeps in view.
        seed: default seed of the run (``--seed`` overrides).
    """

    name: str
    description: str = ""
    personas: PersonaSource = field(default_factory=PersonaSource)
    graph: GraphGrowth = field(default_factory=GraphGrowth)
    steps: int = 5
    kinds: tuple[str, ...] = ("instruction", "npc_dialogue", "tool_spec")
    kind_weights: tuple[float, ...] | None = None
    world: str = ""
    world_file: str | None = None
    events: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    activation: float = 1.0
    inbox_size: int = 5
    seed: int = 0
    base_dir: Path = field(default=Path("."), compare=False)

    def __post_init__(self) -> None:
        _check(bool(self.name and self.name.strip()), "scenario.name must not be empty")
        _check(self.steps >= 1, f"scenario.steps must be >= 1, got {self.steps}")
        _check(len(self.kinds) > 0, "scenario.kinds must name at least one emission kind")
        unknown = [k for k in self.kinds if k not in EMISSION_SCHEMAS]
        _check(not unknown, f"scenario.kinds: unknown kind(s) {unknown}; "
                            f"known: {sorted(EMISSION_SCHEMAS)}")
        if self.kind_weights is not None:
            _check(len(self.kind_weights) == len(self.kinds) and all(w >= 0 for w in self.kind_weights)
                   and sum(self.kind_weights) > 0,
                   "scenario.kind_weights must be non-negative, one per kind, not all zero")
        _check(0.0 < self.activation <= 1.0, f"scenario.activation must be in (0, 1], got {self.activation}")
        _check(self.inbox_size >= 0, "scenario.inbox_size must be >= 0")
        for step, items in self.events.items():
            _check(isinstance(step, int) and step >= 1, f"scenario.events: step {step!r} must be an int >= 1")
            _check(not isinstance(items, str), f"scenario.events[{step}] must be a tuple of strings")
        object.__setattr__(self, "events", {k: tuple(v) for k, v in self.events.items()})
        object.__setattr__(self, "kinds", tuple(self.kinds))

    def world_text(self) -> str:
        """The world text: ``world`` plus the contents of ``world_file`` if given."""
        parts = [self.world.strip()] if self.world.strip() else []
        if self.world_file:
            path = self.resolve(self.world_file)
            try:
                parts.append(path.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ScenarioError(f"scenario {self.name}: world_file {path}: {exc.strerror}") from exc
        return "\n\n".join(parts)

    def resolve(self, relative: str) -> Path:
        """A path relative to the scenario file's folder."""
        path = Path(relative)
        return path if path.is_absolute() else self.base_dir / path

    def persona_path(self) -> Path:
        """The persona file to import (the shipped seed set by default)."""
        if self.personas.path == SEED_PERSONAS:
            return Path(str(resources.files("personas").joinpath("data/seed_personas.jsonl")))
        return self.resolve(self.personas.path)


def _raising_line(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f"{path}:{frames[-1].lineno}" if frames else str(path)


def load_scenario(path: str | Path) -> Scenario:
    """Execute a scenario file and return its ``SCENARIO`` (with ``base_dir`` set).

    Raises ScenarioError naming the file (and line) when it is missing, raises, or defines no
    valid ``SCENARIO``. The file runs under a non-``__main__`` name, so its own CLI hook is inert.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ScenarioError(f"scenario file not found: {path}")
    try:
        namespace = runpy.run_path(str(path), run_name="__personahub_scenario__")
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    except SyntaxError as exc:
        raise ScenarioError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:  # noqa: BLE001 - report any failure of user code as one line
        raise ScenarioError(f"{_raising_line(exc, path)}: scenario raised "
                            f"{type(exc).__name__}: {exc}") from exc
    scenario = namespace.get("SCENARIO")
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"{path}: defines no SCENARIO = Scenario(...)")
    return dataclasses.replace(scenario, base_dir=path.parent)

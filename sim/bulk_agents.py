"""Register many Mesa agents at once, ending as if each had been created in order.

One by one was a large part of setting up a million agents (bench_scale.py). This uses Mesa's
private fields; when a Mesa version lacks them, callers create agents one by one.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import mesa
from mesa.agent import AgentSet


def supported(model: mesa.Model) -> bool:
    """Return True when this Mesa keeps its agents where register_agents puts them."""
    return (isinstance(getattr(model, "_agents", None), dict)
            and isinstance(getattr(model, "_agents_by_type", None), dict)
            and isinstance(getattr(model, "_all_agents", None), AgentSet)
            and isinstance(getattr(model._all_agents, "_agents", None), weakref.WeakKeyDictionary)
            and hasattr(mesa.Agent, "_ids"))


def next_unique_ids(model: mesa.Model, n: int) -> list[int]:
    """Return the next n unique ids Mesa would give the model's agents."""
    counter = mesa.Agent._ids[model]
    return [next(counter) for _ in range(n)]


def register_agents(model: mesa.Model, agents: Sequence[object]) -> None:
    """Add agents of one type to the model's collections, in order, as Mesa would one by one."""
    if not agents:
        return
    model._agents.update(dict.fromkeys(agents))
    by_type: dict[type, AgentSet] = model._agents_by_type
    kind = type(agents[0])
    if kind in by_type:
        by_type[kind]._agents.update(dict.fromkeys(agents))
    else:
        by_type[kind] = AgentSet(agents, random=model.random)
    model._all_agents._agents.update(dict.fromkeys(agents))

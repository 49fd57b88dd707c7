"""Register many Mesa agents at once: what ``Agent.__init__`` does per agent, done per batch.

Mesa 3's ``Agent.__init__`` draws the next unique id and calls ``Model.register_agent``, which adds
the agent to three collections and formats a debug message, one agent at a time: a large part of
setting up a million agents (``bench/bench_scale.py``). ``register_agents`` gives ids from the same
counter and fills the same collections in bulk, so the model ends up as if each agent had been
created in order.
It uses Mesa's private fields; when they are not there (another Mesa), ``supported`` says so
and callers create agents one by one.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import mesa
from mesa.agent import AgentSet


def supported(model: mesa.Model) -> bool:
    """True when this Mesa keeps its agents where ``register_agents`` puts them."""
    return (isinstance(getattr(model, "_agents", None), dict)
            and isinstance(getattr(model, "_agents_by_type", None), dict)
            and isinstance(getattr(model, "_all_agents", None), AgentSet)
            and isinstance(getattr(model._all_agents, "_agents", None), weakref.WeakKeyDictionary)
            and hasattr(mesa.Agent, "_ids"))


def next_unique_ids(model: mesa.Model, n: int) -> list[int]:
    """The next ``n`` unique ids Mesa would give agents of ``model`` (drawn from its counter)."""
    counter = mesa.Agent._ids[model]
    return [next(counter) for _ in range(n)]


def register_agents(model: mesa.Model, agents: Sequence[Any]) -> None:
    """Add ``agents`` (all of one type, ids from ``next_unique_ids``) to the model's collections,
    in order, as ``Model.register_agent`` would one by one."""
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

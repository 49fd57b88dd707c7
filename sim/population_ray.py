"""A society's column shards on Ray actors: each actor holds one shard and runs its half-steps.

The actors are started once per run and read their ranges from the run's exported Parquet file
(on a filesystem every node mounts, as a job's shard folder is). An actor is not restarted: its
agents' state since the last committed step would be lost, so a lost actor fails the step and
the run stops resumable; the resume rebuilds every shard from the database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from personahub.core.optional import ray
from personahub.sim.population_load import load_shard, shard_ranges
from personahub.sim.population_plan import ShardAsk, ShardDone, StepClose, StepDeliver, StepOpen
from personahub.sim.scenario import Memory

ACTOR_PREFIX = "personahub-shard-"  # named so that tests can find the actors


class _ShardActor:
    """One shard of the population, on a Ray worker."""

    def __init__(self, index: int, **load: Any) -> None:
        self.index = index
        self.shard = load_shard(**load)

    def open_step(self, plan: StepOpen) -> ShardAsk:
        return self.shard.open_step(plan)

    def close_step(self, close: StepClose) -> ShardDone:
        return self.shard.close_step(close, self.index)

    def deliver(self, deliver: StepDeliver) -> ShardDone:
        return self.shard.deliver(deliver, self.index)

    def footprint(self) -> int:
        return self.shard.footprint()


class RayShards:
    """The shards on Ray actors; each half-step goes to every actor at once."""

    def __init__(self, actors: Sequence[Any]) -> None:
        self.actors = list(actors)

    async def open_step(self, plan: StepOpen) -> list[ShardAsk]:
        """Open a step on every shard."""
        return list(await asyncio.gather(*[a.open_step.remote(plan) for a in self.actors]))

    async def close_step(self, close: StepClose) -> list[ShardDone]:
        """Close a step on every shard."""
        return list(await asyncio.gather(*[a.close_step.remote(close) for a in self.actors]))

    async def deliver(self, deliveries: Sequence[StepDeliver]) -> list[ShardDone]:
        """Give every shard the messages to its agents."""
        return list(await asyncio.gather(*[a.deliver.remote(d) for a, d in
                                           zip(self.actors, deliveries, strict=True)]))


@contextmanager
def ray_shards(*, count: int, agents: int, agents_file: str, states_file: str | None,
               seed: int, memory: Memory, inbox_size: int, run_id: str,
               adjacency_file: str | None = None) -> Iterator[RayShards]:
    """Start ``count`` shard actors (spread over the cluster's nodes) for the run's agents; they
    end with the context."""
    remote = ray.remote(max_restarts=0, num_cpus=0, scheduling_strategy="SPREAD")(_ShardActor)
    tag = f"{ACTOR_PREFIX}{run_id}-{uuid.uuid4().hex[:6]}"
    actors = [remote.options(name=f"{tag}-{i}").remote(
        i, agents=agents_file, states=states_file, lo=lo, hi=hi, seed=seed, memory=memory,
        inbox_size=inbox_size, adjacency=adjacency_file)
        for i, (lo, hi) in enumerate(shard_ranges(agents, count))]
    try:
        ray.get([a.footprint.remote() for a in actors])  # loaded, or the loading error
        yield RayShards(actors)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)

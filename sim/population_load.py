"""Build a society's column shards from the Parquet files its run exports.

The run writes its agents (and, on a resume, their latest checkpointed states) to Parquet from
DuckDB; each shard reads its own contiguous range of agent ids, so no process but the shard's
holds those agents.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from personahub.sim.population import PopulationShard
from personahub.sim.scenario import Memory


def shard_ranges(agents: int, shards: int) -> list[tuple[int, int]]:
    """Split agent ids 1..agents into at most ``shards`` contiguous [lo, hi) ranges."""
    count = max(1, min(shards, agents))
    bounds = np.linspace(1, agents + 1, count + 1).round().astype(int).tolist()
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]


def _range(path: str, lo: int, hi: int, columns: list[str]) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns,
                         filters=[("agent_id", ">=", lo), ("agent_id", "<", hi)])


def load_shard(*, agents: str, states: str | None, lo: int, hi: int, seed: int, memory: Memory,
               inbox_size: int, adjacency: str | None = None) -> PopulationShard:
    """Return the shard of agent ids [lo, hi), with checkpointed states put back.

    Args:
        agents: the run's agents file (``sim/store.py`` ``export_population``).
        states: the latest states file (``export_states``), or None for a new run.
        lo, hi: the agent ids the shard holds.
        seed: the run seed.
        memory, inbox_size: the scenario's memory sizes.
        adjacency: the starting graph's file (``export_adjacency``), or None when no kind is
            said to a neighbour.
    """
    table = _range(agents, lo, hi, ["agent_id", "persona_id", "text", "attributes", "archetype"])
    ids = table.column("agent_id").to_numpy()
    if ids.size != hi - lo or (ids.size and (ids[0] != lo or np.any(np.diff(ids) != 1))):
        raise ValueError(f"agents file {agents}: agents {lo}..{hi - 1} are not all there, in order")
    archetypes = table.column("archetype").to_numpy()
    columns: dict[str, pa.Array] = {}
    for name in ("persona_id", "text", "attributes"):  # one column's two copies at a time
        columns[name] = table.column(name).combine_chunks()
        table = table.drop_columns([name])
    del table
    shard = PopulationShard(
        agent_ids=ids, persona_ids=columns["persona_id"], texts=columns["text"],
        attributes=columns["attributes"], archetypes=archetypes, seed=seed,
        new_memory=lambda: memory.new_agent_memory(inbox_size),
        **(_adjacency(adjacency, lo, hi) if adjacency is not None else {}))
    pa.default_memory_pool().release_unused()  # the file's chunks, back to the system
    if states is not None:
        saved = _range(states, lo, hi, ["agent_id", "state"])
        shard.restore(saved.column("agent_id").to_numpy(), saved.column("state").to_pylist())
    return shard


def _adjacency(path: str, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Return the neighbours of agents [lo, hi) as offsets into an array of agent ids."""
    table = _range(path, lo, hi, ["agent_id", "neighbour"])
    owners = table.column("agent_id").to_numpy().astype(np.int64) - lo
    offsets = np.zeros(hi - lo + 1, dtype=np.int64)
    np.cumsum(np.bincount(owners, minlength=hi - lo), out=offsets[1:])
    order = np.argsort(owners, kind="stable")  # the file is in agent-id order already
    neighbours = table.column("neighbour").to_numpy().astype(np.int32)[order]
    return {"offsets": offsets, "neighbours": neighbours}

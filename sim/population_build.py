"""Set up a new column society from columns, a chunk of personas at a time.

A run whose population lives in column shards needs no Python object per agent while it is set
up either. Its personas are read from their file ``CHUNK`` at a time into Arrow columns (what the
hub stores of each: id, text, source, attributes as JSON text, gate label), written to the hub
``CHUNK`` rows at a time, linked, recorded as agents and grouped into archetypes from those
columns (``personas/archetypes.py`` ``group_archetype_rows``), with DuckDB held to a bounded pool
(``sim/store.py`` ``bounded_pool``) so that its joins and inserts spill rather than stay cached.
What grows with the population is the columns (a few hundred bytes a persona) and a few numbers a
persona. The tables written are those the agent society's setup writes for the same scenario and
seed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personahub.core.errors import PersonahubError
from personahub.core.store import transaction
from personahub.personas.archetypes import group_archetype_rows
from personahub.personas.graph import small_world_arrays
from personahub.personas.importers import iter_personas
from personahub.personas.record import Persona
from personahub.personas.store import (
    SCENARIO_LINKS,
    add_relations,
    persona_arrays,
    persona_columns,
    social_pairs,
    upsert_persona_table,
)
from personahub.sim import runner, store
from personahub.sim.row_file import RowFile
from personahub.sim.scenario import Scenario, check_named, named_ids

#: personas read, written to the hub, embedded and assigned to an archetype at a time
CHUNK: Final = 65_536


@dataclass(frozen=True)
class PersonaColumns:
    """A scenario's personas as Arrow columns, one row per distinct persona, in the order the
    agent society's setup keeps them.

    Attributes:
        table: ``persona_columns``' columns (persona_id, text, source, source_ref, attributes as
            JSON text, hop, gate).
        keys: the attribute names any of them has.
        spilled: the texts and attributes, when they are kept in a file rather than in ``table``
            (``write_personas``).
    """

    table: pa.Table
    keys: frozenset[str]
    spilled: RowFile | None = None

    @classmethod
    def of(cls, people: Sequence[Persona]) -> PersonaColumns:
        """Return distinct personas' columns."""
        return cls(_table(people), frozenset(k for p in people for k in p.attributes))

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def ids(self) -> pa.Array:
        """Return the persona ids, in order."""
        return self.table.column("persona_id").combine_chunks()

    def rows(self, lo: int, hi: int) -> tuple[list[str], list[dict[str, object]]]:
        """Return the texts and attributes of rows [lo, hi)."""
        if self.spilled is not None:
            return _texts_and_attributes(self.spilled.slice(lo, hi))
        return _texts_and_attributes(self.table.slice(lo, hi - lo))

    def pick(self, at: np.ndarray) -> tuple[list[str], list[dict[str, object]]]:
        """Return the texts and attributes of the rows at the given positions."""
        if self.spilled is not None:
            return _texts_and_attributes(self.spilled.take(at))
        return _texts_and_attributes(self.table.take(pa.array(at)))

    def personas(self) -> list[Persona]:
        """Return a Persona per row, for a run that needs an agent object per persona after all."""
        return [Persona(persona_id=r["persona_id"], text=r["text"], source=r["source"] or "",
                        source_ref=r["source_ref"] or "", attributes=json.loads(r["attributes"]),
                        hop=int(r["hop"] or 0)) for r in self.table.to_pylist()]

    def check(self, scenario: Scenario) -> None:
        """Fail, naming the field, when the scenario names agents or attributes these lack."""
        named = pa.array(sorted(named_ids(scenario)), type=pa.string())
        present = named.filter(pc.is_in(named, value_set=self.ids())) if len(named) else named
        check_named(scenario, len(self), set(present.to_pylist()), self.keys)


def _table(people: Sequence[Persona]) -> pa.Table:
    return pa.table(persona_arrays(persona_columns(people, first_only=False)))


def _texts_and_attributes(part: pa.Table) -> tuple[list[str], list[dict[str, object]]]:
    return (part.column("text").to_pylist(),
            [json.loads(a) for a in part.column("attributes").to_pylist()])


def read_personas(scenario: Scenario, db: Path | str | None = None,
                  con: duckdb.DuckDBPyConnection | None = None, *, offline: bool = False,
                  notes: list[str] | None = None) -> PersonaColumns:
    """Return the scenario's personas as columns: its file read ``CHUNK`` personas at a time, or
    the hub's seeded draw (``runner.load_scenario_personas``, which draws a list).

    Repeated persona ids are kept as ``load_scenario_personas`` keeps them: each id once, with
    its first row's fields, in the order of each id's last row.
    """
    if scenario.personas.from_hub:
        return PersonaColumns.of(runner.load_scenario_personas(scenario, db, con, offline=offline,
                                                               notes=notes))
    stream = itertools.islice(iter_personas(scenario.persona_path(), fmt=scenario.personas.fmt),
                              scenario.personas.limit)
    parts: list[pa.Table] = []
    keys: set[str] = set()
    while chunk := list(itertools.islice(stream, CHUNK)):
        parts.append(_table(chunk))
        keys.update(k for p in chunk for k in p.attributes)
    if not parts:
        raise PersonahubError(f"scenario {scenario.name}: no personas in {scenario.persona_path()}")
    table = pa.concat_tables(parts)
    del parts
    ids = table.column("persona_id")
    if pc.count_distinct(ids).as_py() == table.num_rows:
        return PersonaColumns(table, frozenset(keys))
    codes = pc.dictionary_encode(ids.combine_chunks()).indices.to_numpy()
    _, first = np.unique(codes, return_index=True)
    _, from_end = np.unique(codes[::-1], return_index=True)
    kept = PersonaColumns(table.take(pa.array(first[np.argsort(codes.size - 1 - from_end)])),
                          frozenset())
    keys = set()
    for lo in range(0, len(kept), CHUNK):
        keys.update(k for a in kept.rows(lo, lo + CHUNK)[1] for k in a)
    return PersonaColumns(kept.table, frozenset(keys))


#: acquaintance links inserted a statement at a time
LINKS_AT_A_TIME: Final = 4 * CHUNK
#: and committed at a time
LINKS_A_COMMIT: Final = 4 * LINKS_AT_A_TIME


#: what the setup reads of its personas once they are in the hub, a chunk at a time (kept in a
#: file, ``RowFile``), beside their ids (kept in memory)
SET_UP_COLUMNS: Final = ("text", "attributes")


def write_personas(con: duckdb.DuckDBPyConnection, personas: PersonaColumns) -> PersonaColumns:
    """Insert the personas the hub lacks, ``CHUNK`` rows at a time in order, with DuckDB held to
    a bounded pool (in the caller's transaction); return their ids, with the texts and
    attributes the setup still reads kept in a temporary file rather than in memory."""
    with store.bounded_pool(con, store.setup_room(len(personas))):
        for lo in range(0, len(personas), CHUNK):
            upsert_persona_table(con, personas.table.slice(lo, CHUNK))
    spilled = RowFile(personas.table.select(list(SET_UP_COLUMNS)), CHUNK)
    return PersonaColumns(personas.table.select(["persona_id"]), personas.keys, spilled)


def set_up(con: duckdb.DuckDBPyConnection, *, run_id: str, scenario: Scenario,
           personas: PersonaColumns, k: int, seed: int) -> list[str]:
    """Record a new run's acquaintance links, agents, starting graph and archetypes from its
    personas' columns, as the agent society's setup records them; return each archetype's
    representative persona id.

    Args:
        personas: the run's personas (``read_personas``), already in the hub.
        k: archetypes asked for.
        seed: the run seed.
    """
    ids = personas.ids()
    count = len(ids)
    growth = scenario.graph
    near, far = small_world_arrays(count, growth.acquaintances, growth.rewire, seed)
    size = int(near.size)
    with store.bounded_pool(con, store.setup_room(count) + store.ROOM_A_LINK * size):
        for lo in range(0, size, LINKS_A_COMMIT):
            _add_links(con, ids, near[lo:lo + LINKS_A_COMMIT], far[lo:lo + LINKS_A_COMMIT],
                       f"{SCENARIO_LINKS}{scenario.name}")
    # each phase in a pool of its own: leaving one gives back what its queries freed
    with store.bounded_pool(con, store.setup_room(count)):
        found = social_pairs(con, ids, pa.table(_links(ids, near, far)))
    del near, far
    edges = _starting_edges(ids, found)
    del found
    with store.bounded_pool(con, store.setup_room(count)), transaction(con):
        store.add_agents(con, run_id, ids, np.arange(1, count + 1), edges)
    del edges
    grouped = group_archetype_rows(count, personas.rows, personas.pick, min(k, count), seed,
                                   chunk=CHUNK)
    representatives = [str(ids[i].as_py()) for i in grouped.representatives]
    with store.bounded_pool(con, store.setup_room(count)), transaction(con):
        store.add_archetypes(con, run_id, ids, grouped.labels, representatives,
                             [int(n) for n in grouped.sizes], grouped.attribute_shares,
                             f"{grouped.method}; k={k}")
    pa.default_memory_pool().release_unused()  # the links' and edges' columns, to the system
    return representatives


def _add_links(con: duckdb.DuckDBPyConnection, ids: pa.Array, near: np.ndarray,
               far: np.ndarray, source: str) -> None:
    """Store links between the ids at those positions in one transaction, as save_acquaintances
    stores them (the ids are distinct), ``LINKS_AT_A_TIME`` links' columns at a time.

    Each statement's links are anti-joined against the table (``add_relations``). On a hub made
    before the ``relations`` key was dropped, a commit merges the links' part of its index into
    the table's, holding both for a while: the setup's links commit ``LINKS_A_COMMIT`` at a time,
    not all at once (a setup stopped between two commits inserts the rest when it runs again, and
    none twice).
    """
    with transaction(con):
        for lo in range(0, near.size, LINKS_AT_A_TIME):
            part = min(LINKS_AT_A_TIME, near.size - lo)
            add_relations(con, {**_links(ids, near[lo:lo + part], far[lo:lo + part]),
                                "hop": pa.repeat(pa.scalar(0, pa.int32()), part),
                                "source": pa.repeat(pa.scalar(source, pa.string()), part)},
                          distinct=True)
        pa.default_memory_pool().release_unused()
        store.release_freed(con)  # what the inserts' joins freed, before the commit needs room


def _links(ids: pa.Array, near: np.ndarray, far: np.ndarray) -> dict[str, pa.Array]:
    """Return acquaintance links between the ids at those positions, as relation columns."""
    return {"src": ids.take(pa.array(near)), "dst": ids.take(pa.array(far)),
            "relation": pa.repeat(pa.scalar("acquaintance", pa.string()), near.size)}


def _starting_edges(ids: pa.Array, found: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Return the starting graph's edges among the agents (``found``: ``social_pairs``' rows) as
    (src, dst, relation) columns, in the order ``SocialEdges.from_positions`` gives them
    (networkx's)."""
    a = found.column("pa").to_numpy().astype(np.int64, copy=False)
    b = found.column("pb").to_numpy().astype(np.int64, copy=False)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    del a, b
    order = np.lexsort((np.arange(lo.size, dtype=np.int64), lo))
    ends = (ids.take(pa.array(lo[order])), ids.take(pa.array(hi[order])))
    del lo, hi
    return (*ends, found.column("r").combine_chunks().take(pa.array(order)))

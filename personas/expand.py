"""Persona-to-persona expansion: grow the hub by asking who is close to each persona.

Breadth-first from a set of personas, ``fanout`` related people per persona per hop (the paper
goes up to six hops). A new persona that near-duplicates one already in the hub becomes an edge to
the existing node instead of a new node, so the graph gets cycles and shared neighbours rather
than being a tree. Each hop is written in one transaction (personas, relations, model calls).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import duckdb
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field, create_model

from personas.graph import Relation, save_relations
from personas.near_dup import NearDuplicateIndex
from personas.prompts import expand_messages
from personas.record import Persona
from personas.store import fetch_personas, insert_rows, record_rows, transaction, upsert_personas

MAX_HOPS = 6


class RelatedPersona(BaseModel):
    """Someone in close relationship with a given persona."""

    relation: str = Field(min_length=2, description="how they relate, e.g. patient, supplier")
    persona: str = Field(min_length=12, description="a one-sentence persona description")


@lru_cache(maxsize=32)
def related_personas_schema(count: int) -> type[BaseModel]:
    """Schema asking for exactly ``count`` related personas (min/max items pin the count)."""
    if count < 1:
        raise ValueError("fanout must be >= 1")
    return create_model(
        "RelatedPersonas",
        __doc__="People in close relationship with the given persona.",
        people=(list[RelatedPersona], Field(min_length=count, max_length=count)),
    )


class StructuredCaller(Protocol):
    """The part of the model seam the persona pipeline needs (``agents.llm.LLMClient``)."""

    async def structured(self, schema: Any, messages: list[BaseMessage], *, purpose: str,
                         persona_id: str | None = None, step: int | None = None) -> Any: ...

    def drain_records(self) -> list[Any]: ...


def _drain_cache_rows(caller: Any) -> list[dict[str, Any]]:
    """``llm_cache`` rows of answers the caller recorded (none for callers without a cache)."""
    from agents.cache import cache_rows

    drain = getattr(caller, "drain_cache_entries", None)
    return cache_rows(drain()) if drain is not None else []


@dataclass
class ExpandSummary:
    """What an expansion did."""

    hops: int = 0
    asked: int = 0
    new_personas: int = 0
    merged_into_existing: int = 0
    edges: int = 0
    failed_calls: int = 0
    new_ids: tuple[str, ...] = ()
    reached_ids: tuple[str, ...] = ()


def _hub_index(con: duckdb.DuckDBPyConnection, threshold: float) -> NearDuplicateIndex:
    index = NearDuplicateIndex(threshold=threshold)
    rows = con.execute(
        "SELECT persona_id, text FROM personas WHERE NOT coalesce(is_duplicate, false) ORDER BY seq"
    ).fetchall()
    for persona_id, text in rows:
        index.add(persona_id, text)
    return index


async def expand_hub(
    con: duckdb.DuckDBPyConnection,
    caller: StructuredCaller,
    *,
    start_ids: Sequence[str],
    hops: int,
    fanout: int,
    run_id: str | None = None,
    threshold: float = 0.9,
    progress: Callable[[int, int], None] | None = None,
) -> ExpandSummary:
    """Expand ``hops`` rounds from ``start_ids``; returns counts and the ids of new personas."""
    if not 0 <= hops <= MAX_HOPS:
        raise ValueError(f"--hops must be between 0 and {MAX_HOPS}, got {hops}")
    schema = related_personas_schema(fanout)
    index = _hub_index(con, threshold)
    summary = ExpandSummary()
    new_ids: list[str] = []
    reached: dict[str, None] = {}
    visited = set(start_ids)
    frontier = fetch_personas(con, list(start_ids))
    for hop_number in range(1, hops + 1):
        if not frontier:
            break
        results = await asyncio.gather(*[
            caller.structured(schema, expand_messages(p.text, fanout), purpose="expand",
                              persona_id=p.persona_id)
            for p in frontier
        ])
        created: list[Persona] = []
        relations: list[Relation] = []
        for parent, result in zip(frontier, results, strict=True):
            summary.asked += 1
            if result.value is None:
                summary.failed_calls += 1
                continue
            for person in result.value.people:
                label = " ".join(person.relation.lower().split())[:40]
                child = Persona(text=person.persona, source="expand",
                                source_ref=f"{parent.persona_id}/{label}",
                                hop=parent.hop + 1,
                                attributes={"parent": parent.persona_id, "relation": label})
                existing = index.check_and_add(child.persona_id, child.text)
                if existing is not None:
                    summary.merged_into_existing += existing != parent.persona_id
                    target = existing
                else:
                    created.append(child)
                    target = child.persona_id
                if target != parent.persona_id:
                    relations.append(Relation(parent.persona_id, target, label, hop_number, "expand"))
        with transaction(con):
            upsert_personas(con, created)
            save_relations(con, relations)
            insert_rows(con, "llm_calls", record_rows(caller.drain_records(), run_id=run_id))
            insert_rows(con, "llm_cache", _drain_cache_rows(caller), ignore_conflicts=True)
        summary.hops = hop_number
        summary.new_personas += len(created)
        summary.edges += len(relations)
        new_ids += [p.persona_id for p in created]
        targets = [r.dst for r in relations]
        reached.update(dict.fromkeys(targets))
        # Next round: every persona reached for the first time, new or already in the hub,
        # so a re-run over an existing hub reaches the same people as the first run did.
        next_ids = [t for t in dict.fromkeys(targets) if t not in visited]
        visited.update(next_ids)
        frontier = fetch_personas(con, next_ids)
        if progress:
            progress(hop_number, hops)
    summary.new_ids = tuple(new_ids)
    summary.reached_ids = tuple(reached)
    return summary

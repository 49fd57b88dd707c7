"""Same-person merges during expansion: a new persona that is someone already known.

Such a persona is not added: its edges go to the person it is, and a merge row keeps its text and
why. Its text stays in the MinHash index under its own id, so a later near-copy lands on the same
person, after a resume too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import duckdb

from personahub.personas.graph import Relation
from personahub.personas.near_dup import NearIndex
from personahub.personas.record import Persona
from personahub.personas.store import add_merges, expansion_merges


def resolve(aliases: Mapping[str, str], persona_id: str) -> str:
    """Follow merges to the person an id stands for (cycles stop where they close)."""
    seen = {persona_id}
    while persona_id in aliases and aliases[persona_id] not in seen:
        persona_id = aliases[persona_id]
        seen.add(persona_id)
    return persona_id


def apply_merges(merges: Mapping[str, str], created: list[Persona], relations: list[Relation],
                 marks: list[dict[str, Any]]) -> tuple[list[Persona], list[Relation]]:
    """Apply merges to a batch: drop merged personas, move their edges, recount frontier marks."""
    if not merges:
        return created, relations
    moved: list[Relation] = []
    seen: set[tuple[str, str]] = set()
    for rel in relations:
        src, dst = resolve(merges, rel.src), resolve(merges, rel.dst)
        if src != dst and (src, dst) not in seen:
            seen.add((src, dst))
            moved.append(replace(rel, src=src, dst=dst))
    for mark in marks:
        gone = [pid for pid in mark["created"] if pid in merges]
        if not gone:
            continue
        mark["created"] = [pid for pid in mark["created"] if pid not in merges]
        mark["merged"] += len(gone)
        targets = (resolve(merges, t) for t in mark["targets"])
        mark["targets"] = [t for t in dict.fromkeys(targets) if t != mark["persona_id"]]
    return [p for p in created if p.persona_id not in merges], moved


def load_aliases(con: duckdb.DuckDBPyConnection, expansion_id: str,
                 index: NearIndex) -> dict[str, str]:
    """Return an expansion's merges so far (id -> person), putting their texts back into the index."""
    rows = expansion_merges(con, expansion_id)
    index.add_many([(pid, text) for pid, text, _ in rows])
    return {pid: into for pid, _, into in rows}


def merge_rows(expansion_id: str, first_position: int, hop: int,
               merges: Sequence[tuple[Persona, str, str, float | None]]) -> list[dict[str, object]]:
    """Build merge rows for (persona, merged into, method, score), in order."""
    return [{"expansion_id": expansion_id, "position": first_position + i,
             "persona_id": person.persona_id, "text": person.text, "merged_into": into,
             "method": method, "score": score, "hop": hop}
            for i, (person, into, method, score) in enumerate(merges)]


def save_merges(con: duckdb.DuckDBPyConnection, rows: list[dict[str, object]]) -> None:
    """Insert merge rows, inside the batch's transaction."""
    if rows:
        add_merges(con, rows)

"""Persona-to-persona expansion, data side: grow the hub by asking who is close to each persona.

Breadth-first, fanout people per persona per hop; a near-duplicate of a hub persona becomes an
edge to it, so the graph gets cycles. This module holds the frontier tables, one batch's writes
and the summary; the job itself is in the pipelines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model

from personahub.core.call_log import last_errors
from personahub.core.contracts import StructuredCaller
from personahub.core.errors import PersonahubError
from personahub.core.failures import QUALITY_FAIL_MIN_ACTIONS, endpoint_error
from personahub.core.jobs_store import UNFINISHED, list_jobs, supersede_jobs
from personahub.core.store import insert_rows, scalar, transaction
from personahub.core.text_bounds import DIGITS, SHORT
from personahub.personas.embedding import Embedder
from personahub.personas.graph import Relation, save_relations, shape_stats, social_graph
from personahub.personas.hub_near_index import HubNearIndex
from personahub.personas.link_merge import save_merges
from personahub.personas.link_nearest import NearestPool, pool_embedder
from personahub.personas.quality import (
    PERSONA_MAX_CHARS,
    RELATION_MAX_CHARS,
    rejected_counts,
)
from personahub.personas.record import Persona
from personahub.personas.store import fetch_personas, upsert_personas

MAX_HOPS = 6
DEFAULT_BATCH = 256
ASKS_PER_ROUND = 2
# Output limit of an expansion or link call: persona fields are bounded at one character a
# token (a small model's runaway), so this fits the worst case at the default fanout
EXPAND_MAX_TOKENS = 800


class ExpansionIncomplete(PersonahubError):
    """A level's personas still failed after their second round; the expansion stops so a resume asks
    them again.
    """

    def __init__(self, expansion_id: str, failed: int, asked: int, level: int) -> None:
        super().__init__(f"expansion {expansion_id}: {failed} of {asked} calls failed in round "
                         f"{level + 1}; resume it to ask them again")
        self.expansion_id = expansion_id
        self.failed = failed
        self.asked = asked
        self.level = level


class RelatedPersona(BaseModel):
    """Someone in close relationship with a given persona."""

    model_config = ConfigDict(populate_by_name=True)

    # Bounded at one character a token: a degenerate small model writes one-character tokens
    # and the bound must still close the JSON.
    relation: Annotated[str, SHORT, DIGITS] = Field(
        min_length=2, max_length=RELATION_MAX_CHARS,
        description="how they relate, e.g. patient, supplier")
    # Asked as "description": SmolLM2-135M filled a "persona" key with a name far more often
    # (bench/RESULTS.md); either key validates
    persona: Annotated[str, DIGITS] = Field(min_length=12, max_length=PERSONA_MAX_CHARS,
                                            alias="description",
                                            description="a one-sentence persona description")


@lru_cache(maxsize=32)
def related_personas_schema(count: int) -> type[BaseModel]:
    """Build a schema asking for exactly count related personas."""
    if count < 1:
        raise ValueError("fanout must be >= 1")
    return create_model(
        "RelatedPersonas",
        __doc__="People in close relationship with the given persona.",
        people=(list[RelatedPersona], Field(min_length=count, max_length=count)),
    )


@dataclass
class ExpandSummary:
    """What an expansion did."""

    hops: int = 0
    asked: int = 0
    new_personas: int = 0
    merged_into_existing: int = 0
    edges: int = 0
    linked: int = 0  # triangle-closing edges, not in edges
    failed_calls: int = 0
    kept: int = 0
    new_ids: tuple[str, ...] = ()
    reached_ids: tuple[str, ...] = ()
    expansion_id: str = ""
    resumed: bool = False
    rejected: dict[str, int] = field(default_factory=dict)
    graph: dict[str, object] = field(default_factory=dict)
    provider_batches: str | None = None


def hub_index(con: duckdb.DuckDBPyConnection, threshold: float, folder: Path) -> HubNearIndex:
    """Return the near-duplicate index of the hub's live personas, its band hashes in folder."""
    return HubNearIndex(con, folder, threshold=threshold)


def params_key(start_ids: Sequence[str], hops: int, fanout: int, threshold: float) -> str:
    """Hash what makes two expansions the same job: start ids, hops, fanout, threshold."""
    payload = json.dumps([list(start_ids), hops, fanout, threshold])
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ExpansionInfo:
    """A stored expansion."""

    expansion_id: str
    params_key: str
    config: dict[str, object]
    status: str
    hops_done: int
    pending: int


def list_expansions(con: duckdb.DuckDBPyConnection, *, unfinished: bool = False) -> list[ExpansionInfo]:
    """Return stored expansions, newest first (only unfinished ones if asked)."""
    jobs = list_jobs(con, kind="expansion", status=UNFINISHED if unfinished else None)
    if not jobs:
        return []
    detail = {r[0]: r[1:] for r in con.execute(
        "SELECT e.expansion_id, e.params_key, e.hops_done, (SELECT count(*) FROM expansion_frontier "
        "f WHERE f.expansion_id = e.expansion_id AND f.status = 'pending') FROM expansions e "
        "WHERE list_contains(?, e.expansion_id)", [[j.job_id for j in jobs]]).fetchall()}
    return [ExpansionInfo(j.job_id, detail[j.job_id][0], j.config, j.status,
                          detail[j.job_id][1] or 0, detail[j.job_id][2])
            for j in jobs if j.job_id in detail]


def find_unfinished(con: duckdb.DuckDBPyConnection, **config: object) -> ExpansionInfo | None:
    """Return the newest running expansion whose config has all the given items."""
    for info in list_expansions(con, unfinished=True):
        if all(info.config.get(k) == v for k, v in config.items()):
            return info
    return None


def find_expansion(con: duckdb.DuckDBPyConnection, expansion_id: str) -> ExpansionInfo | None:
    """Return a stored expansion of any status, or None."""
    return next((e for e in list_expansions(con) if e.expansion_id == expansion_id), None)


def supersede_expansion(con: duckdb.DuckDBPyConnection, expansion_id: str) -> None:
    """Mark an unfinished expansion superseded so it is never resumed automatically."""
    supersede_jobs(con, [expansion_id])


def insert_level(con: duckdb.DuckDBPyConnection, expansion_id: str, level: int,
                  persona_ids: Sequence[str]) -> None:
    insert_rows(con, "expansion_frontier", [
        {"expansion_id": expansion_id, "hop": level, "position": i, "persona_id": pid,
         "status": "pending"}
        for i, pid in enumerate(persona_ids)
    ], ignore_conflicts=True)


def level_rows(con: duckdb.DuckDBPyConnection, expansion_id: str, level: int) -> list[tuple[object, ...]]:
    """Return (persona id, status, asks so far) of a level's frontier rows, in order."""
    return con.execute(
        "SELECT persona_id, status, coalesce(attempts, 0) FROM expansion_frontier "
        "WHERE expansion_id = ? AND hop = ? ORDER BY position", [expansion_id, level]).fetchall()


def to_ask(rows: list[tuple[Any, ...]], round_: int) -> list[str]:
    """Return who a level's round asks: pending personas first, then those that failed once."""
    if round_ == 0:
        return [pid for pid, status, _ in rows if status == "pending"]
    return [pid for pid, status, asks in rows if status == "failed" and asks < ASKS_PER_ROUND]


def mark_rows(con: duckdb.DuckDBPyConnection, expansion_id: str, level: int,
               rows: list[dict[str, object]]) -> None:
    """Record a batch's answers on the frontier, in one UPDATE."""
    data = pa.table({
        "persona_id": [r["persona_id"] for r in rows],
        "status": [r["status"] for r in rows],
        "targets": [json.dumps(r["targets"]) for r in rows],
        "created": [json.dumps(r["created"]) for r in rows],
        "merged": pa.array([r["merged"] for r in rows], pa.int32()),
        "linked": pa.array([r["linked"] for r in rows], pa.int32()),
    })
    con.register("_frontier_batch", data)
    try:
        con.execute(
            "UPDATE expansion_frontier f SET status = b.status, targets = b.targets, "
            "created = b.created, merged = b.merged, linked = b.linked, "
            "attempts = coalesce(f.attempts, 0) + 1 "
            "FROM _frontier_batch b "
            "WHERE f.expansion_id = ? AND f.hop = ? AND f.persona_id = b.persona_id",
            [expansion_id, level])
    finally:
        con.unregister("_frontier_batch")


def summary_of(con: duckdb.DuckDBPyConnection, expansion_id: str) -> ExpandSummary:
    """Count the whole expansion from its frontier rows, so a resumed one reports all of it."""
    rows = con.execute(
        "SELECT status, targets, created, merged, coalesce(linked, 0) FROM expansion_frontier "
        "WHERE expansion_id = ? AND status <> 'pending' ORDER BY hop, position", [expansion_id]).fetchall()
    summary = ExpandSummary(expansion_id=expansion_id)
    summary.hops = scalar(con, "SELECT hops_done FROM expansions WHERE expansion_id = ?",
                          [expansion_id]) or 0
    new_ids: list[str] = []
    reached: dict[str, None] = {}
    for status, targets, created, merged, linked in rows:
        summary.asked += 1
        if status == "failed":
            summary.failed_calls += 1
            continue
        targets = json.loads(targets) if targets else []
        summary.kept += bool(targets)
        summary.edges += len(targets)
        summary.merged_into_existing += merged or 0
        summary.linked += linked
        new_ids += json.loads(created) if created else []
        reached.update(dict.fromkeys(targets))
    summary.new_personas = len(new_ids)
    summary.new_ids = tuple(new_ids)
    summary.reached_ids = tuple(reached)
    summary.rejected = rejected_counts(con, source="expand", job_id=expansion_id)
    summary.graph = expansion_graph_stats(con, expansion_id)
    return summary


# (parent, child, hop) pairs an expansion made
EXPANSION_CHILDREN = """
SELECT persona_id AS parent, unnest(from_json(created, '["VARCHAR"]')) AS child, hop + 1 AS hop
FROM expansion_frontier WHERE expansion_id = ? AND created IS NOT NULL
"""


def expansion_personas(con: duckdb.DuckDBPyConnection, expansion_id: str) -> list[str]:
    """Return every persona an expansion asked about, reached or created, in first-seen order."""
    rows = con.execute(
        "SELECT persona_id, targets, created FROM expansion_frontier WHERE expansion_id = ? "
        "ORDER BY hop, position", [expansion_id]).fetchall()
    ids: dict[str, None] = {}
    for pid, targets, created in rows:
        ids.setdefault(pid)
        ids.update(dict.fromkeys(json.loads(targets) if targets else []))
        ids.update(dict.fromkeys(json.loads(created) if created else []))
    return list(ids)


def expansion_graph_stats(con: duckdb.DuckDBPyConnection, expansion_id: str) -> dict[str, object]:
    """Return the shape of the social graph among an expansion's personas (a tree has 0 cycles)."""
    return shape_stats(social_graph(con, expansion_personas(con, expansion_id)))


@dataclass
class Linking:
    """How an expansion closes triangles and merges the same person."""

    candidates: int = 0  # 0 asks no link question
    pool: NearestPool | None = None  # None: no embedder
    aliases: dict[str, str] = field(default_factory=dict)
    threshold: float = 0.9


def write_answer(con: duckdb.DuckDBPyConnection, caller: StructuredCaller, expansion_id: str,
                 level: int, created: Sequence[Persona], relations: Sequence[Relation],
                 merges: list[dict[str, object]], marks: list[dict[str, object]]) -> None:
    """Write a batch's graph rows and frontier marks, inside the batch's commit."""
    upsert_personas(con, list(created), caller)
    save_relations(con, list(relations))
    save_merges(con, merges)
    mark_rows(con, expansion_id, level, marks)


def link_embedder_of(spec: str | None) -> Embedder | None:
    """Return the embedder for the link pool, or None for no pool."""
    return None if spec is None else pool_embedder(spec)


def setup_stops(con: duckdb.DuckDBPyConnection, expansion_id: str, level: int,
                 run_id: str | None, failed: int, max_failed_share: float) -> bool:
    """Whether setup stops on a level's personas still failed after their second round.

    It stops when one failed at the endpoint, none answered, or their share passes the maximum.
    Personas that failed on weak answers are counted, and the society grows without them.
    """
    size = int(scalar(con, "SELECT count(*) FROM expansion_frontier WHERE expansion_id = ? "
                           "AND hop = ?", [expansion_id, level]))
    if failed >= size or (size >= QUALITY_FAIL_MIN_ACTIONS and failed > size * max_failed_share):
        return True
    failed_ids = [r[0] for r in con.execute(
        "SELECT persona_id FROM expansion_frontier WHERE expansion_id = ? AND hop = ? "
        "AND status = 'failed'", [expansion_id, level]).fetchall()]
    return any(endpoint_error(error) for error in
               last_errors(con, "expand", failed_ids, run_id=run_id).values())


def new_expansion_rows(con: duckdb.DuckDBPyConnection, expansion_id: str,
                       start_ids: Sequence[str], threshold: float, hops: int,
                       fanout: int) -> dict[str, list[dict[str, object]]]:
    """Return a new expansion's row and first frontier level (unknown ids dropped)."""
    start = [p.persona_id for p in fetch_personas(con, list(start_ids))]
    return {"expansions": [{"expansion_id": expansion_id, "hops_done": 0,
                            "params_key": params_key(start_ids, hops, fanout, threshold)}],
            "expansion_frontier": level_frontier(expansion_id, 0, start)}


def level_frontier(expansion_id: str, level: int, persona_ids: Sequence[str]) -> list[dict[str, object]]:
    """Return a level's pending frontier rows, in the given order."""
    return [{"expansion_id": expansion_id, "hop": level, "position": i, "persona_id": pid,
             "status": "pending"} for i, pid in enumerate(persona_ids)]


def kept_targets(con: duckdb.DuckDBPyConnection, expansion_id: str) -> int:
    """Return how many related people the expansion's answered personas joined to the graph."""
    return int(scalar(con, "SELECT coalesce(sum(json_array_length(targets)), 0) FROM "
                           "expansion_frontier WHERE expansion_id = ? AND status = 'done'",
                      [expansion_id]) or 0)


def hops_done(con: duckdb.DuckDBPyConnection, expansion_id: str) -> int:
    """Return how many levels an expansion finished."""
    return int(scalar(con, "SELECT hops_done FROM expansions WHERE expansion_id = ?",
                      [expansion_id]) or 0)


def frontier_ids(con: duckdb.DuckDBPyConnection, expansion_id: str) -> set[str]:
    """Return every persona the expansion visited so far."""
    return {pid for (pid,) in con.execute(
        "SELECT DISTINCT persona_id FROM expansion_frontier WHERE expansion_id = ?",
        [expansion_id]).fetchall()}


def frontier_count(con: duckdb.DuckDBPyConnection, expansion_id: str, *,
                   level: int | None = None, status: str | None = None,
                   asked: bool = False) -> int:
    """Count frontier rows, optionally of one level, one status, or asked."""
    return int(scalar(con, "SELECT count(*) FROM expansion_frontier WHERE expansion_id = ? "
                           "AND (? IS NULL OR hop = ?) AND (? IS NULL OR status = ?) "
                           "AND (NOT ? OR status <> 'pending')",
                      [expansion_id, level, level, status, status, asked]) or 0)


def ask_failed_again(con: duckdb.DuckDBPyConnection, expansion_id: str, level: int) -> None:
    """Set the level's failed frontier personas pending again, with asks reset."""
    con.execute("UPDATE expansion_frontier SET status = 'pending', attempts = 0 "
                "WHERE expansion_id = ? AND hop = ? AND status = 'failed'", [expansion_id, level])


def level_targets(con: duckdb.DuckDBPyConnection, expansion_id: str, level: int) -> list[str]:
    """Return everyone a level's answers reached, in frontier order."""
    return [t for (t,) in con.execute(
        "SELECT unnest(CAST(targets AS VARCHAR[])) FROM expansion_frontier "
        "WHERE expansion_id = ? AND hop = ? AND status = 'done' ORDER BY position",
        [expansion_id, level]).fetchall()]


def write_next_level(con: duckdb.DuckDBPyConnection, expansion_id: str, level: int,
                     persona_ids: Sequence[str]) -> None:
    """Write the next level's frontier and the hop count in one transaction."""
    with transaction(con):
        insert_level(con, expansion_id, level + 1, persona_ids)
        con.execute("UPDATE expansions SET hops_done = ? WHERE expansion_id = ?",
                    [level + 1, expansion_id])

"""The paper's diversity analysis over a database: one summary per kind/task.

Stored persona vectors are reused; nothing is written, so a read-only connection is enough.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from personahub.analysis.diversity import (
    DiversitySummary,
    EmbeddingPairs,
    StoredVectors,
    embedding_pairs,
    summarise,
)
from personahub.core.errors import PersonahubError
from personahub.core.jobs_store import latest_job_id
from personahub.personas.embedding import Embedder
from personahub.personas.embedding_store import vectors_of

DEFAULT_PAIRS = 300


@dataclass(frozen=True)
class Item:
    """One output with the persona that produced it."""

    persona_id: str
    persona: str
    text: str
    is_duplicate: bool


@dataclass(frozen=True)
class GroupResult:
    """A kind/task's items, its judged pairs and its summary."""

    items: list[Item]
    pairs: EmbeddingPairs
    summary: DiversitySummary


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[Any]:
    return con.execute(sql, params).fetchall()


def load_groups(con: duckdb.DuckDBPyConnection, *, run_id: str | None = None,
                job_id: str | None = None, all_jobs: bool = True) -> dict[str, list[Item]]:
    """Items by task of a job (or all jobs) and by kind of a run, in written order."""
    rows: list[Any] = []
    if job_id is not None or all_jobs:
        where = "AND source_id = ?" if job_id is not None else ""
        rows += _rows(con, "SELECT 'synth ' || task, persona_id, persona, text, is_duplicate "
                           f"FROM v_items WHERE source = 'job' AND persona IS NOT NULL {where} "
                           "ORDER BY source_id, item_id", [job_id] if job_id is not None else [])
    if run_id is not None:
        rows += _rows(con, "SELECT 'run ' || task, persona_id, persona, text, is_duplicate "
                           "FROM v_items WHERE source = 'run' AND persona IS NOT NULL "
                           "AND source_id = ? ORDER BY item_id", [run_id])
    groups: dict[str, list[Item]] = defaultdict(list)
    for group, persona_id, persona, text, dup in rows:
        groups[group].append(Item(persona_id, persona or "", text or "", bool(dup)))
    return dict(groups)


def latest_run(con: duckdb.DuckDBPyConnection) -> str | None:
    """Return the most recently started run, if any."""
    return latest_job_id(con, "run")


def stored_vectors(con: duckdb.DuckDBPyConnection, model: str,
                   ids_by_text: dict[str, str]) -> StoredVectors:
    """Return a lookup of a model's stored persona vectors (none when the table is missing)."""

    def lookup(texts: list[str]) -> dict[str, np.ndarray]:
        ids = [ids_by_text[t] for t in texts if t in ids_by_text]
        rows = vectors_of(con, model, ids)
        text_of = {ids_by_text[t]: t for t in texts if t in ids_by_text}
        return {text_of[pid]: np.asarray(vector, dtype=np.float32) for pid, vector in rows}

    return lookup


def diversity_table(con: duckdb.DuckDBPyConnection, embedder: Embedder, *,
                    run_id: str | None = None, job_id: str | None = None, all_jobs: bool = True,
                    pairs: int = DEFAULT_PAIRS, seed: int = 0) -> dict[str, GroupResult]:
    """Per kind/task (the i-th sampled with seed + i): the judged pairs and the summary."""
    if pairs < 1:
        raise PersonahubError(f"--pairs {pairs}: must be at least 1")
    for flag, source, key in (("--job", "job", job_id), ("--run", "run", run_id)):
        if key is not None and not _rows(con, "SELECT 1 FROM v_item_sources WHERE source = ? "
                                              "AND source_id = ?", [source, key]):
            raise PersonahubError(f"{flag} {key}: not found in the database")
    out: dict[str, GroupResult] = {}
    groups = load_groups(con, run_id=run_id, job_id=job_id, all_jobs=all_jobs)
    for i, (group, items) in enumerate(sorted(groups.items())):
        personas = [it.persona for it in items]
        outputs = [it.text for it in items]
        lookup = stored_vectors(con, embedder.name, {it.persona: it.persona_id for it in items})
        sims = embedding_pairs(personas, outputs, embedder, pairs=pairs, seed=seed + i,
                               stored=lookup)
        out[group] = GroupResult(items, sims, summarise(group, outputs, sims))
    return out

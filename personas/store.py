"""The persona hub's rows: personas written (only the new ones), read back in hub order, counted.

Writes are Arrow batches (``core.store.insert_columns``): a dict per row cost seconds per 100,000
personas. The generic connection, schema and batch-insert helpers are in ``core/store.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from personahub.core.contracts import StructuredCaller
from personahub.core.store import insert_columns, scalar
from personahub.personas.hub_gate import checked_gate, written_gate
from personahub.personas.record import Persona

if TYPE_CHECKING:
    import pandas as pd


def persona_columns(personas: Iterable[Persona], gate: str | None = None) -> dict[str, list[Any]]:
    """Columns for the ``personas`` table, one row per distinct persona id (first wins); ``gate``
    labels every row (None: each row's text is checked, ``hub_gate.checked_gate``)."""
    people = list(personas)
    ids = [p.persona_id for p in people]
    if len(set(ids)) < len(ids):  # repeats: keep each id's first persona
        first: dict[str, Persona] = {}
        for p in people:
            first.setdefault(p.persona_id, p)
        people = list(first.values())
        ids = [p.persona_id for p in people]
    return {
        "persona_id": ids,
        "text": [p.text for p in people],
        "source": [p.source for p in people],
        "source_ref": [p.source_ref for p in people],
        "attributes": [json.dumps(dict(p.attributes), ensure_ascii=False, default=str)
                       if p.attributes else "{}" for p in people],
        "hop": [p.hop for p in people],
        "gate": [gate or checked_gate(p) for p in people],
    }


def _persona_arrays(columns: dict[str, list[Any]]) -> dict[str, pa.Array]:
    """``persona_columns`` as typed Arrow arrays (every value is a str, or an int for hop)."""
    return {name: pa.array(values, type=pa.int32() if name == "hop" else pa.string())
            for name, values in columns.items()}


def upsert_personas(con: duckdb.DuckDBPyConnection, personas: Iterable[Persona],
                    written_by: StructuredCaller | None = None, *, gate: str | None = None) -> int:
    """Insert personas not yet in the hub; returns how many were new. Each row's ``gate`` is what
    a draw reads (``personas.hub_gate``): a model's answers (``written_by``: the client that
    answered, after the quality gate) are ``passed``, or ``offline`` from the offline engine;
    rows written without a model (imports, seeds, a scenario's people) have their text checked;
    ``gate`` sets it outright."""
    if gate is None and written_by is not None:
        gate = written_gate(written_by.is_offline)
    columns = persona_columns(personas, gate)
    if not columns["persona_id"]:
        return 0
    before = scalar(con, "SELECT count(*) FROM personas")
    insert_columns(con, "personas", _persona_arrays(columns), new_by=("persona_id",))  # distinct ids
    return scalar(con, "SELECT count(*) FROM personas") - before


def fetch_personas(
    con: duckdb.DuckDBPyConnection, ids: Sequence[str] | None = None
) -> list[Persona]:
    """Personas in hub order (``seq``), optionally restricted to ``ids``."""
    sql = "SELECT persona_id, text, source, source_ref, attributes, hop FROM personas"
    params: list[Any] = []
    if ids is not None:
        con.register("_ids", pa.table({"id": list(ids)}))
        sql += " WHERE persona_id IN (SELECT id FROM _ids)"
    sql += " ORDER BY seq"
    try:
        rows = con.execute(sql, params).fetchall()
    finally:
        if ids is not None:
            con.unregister("_ids")
    return [
        Persona(persona_id=r[0], text=r[1], source=r[2] or "", source_ref=r[3] or "",
                attributes=json.loads(r[4]) if r[4] else {}, hop=r[5] or 0)
        for r in rows
    ]


def flagged_duplicate_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many personas the dedup stages flagged as near-duplicates."""
    return int(scalar(con, "SELECT count(*) FROM personas WHERE is_duplicate"))


def live_persona_ids(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[str]:
    """Ids of the personas not flagged as duplicates, in hub order (the first ``limit``)."""
    rows = con.execute("SELECT persona_id FROM personas WHERE NOT coalesce(is_duplicate, false) "
                       "ORDER BY seq").fetchall()
    return [r[0] for r in rows][:limit]


def persona_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many personas the hub holds (duplicates and ungated ones too)."""
    return int(scalar(con, "SELECT count(*) FROM personas"))


def population_persona_ids(con: duckdb.DuckDBPyConnection, population_id: str) -> set[str]:
    """The ids of the personas written for population ``population_id`` (their attributes'
    ``population``)."""
    return {r[0] for r in con.execute(
        "SELECT persona_id FROM personas WHERE json_extract_string(attributes, '$.population') = ?",
        [population_id]).fetchall()}


def source_counts(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> list[tuple[str, int]]:
    """(source, personas) among ``persona_ids``, most first ('unknown' for no source)."""
    return [(str(s), int(n)) for s, n in con.execute(
        "SELECT coalesce(source, 'unknown'), count(*) FROM personas WHERE list_contains(?, persona_id) "
        "GROUP BY 1 ORDER BY 2 DESC, 1", [list(persona_ids)]).fetchall()]


def persona_text(con: duckdb.DuckDBPyConnection, persona_id: str) -> str | None:
    """The text of persona ``persona_id`` (None when it is not in the hub)."""
    row = con.execute("SELECT text FROM personas WHERE persona_id = ?", [persona_id]).fetchone()
    return str(row[0]) if row else None


def text_job_personas(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Every column of the personas text-to-persona job ``job_id``'s corpus produced, in hub
    order (a resumed or repeated job's corpus is the job's)."""
    return con.execute(
        "SELECT p.* FROM personas p WHERE p.persona_id IN (SELECT DISTINCT "
        "unnest(CAST(persona_ids AS VARCHAR[])) FROM text_done WHERE corpus = "
        "(SELECT corpus FROM text_jobs WHERE job_id = ?)) ORDER BY p.seq", [job_id]).df()


def flagged_duplicates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every column of the personas flagged as near-duplicates, in hub order."""
    return con.execute("SELECT * FROM personas WHERE coalesce(is_duplicate, false) "
                       "ORDER BY seq").df()


def personas_frame(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> pd.DataFrame:
    """Every column of the personas among ``persona_ids``, in hub order."""
    return con.execute("SELECT * FROM personas WHERE list_contains(?, persona_id) ORDER BY seq",
                       [list(persona_ids)]).df()


def relation_edges(con: duckdb.DuckDBPyConnection,
                   persona_ids: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """The relationship graph's edges (src, dst): all of them, or those between two of
    ``persona_ids``."""
    if persona_ids is None:
        return [(str(s), str(d)) for s, d in con.execute("SELECT src, dst FROM relations").fetchall()]
    ids = list(persona_ids)
    return [(str(s), str(d)) for s, d in con.execute(
        "SELECT src, dst FROM relations WHERE list_contains(?, src) AND list_contains(?, dst)",
        [ids, ids]).fetchall()]


# What a text-to-persona job or an expansion made, one row per persona in the preview's shape
# (kind, item_id, source_id, source, output, is_duplicate, duplicate_of), for one job's corpus
# or expansion id (the one ? parameter); ``analysis/preview.py`` samples them.
# text-to-persona does not store its texts: the source column names the text by corpus and id
CORPUS_PERSONAS = """
SELECT coalesce(attributes->>'relation', 'persona'), persona_id, attributes->>'text_id',
       'text ' || coalesce(attributes->>'text_id', '?') || ' of ' || (attributes->>'corpus'), text,
       coalesce(is_duplicate, false), duplicate_of
FROM personas WHERE source = 'text-to-persona' AND attributes->>'corpus' = ?
"""
EXPANSION_PERSONAS = """
WITH made AS (
    SELECT persona_id AS parent, unnest(from_json(created, '["VARCHAR"]')) AS child
    FROM expansion_frontier WHERE expansion_id = ? AND created IS NOT NULL
)
SELECT 'hop ' || coalesce(c.hop, 0), c.persona_id, m.parent, coalesce(p.text, '?'),
       coalesce(c.attributes->>'relation' || ': ', '') || c.text,
       coalesce(c.is_duplicate, false), c.duplicate_of
FROM made m JOIN personas c ON c.persona_id = m.child LEFT JOIN personas p ON p.persona_id = m.parent
"""

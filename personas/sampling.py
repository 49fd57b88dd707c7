"""Seeded samples of the hub, drawn in SQL: who a synthesis job or a scenario takes.

Ordering by md5(seed:persona_id) makes the sample independent of import order and the sample of
n the head of that of n + 1. User conditions run in the sandbox; a query matching nothing is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from personahub.core.errors import PersonahubError, UsageError
from personahub.personas.carve import Condition
from personahub.personas.gate_labels import DRAWN
from personahub.personas.hub_gate import gate_clause, held_back, none_eligible
from personahub.personas.record import Persona
from personahub.personas.selection_sandbox import persona_batches
from personahub.personas.store import fetch_personas

SAMPLE_MODES = ("uniform", "head")


@dataclass(frozen=True)
class HubQuery:
    """Which personas: an SQL condition and carve conditions (all must hold), and their names in
    errors.
    """

    where: str | None = None
    carve: Sequence[str] = ()
    where_label: str = "--personas"
    carve_label: str = "--carve"

    def conditions(self) -> list[tuple[str, str, list[object]]]:
        """Return (label, sql, params) per condition; raise UsageError naming a bad one."""
        parts: list[tuple[str, str, list[object]]] = []
        if self.where is not None:
            if not self.where.strip():
                raise UsageError(f"{self.where_label}: give an SQL condition, not an empty string")
            if ";" in self.where:
                raise UsageError(f"{self.where_label}: give one WHERE condition, without ';'")
            # on lines of its own: a trailing comment cannot swallow the closing parenthesis
            parts.append((f"{self.where_label} {self.where!r}", f"(\n{self.where}\n)", []))
        for text in self.carve:
            label = f"{self.carve_label} {text!r}"
            sql, params = Condition.parse(text, flag=self.carve_label).sql()
            parts.append((label, sql, params))
        return parts

    def describe(self) -> str:
        """Return the query as the user wrote it, for messages."""
        return "; ".join(label for label, _, _ in self.conditions()) or "all personas"


def check_query(query: HubQuery) -> None:
    """Check carve syntax and a single SQL condition, without a database."""
    query.conditions()


def draw_ids(con: duckdb.DuckDBPyConnection, query: HubQuery, n: int | None, *, seed: int = 0,
             mode: str = "uniform", gates: Sequence[str] | None = DRAWN) -> list[str]:
    """Return ids of n live personas matching the query and labelled one of gates (all when n is None).

    mode is a seeded uniform sample, or head for the first in hub order. An empty result is an error.
    """
    if mode not in SAMPLE_MODES:
        raise UsageError(f"sample mode {mode!r}: choose one of {', '.join(SAMPLE_MODES)}")
    parts = query.conditions()
    gated = gate_clause(gates)
    clauses = ["NOT coalesce(is_duplicate, false)", *([gated] if gated else []),
               *(sql for _, sql, _ in parts)]
    params: list[object] = [p for _, _, ps in parts for p in ps]
    if mode == "uniform":
        key, key_params = "md5(? || ':' || persona_id)", [str(seed)]
    else:
        key, key_params = "seq", []
    if parts:
        ids = _streamed_ids(con, parts, clauses, key, [*key_params, *params], n)
    else:
        sql = (f"SELECT persona_id FROM personas WHERE {_joined(clauses)} "
               f"ORDER BY {key}, persona_id")
        args = [*params, *key_params]
        if n is not None:
            sql += " LIMIT ?"
            args.append(n)
        ids = _selected(con, sql, args, parts)
    if not ids:
        if gated and draw_ids_exist(con, query):
            raise PersonahubError(none_eligible(con, query.describe()))
        if parts:
            raise PersonahubError(f"{query.describe()}: no personas match")
        raise PersonahubError("the hub has no personas (none, or all flagged near-duplicates)")
    return ids


def draw_ids_exist(con: duckdb.DuckDBPyConnection, query: HubQuery) -> bool:
    """Whether the query matches any live persona, whatever its gate label."""
    try:
        return bool(draw_ids(con, query, 1, gates=None))
    except PersonahubError:
        return False


def matching_ids(con: duckdb.DuckDBPyConnection, query: HubQuery) -> list[str]:
    """Return ids of every persona matching the query (duplicates too), in hub order, in the sandbox."""
    parts = query.conditions()
    if not parts:
        return [r[0] for r in con.execute("SELECT persona_id FROM personas ORDER BY seq").fetchall()]
    return _streamed_ids(con, parts, [p for _, p, _ in parts], "seq",
                         [v for _, _, ps in parts for v in ps], None)


def _streamed_ids(con: duckdb.DuckDBPyConnection, parts: list[tuple[str, str, list[object]]],
                  clauses: Sequence[str], key: str, args: list[object], n: int | None) -> list[str]:
    """Run a selection in the sandbox over the hub a batch at a time, ordered by key then id.

    Each batch's matches are merged with the best n kept so far (all when n is None), so memory
    holds a batch of the named columns and the kept ids, not a copy of the hub's columns: the
    same ids, in the same order, as one ORDER BY over the whole hub.
    """
    matched = f"SELECT persona_id, {key} AS _key FROM personas WHERE {_joined(clauses)}"
    merged = "SELECT persona_id, _key FROM _kept UNION ALL " + matched
    limit = " LIMIT ?" if n is not None else ""
    kept: pa.Table | None = None
    found: list[pa.Table] = []
    with persona_batches(con, [sql for _, sql, _ in parts]) as (sandbox, batches):
        for _ in batches:
            if n is None:
                found.append(_arrow(sandbox, matched, args, parts))
                continue
            if kept is not None:
                sandbox.register("_kept", kept)
            kept = _arrow(sandbox, f"{merged if kept is not None else matched} "
                                   f"ORDER BY _key, persona_id{limit}", [*args, n], parts)
        if n is None and found:
            sandbox.register("_kept", pa.concat_tables(found))
            kept = sandbox.sql("SELECT persona_id, _key FROM _kept "
                               "ORDER BY _key, persona_id").to_arrow_table()
    return [] if kept is None else kept.column("persona_id").to_pylist()


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, args: list[object],
           parts: list[tuple[str, str, list[object]]]) -> pa.Table:
    try:
        return con.sql(sql, params=args).to_arrow_table()
    except duckdb.Error as exc:
        raise PersonahubError(_culprit(con, parts, exc)) from None


def _joined(clauses: Sequence[str]) -> str:
    return " AND ".join(f"\n{c}\n" for c in clauses)


def _selected(con: duckdb.DuckDBPyConnection, sql: str, args: list[object],
              parts: list[tuple[str, str, list[object]]]) -> list[str]:
    try:
        return [r[0] for r in con.execute(sql, args).fetchall()]
    except duckdb.Error as exc:
        raise PersonahubError(_culprit(con, parts, exc)) from None


def _culprit(con: duckdb.DuckDBPyConnection, parts: list[tuple[str, str, list[object]]],
             exc: duckdb.Error) -> str:
    """Name the first condition that fails on its own, with DuckDB's reason.

    Evaluated on rows (LIMIT 1, not 0): DuckDB 2 compiles a regex parameter only when a row reaches it.
    """
    for label, sql, params in parts:
        try:
            con.execute(f"SELECT persona_id FROM personas WHERE \n{sql}\n LIMIT 1", params).fetchall()
        except duckdb.Error as own:
            return f"{label}: {_reason(own)}"
    return f"selection failed: {_reason(exc)}"


def _reason(exc: duckdb.Error) -> str:
    if isinstance(exc, duckdb.PermissionException):
        return "selection conditions cannot read files (they run without file access)"
    return str(exc).splitlines()[0]


def gated_out(con: duckdb.DuckDBPyConnection, query: HubQuery,
              gates: Sequence[str] | None = DRAWN) -> str | None:
    """Describe the live matches the gates leave out, by label, with the flag that takes them."""
    if gates is None:
        return None
    drawn = set(draw_ids(con, query, None, mode="head", gates=gates))
    every = draw_ids(con, query, None, mode="head", gates=None)
    return held_back(con, [pid for pid in every if pid not in drawn])


def draw(con: duckdb.DuckDBPyConnection, query: HubQuery, n: int | None, *, seed: int = 0,
         mode: str = "uniform", gates: Sequence[str] | None = DRAWN) -> list[Persona]:
    """Return the personas draw_ids picks, in its order."""
    ids = draw_ids(con, query, n, seed=seed, mode=mode, gates=gates)
    found = {p.persona_id: p for p in fetch_personas(con, ids)}
    return [found[i] for i in ids]

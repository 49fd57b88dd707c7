"""Carving the hub: select personas by attribute, text or graph neighbourhood, then sample.

Conditions are KEY OP VALUE: numbers compare numerically, strings case-insensitively, = on a list
means "contains", and demographic keys take any known spelling. Sampling is seeded.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import pyarrow as pa

from personahub.core.errors import UsageError
from personahub.personas.demographics import VOCABULARY, canonical
from personahub.personas.gate_labels import drawn_gates
from personahub.personas.hub_gate import fewer_than_asked, gate_clause, held_back, none_eligible
from personahub.personas.record import Persona
from personahub.personas.selection_sandbox import persona_batches
from personahub.personas.store import adjacent_ids, fetch_personas, has_persona

COLUMNS = ("hop", "source", "source_ref", "persona_id")
_CONDITION = re.compile(r"^\s*([^<>=!~]+?)\s*(>=|<=|!=|==|=|>|<|~)\s*(.*?)\s*$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
MISSING = "(missing)"
_KNOWN_SHOWN = 30  # attribute names an unknown --stratify lists at most


class ConditionError(UsageError, ValueError):
    """A condition that does not parse: a usage error (exit 2), also a ValueError."""


@dataclass(frozen=True)
class Condition:
    """One parsed attribute condition such as age>=30."""

    key: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str, *, flag: str = "--where") -> Condition:
        """Parse KEY OP VALUE; raise ConditionError naming the flag and the condition."""
        match = _CONDITION.match(text)
        if not match or not match.group(3):
            raise ConditionError(f"{flag} {text!r}: expected KEY OP VALUE, e.g. age>=30 or occupation=nurse")
        key, op, value = match.groups()
        if op != "~" and value[0] in "<>=!":  # a typo, not a value to match
            raise ConditionError(f"{flag} {text!r}: the value starts with {value[0]!r}; "
                             f"use one operator of = != >= <= > < ~, e.g. age>=30")
        op = "=" if op == "==" else op
        if key in VOCABULARY and op in ("=", "!="):
            value = canonical(key, value) or value
        return cls(key, op, value)

    def sql(self) -> tuple[str, list[object]]:
        """Return a SQL predicate over the personas table and its parameters."""
        if self.key in COLUMNS:
            value, value_params = f"CAST({self.key} AS VARCHAR)", []
            items = "[]::VARCHAR[]"
            item_params: list[object] = []
        else:
            path = '$."' + self.key.replace('"', '\\"') + '"'
            value, value_params = "json_extract_string(attributes, ?)", [path]
            items, item_params = "json_extract_string(attributes, ?)", [path + "[*]"]
        if self.op == "~":
            return f"coalesce(regexp_matches({value}, ?), false)", [*value_params, self.value]
        if _NUMBER.match(self.value):
            return (f"coalesce(TRY_CAST({value} AS DOUBLE) {self.op} ?, false)",
                    [*value_params, float(self.value)])
        if self.op in ("=", "!="):
            test = (f"coalesce(lower({value}) = lower(?), false) "
                    f"OR list_contains(string_split(lower(array_to_string({items}, chr(31))), chr(31)), "
                    "lower(?))")
            params = [*value_params, self.value, *item_params, self.value]
            return (f"NOT ({test})" if self.op == "!=" else f"({test})"), params
        return f"coalesce(lower({value}) {self.op} lower(?), false)", [*value_params, self.value]


@dataclass
class Selection:
    """What to carve out of the hub; empty fields select everything."""

    where: Sequence[str] = ()
    contains: str | None = None
    regex: str | None = None
    ilike: str | None = None
    near: str | None = None
    within: int = 1
    include_duplicates: bool = False
    sources: Sequence[str] = field(default_factory=tuple)
    include_ungated: bool = False


def neighbourhood(con: duckdb.DuckDBPyConnection, persona_id: str, hops: int) -> set[str]:
    """Return ids within hops relation edges of a persona, itself included; an unknown id is an error."""
    if hops < 0:
        raise ValueError(f"--within must be >= 0, got {hops}")
    if not has_persona(con, persona_id):
        raise ValueError(f"--near {persona_id!r}: no such persona id in the hub")
    seen = {persona_id}
    frontier = [persona_id]
    for _ in range(hops):
        if not frontier:
            break
        frontier = [pid for pid in adjacent_ids(con, frontier) if pid not in seen]
        seen.update(frontier)
    return seen


def _clauses(con: duckdb.DuckDBPyConnection, selection: Selection
             ) -> tuple[list[str], list[object], list[str] | None]:
    """Return a selection's SQL conditions, their parameters and its neighbourhood's ids."""
    clauses: list[str] = []
    params: list[object] = []
    if not selection.include_duplicates:
        clauses.append("NOT coalesce(is_duplicate, false)")
    gated = gate_clause(drawn_gates(include_ungated=selection.include_ungated))
    if gated:
        clauses.append(gated)
    for text in selection.where:
        sql, args = Condition.parse(text).sql()
        clauses.append(sql)
        params += args
    if selection.contains:
        clauses.append("contains(lower(text), lower(?))")
        params.append(selection.contains)
    if selection.regex:
        clauses.append("regexp_matches(text, ?)")
        params.append(selection.regex)
    if selection.ilike:
        clauses.append("text ILIKE ?")
        params.append(selection.ilike)
    if selection.sources:
        clauses.append("source IN (SELECT unnest(?))")
        params.append(list(selection.sources))
    near = sorted(neighbourhood(con, selection.near, selection.within)) if selection.near else None
    if near is not None:
        clauses.append("persona_id IN (SELECT id FROM _carve_near)")
    return clauses, params, near


def select_ids(con: duckdb.DuckDBPyConnection, selection: Selection | None = None) -> list[str]:
    """Return ids of the personas matching the selection, in hub order.

    The hub is read a batch at a time (``_matches``): memory holds a batch and the matches, not
    the hub.
    """
    selection = selection or Selection()
    ids = [pid for table in _matches(con, selection, None)
           for pid in table.column("persona_id").to_pylist()]
    gated = gate_clause(drawn_gates(include_ungated=selection.include_ungated))
    if not ids and gated and select_ids(con, replace(selection, include_ungated=True)):
        raise ValueError(none_eligible(con, "personas sample"))
    return ids


def _stratum_sql(attribute: str) -> tuple[str, list[Any]]:
    """Return the SQL of an attribute's stratum (MISSING when absent or empty) and its parameters."""
    if attribute in COLUMNS:
        value, params = f"CAST({attribute} AS VARCHAR)", []
    else:
        value = "json_extract_string(attributes, ?)"
        params = ['$."' + attribute.replace('"', '\\"') + '"']
    return f"coalesce(nullif({value}, ''), '{MISSING}')", params


def _matches(con: duckdb.DuckDBPyConnection, selection: Selection,
             stratify: str | None) -> Iterator[pa.Table]:
    """Stream the selection's matches as (persona_id, stratum) tables, in hub order.

    The hub is read in batches, each put into the sandbox alone, so no more than a batch of it is
    held at a time.
    """
    clauses, params, near = _clauses(con, selection)
    stratum, stratum_params = _stratum_sql(stratify) if stratify is not None else ("''", [])
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = f"SELECT persona_id, {stratum} AS stratum FROM personas{where} ORDER BY seq"
    args = [*stratum_params, *params]
    with persona_batches(con, [*clauses, stratum]) as (sandbox, batches):
        if near is not None:
            sandbox.register("_carve_near", pa.table({"id": pa.array(near, type=pa.string())}))
        for _ in batches:
            try:
                yield sandbox.sql(sql, params=args).to_arrow_table()
            except duckdb.PermissionException as exc:
                raise ValueError("selection failed: conditions cannot read files") from exc
            except duckdb.Error as exc:
                raise ValueError(f"selection failed: {str(exc).splitlines()[0]}") from exc


def sample_selection(con: duckdb.DuckDBPyConnection, selection: Selection | None, k: int | None,
                     *, seed: int = 0, stratify: str | None = None,
                     equal: bool = False) -> list[str]:
    """Draw k of the selection's ids as sample_ids(select_ids(...)) does, from the store.

    The matches are counted in one pass and the drawn positions taken in a second, so memory holds
    a batch of the hub and the k ids, not every match. Returns ids in hub order.
    """
    selection = selection or Selection()
    if stratify is not None:
        check_attribute(con, stratify)
    if k is not None and k < 0:
        raise ValueError(f"-k must be >= 0, got {k}")
    sizes: dict[str, int] = defaultdict(int)
    for table in _matches(con, selection, stratify):
        counted = table.group_by("stratum").aggregate([("stratum", "count")])
        for value, count in zip(counted["stratum"].to_pylist(),
                                counted["stratum_count"].to_pylist(), strict=True):
            sizes[value] += count
    total = sum(sizes.values())
    if k is None or k >= total:
        return select_ids(con, selection)  # every match (the errors of an empty one too)
    rng = random.Random(seed)
    if stratify is None:
        wanted = {"": set(rng.sample(range(total), k))}
    else:
        alloc = _allocate(dict(sizes), k, equal)
        wanted = {stratum: set(rng.sample(range(sizes[stratum]), alloc[stratum]))
                  for stratum in sorted(sizes)}
    seen: dict[str, int] = defaultdict(int)
    chosen: list[str] = []
    for table in _matches(con, selection, stratify):
        for pid, value in zip(table.column(0).to_pylist(), table.column(1).to_pylist(),
                              strict=True):
            if seen[value] in wanted[value]:
                chosen.append(pid)
            seen[value] += 1
    return chosen


def _allocate(sizes: dict[str, int], k: int, equal: bool) -> dict[str, int]:
    """Return how many to draw per stratum: proportional (largest remainder) or equal, capped by size."""
    total = sum(sizes.values())
    if k >= total:
        return dict(sizes)
    if equal:
        alloc = dict.fromkeys(sizes, 0)
        left = k
        while left:
            open_ = [s for s in sorted(sizes) if alloc[s] < sizes[s]]
            for stratum in open_[:left]:
                alloc[stratum] += 1
            left -= min(left, len(open_))
        return alloc
    quotas = {s: k * n / total for s, n in sizes.items()}
    alloc = {s: int(q) for s, q in quotas.items()}
    by_remainder = sorted(sizes, key=lambda s: (-(quotas[s] - alloc[s]), s))
    for stratum in by_remainder[: k - sum(alloc.values())]:
        alloc[stratum] += 1
    return alloc


def strata(con: duckdb.DuckDBPyConnection, ids: Sequence[str], attribute: str) -> dict[str, list[str]]:
    """Group ids, kept in order, by an attribute's value."""
    if attribute in COLUMNS:
        expr, params = f"CAST({attribute} AS VARCHAR)", []
    else:
        expr, params = "json_extract_string(attributes, ?)", ['$."' + attribute.replace('"', '\\"') + '"']
    con.register("_carve_ids", pa.table({"id": list(ids)}))
    try:
        values = dict(con.execute(
            f"SELECT persona_id, {expr} FROM personas WHERE persona_id IN (SELECT id FROM _carve_ids)",
            params).fetchall())
    finally:
        con.unregister("_carve_ids")
    groups: dict[str, list[str]] = defaultdict(list)
    for pid in ids:
        value = values.get(pid)
        groups[MISSING if value in (None, "") else str(value)].append(pid)
    return dict(groups)


def check_attribute(con: duckdb.DuckDBPyConnection, attribute: str,
                    flag: str = "--stratify") -> None:
    """Refuse an attribute no persona has: a typo would give one (missing) stratum that looks right."""
    if attribute in COLUMNS:
        return
    path = '$."' + attribute.replace('"', '\\"') + '"'
    if con.execute("SELECT 1 FROM personas WHERE json_extract(attributes, ?) IS NOT NULL LIMIT 1",
                   [path]).fetchall():
        return
    keys = [r[0] for r in con.execute(
        "SELECT DISTINCT unnest(json_keys(attributes)) AS k FROM personas ORDER BY k").fetchall()]
    shown = ", ".join(keys[:_KNOWN_SHOWN]) + (f", ... ({len(keys)} in all)"
                                               if len(keys) > _KNOWN_SHOWN else "")
    raise UsageError(f"{flag} {attribute!r}: no persona has that attribute; known: "
                     f"{shown or '(none)'}; or a column: {', '.join(COLUMNS)}")


def sample_ids(con: duckdb.DuckDBPyConnection, ids: Sequence[str], k: int | None, *, seed: int = 0,
               stratify: str | None = None, equal: bool = False) -> list[str]:
    """Draw k of the ids (all when None), uniformly or stratified; result in hub order."""
    if stratify is not None:
        check_attribute(con, stratify)
    if k is None or k >= len(ids):
        return list(ids)
    if k < 0:
        raise ValueError(f"-k must be >= 0, got {k}")
    rng = random.Random(seed)
    if stratify is None:
        chosen = set(rng.sample(list(ids), k))
    else:
        groups = strata(con, ids, stratify)
        alloc = _allocate({s: len(g) for s, g in groups.items()}, k, equal)
        chosen = set()
        for stratum in sorted(groups):
            chosen.update(rng.sample(groups[stratum], alloc[stratum]))
    return [pid for pid in ids if pid in chosen]


def carve(con: duckdb.DuckDBPyConnection, selection: Selection | None = None, *, k: int | None = None,
          seed: int = 0, stratify: str | None = None, equal: bool = False) -> list[Persona]:
    """Select, then sample; return the personas in hub order."""
    ids = sample_selection(con, selection, k, seed=seed, stratify=stratify, equal=equal)
    return fetch_personas(con, ids)


def shortfall(con: duckdb.DuckDBPyConnection, selection: Selection | None, k: int | None,
              got: int, what: str = "personas sample") -> str | None:
    """Return the line a short draw prints: how many matched and what the gate or duplicate flag held
    back.

    None when the draw returned what was asked.
    """
    if k is None or got >= k:
        return None
    selection = selection or Selection()
    matched = set(select_ids(con, selection))
    gated = [] if selection.include_ungated else [
        pid for pid in select_ids(con, replace(selection, include_ungated=True))
        if pid not in matched]
    duplicates = 0 if selection.include_duplicates else len(
        set(select_ids(con, replace(selection, include_duplicates=True))) - matched)
    flagged = (f"{duplicates} more match but are flagged near-duplicates "
               "(--include-duplicates takes them)" if duplicates else None)
    return fewer_than_asked(what, k, got, [held_back(con, gated), flagged])

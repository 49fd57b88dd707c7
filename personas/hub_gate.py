"""The hub's reads of the ``personas.gate`` label: which rows a draw may take, and why none can.

The labels and the rules that set them are ``personas/gate_labels.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from personahub.personas.gate_labels import DRAWN, GATES, INCLUDE_FLAG, LEGACY
from personahub.personas.store import failed_count, gate_counts, gates_of, persona_table_columns


def has_gate(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the file's ``personas`` has the column (a read-only look at an older file may not:
    every row of it is then ``legacy``)."""
    return "gate" in persona_table_columns(con)


def gate_clause(con: duckdb.DuckDBPyConnection, gates: Sequence[str] | None) -> str | None:
    """An SQL condition keeping the rows labelled ``gates`` (None: no condition). The labels are
    this module's constants, never user text, so they are inlined."""
    if gates is None:
        return None
    if not has_gate(con):
        return "true" if LEGACY in gates else "false"
    for gate in gates:
        if gate not in GATES:
            raise ValueError(f"unknown persona gate {gate!r}")
    listed = ", ".join(f"'{g}'" for g in gates)
    return f"coalesce(gate, '{LEGACY}') IN ({listed})"


def none_eligible(con: duckdb.DuckDBPyConnection, what: str) -> str:
    """The one line a draw that found nobody eligible prints: how many were left out, and the
    flag that takes them."""
    if not has_gate(con):
        return f"{what}: no personas match"
    left = ", ".join(f"{n} {gate}" for gate, n in gate_counts(con) if gate not in DRAWN)
    if not left:
        return f"{what}: no personas match"
    return (f"{what}: no persona that passed the quality gate matches (the hub also holds "
            f"{left}; {INCLUDE_FLAG}, or include_ungated=True from Python, draws those too)")


def held_back(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> str | None:
    """What a draw says of the matching personas its gate left out (``ids``): how many, their
    labels and the flag that takes them; None when it left none out."""
    if not ids:
        return None
    counts: dict[str, int] = {}
    for gate in persona_gates(con, ids).values():
        counts[gate] = counts.get(gate, 0) + 1
    labels = ", ".join(f"{n} {gate}" for gate, n in sorted(counts.items(), key=lambda c: -c[1]))
    return (f"{len(ids)} more match but the quality gate held them back ({labels}; "
            f"{INCLUDE_FLAG} takes them)")


def fewer_than_asked(what: str, asked: int, got: int, reasons: Sequence[str | None]) -> str:
    """The one line a draw of ``asked`` that found ``got`` says: how many matched and why the
    rest were left out (``reasons``: ``held_back``'s clause and the like; None ones dropped)."""
    why = "; ".join(r for r in reasons if r)
    return (f"{what}: {got} of {asked} asked: only {got} personas match"
            + (f"; {why}" if why else ""))


def persona_gates(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> dict[str, str]:
    """Each of ``ids``'s label (``legacy`` in an older file without the column)."""
    if not ids:
        return {}
    if not has_gate(con):
        return dict.fromkeys(ids, LEGACY)
    return gates_of(con, ids)


def count_failed(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> int:
    """How many of ``ids`` are labelled ``failed`` (what an import reports)."""
    if not ids:
        return 0
    return failed_count(con, ids)

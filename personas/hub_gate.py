"""The hub's reads of the gate label: which rows a draw may take, and why none can."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from personahub.personas.gate_labels import DRAWN, GATES, INCLUDE_FLAG
from personahub.personas.store import failed_count, gate_counts, gates_of


def gate_clause(gates: Sequence[str] | None) -> str | None:
    """Return an SQL condition keeping rows with these labels (inlined: they are constants, not user
    text).
    """
    if gates is None:
        return None
    for gate in gates:
        if gate not in GATES:
            raise ValueError(f"unknown persona gate {gate!r}")
    listed = ", ".join(f"'{g}'" for g in gates)
    return f"gate IN ({listed})"


def none_eligible(con: duckdb.DuckDBPyConnection, what: str) -> str:
    """Return the line a draw that found nobody eligible prints, with the flag that takes the rest."""
    left = ", ".join(f"{n} {gate}" for gate, n in gate_counts(con) if gate not in DRAWN)
    if not left:
        return f"{what}: no personas match"
    return (f"{what}: no persona that passed the quality gate matches (the hub also holds "
            f"{left}; {INCLUDE_FLAG}, or include_ungated=True from Python, draws those too)")


def held_back(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> str | None:
    """Describe how many matching ids the gate left out and the flag that takes them; None when none."""
    if not ids:
        return None
    counts: dict[str, int] = {}
    for gate in persona_gates(con, ids).values():
        counts[gate] = counts.get(gate, 0) + 1
    labels = ", ".join(f"{n} {gate}" for gate, n in sorted(counts.items(), key=lambda c: -c[1]))
    return (f"{len(ids)} more match but the quality gate held them back ({labels}; "
            f"{INCLUDE_FLAG} takes them)")


def fewer_than_asked(what: str, asked: int, got: int, reasons: Sequence[str | None]) -> str:
    """Return the line a short draw prints: how many matched and why the rest were left out."""
    why = "; ".join(r for r in reasons if r)
    return (f"{what}: {got} of {asked} asked: only {got} personas match"
            + (f"; {why}" if why else ""))


def persona_gates(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> dict[str, str]:
    """Map ids to their gate label."""
    if not ids:
        return {}
    return gates_of(con, ids)


def count_failed(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> int:
    """Count ids labelled failed."""
    if not ids:
        return 0
    return failed_count(con, ids)

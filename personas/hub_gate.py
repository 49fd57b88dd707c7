"""Which personas a draw may take: the ``personas.gate`` label every written persona carries.

Why a label and not only the ``rejected`` table: the offline engine's answers pass the gate's
rules (they are built to) but describe no one ("the parent of someone known for line-following
nurse"), and an imported data set is someone's data, kept row for row even where a row is junk.
Both stay in the hub; the label says what each row is, and draws (``personas sample``,
synthesis, a run's setup, calibration) take only ``DRAWN`` rows unless asked for the others:

- ``passed``: a model's answer that passed the quality gate, or a row written without a model
  (an import, the seed personas, a scenario's people) whose text passes the gate's rules;
- ``failed``: such a row whose text fails them (kept, never drawn by default);
- ``offline``: written by the offline engine (drawn by default only by an offline job, so the
  offline quick start and its goldens are unchanged);
- ``legacy``: written before the label existed (drawn, as it was then; ``core/migrate.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import duckdb

from personahub.personas.quality import clean_persona_text, coherence_issue, screen_persona
from personahub.personas.record import Persona
from personahub.personas.store import failed_count, gate_counts, gates_of, persona_table_columns

PASSED: Final = "passed"
FAILED: Final = "failed"
OFFLINE: Final = "offline"
LEGACY: Final = "legacy"
GATES: Final = (PASSED, FAILED, OFFLINE, LEGACY)
DRAWN: Final = (PASSED, LEGACY)  # what every draw takes by default
INCLUDE_FLAG: Final = "--include-ungated"


def written_gate(offline: bool) -> str:
    """The label of a model's persona that passed the gate: ``offline`` for the offline engine's."""
    return OFFLINE if offline else PASSED


def checked_gate(persona: Persona) -> str:
    """The label of a persona written without a model: its text run through the gate's rules
    (form and coherence), so junk in an imported file is kept but not drawn."""
    text = clean_persona_text(persona.text)
    issue = screen_persona(text) or coherence_issue(text)
    return PASSED if issue is None else FAILED


def spec_is_offline(spec: str) -> bool:
    """Whether a ``--llm`` spec names only the offline engine (``offline``, ``offline:...``; a
    failover list of them): known before the client is built."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    return bool(parts) and all(p.split("?")[0].split(":")[0] == "offline" for p in parts)


def drawn_gates(*, include_ungated: bool = False, offline: bool = False) -> tuple[str, ...] | None:
    """The labels a draw takes (None: every row). An offline job takes the offline engine's
    rows too: the offline engine feeding the offline engine is its own closed world."""
    if include_ungated:
        return None
    return (*DRAWN, OFFLINE) if offline else DRAWN


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

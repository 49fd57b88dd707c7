"""Helpers shared by the persona-pipeline tests: hub snapshots."""

from __future__ import annotations


def personas_snapshot(con) -> list[tuple]:
    """The hub's persona contents, without insertion order and timestamps."""
    return con.execute(
        "SELECT persona_id, text, source, source_ref, CAST(attributes AS VARCHAR), hop, is_duplicate "
        "FROM personas ORDER BY persona_id").fetchall()


def relations_snapshot(con) -> list[tuple]:
    """The relations table without timestamps."""
    return con.execute("SELECT src, dst, relation, hop, source FROM relations ORDER BY ALL").fetchall()

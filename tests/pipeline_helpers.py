"""Helpers shared by the persona-pipeline tests: an interrupting caller and hub snapshots."""

from __future__ import annotations

from typing import Any


class Interrupted(RuntimeError):
    """Raised by FailAfter to simulate a crash in the middle of a job."""


class FailAfter:
    """Wrap a StructuredCaller and raise on call number ``n + 1`` (the first ``n`` succeed)."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner = inner
        self.n = n
        self.calls = 0

    async def structured(self, schema, messages, **kwargs):
        self.calls += 1
        if self.calls > self.n:
            raise Interrupted(f"simulated crash at call {self.calls}")
        return await self.inner.structured(schema, messages, **kwargs)

    def drain_records(self):
        return self.inner.drain_records()


def personas_snapshot(con) -> list[tuple]:
    """The hub's persona contents, without insertion order and timestamps."""
    return con.execute(
        "SELECT persona_id, text, source, source_ref, CAST(attributes AS VARCHAR), hop, is_duplicate "
        "FROM personas ORDER BY persona_id").fetchall()


def relations_snapshot(con) -> list[tuple]:
    """The relations table without timestamps."""
    return con.execute("SELECT src, dst, relation, hop, source FROM relations ORDER BY ALL").fetchall()

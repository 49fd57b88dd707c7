"""Helpers shared by the pipeline tests: hub snapshots, rows of a database file, and what the
command and the API hand the kernel."""

from __future__ import annotations

from typing import Any


def personas_snapshot(con) -> list[tuple]:
    """The hub's persona contents, without insertion order and timestamps."""
    return con.execute(
        "SELECT persona_id, text, source, source_ref, CAST(attributes AS VARCHAR), hop, is_duplicate "
        "FROM personas ORDER BY persona_id").fetchall()


def relations_snapshot(con) -> list[tuple]:
    """The relations table without timestamps."""
    return con.execute("SELECT src, dst, relation, hop, source FROM relations ORDER BY ALL").fetchall()


def rows(db: Any, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """``sql``'s rows, read from the database file ``db`` on a read-only connection."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def handed_runs(monkeypatch: Any, answer: Any) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (kind, config, db, resume), which then answers
    ``answer`` (a ``JobResult``) without running the job; executors report Ray installed (its
    configs are compared, never run)."""
    from personahub import executors, runtime

    seen: list[dict[str, Any]] = []

    def fake_run(spec: Any, config: Any, db: Any, **kwargs: Any) -> Any:
        seen.append({"kind": spec.kind, "config": config, "db": str(db), "resume": kwargs["resume"]})
        return answer

    monkeypatch.setattr(runtime, "run", fake_run)
    monkeypatch.setattr(executors, "ray_installed", lambda: True)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return seen

"""Which texts the embedding stage judges: those in its embedder's scripts.

An English-only model puts texts in other scripts close together whoever wrote them, so they are
left to MinHash; dedup_judged records per persona and embedder whether each was judged.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from personahub.personas.writing_systems import covered, dominant_script

__all__ = ["JudgedLog", "split_by_script", "write_judged"]


def split_by_script(texts: list[str], scripts: frozenset[str] | None) -> tuple[np.ndarray, list[str]]:
    """Return whether the embedder judges each text, and each text's dominant script."""
    judged = np.fromiter((covered(t, scripts) for t in texts), dtype=bool, count=len(texts))
    return judged, [dominant_script(t) for t in texts]


@dataclass
class JudgedLog:
    """Every survivor the stage saw: its script and whether the embedder judged it."""

    ids: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    judged: list[bool] = field(default_factory=list)

    def add(self, ids: list[str], judged: np.ndarray, scripts: list[str]) -> None:
        """Note one batch."""
        self.ids.extend(ids)
        self.scripts.extend(scripts)
        self.judged.extend(judged.tolist())

    @property
    def skipped(self) -> int:
        """Texts left out for their script."""
        return len(self.judged) - sum(self.judged)

    def skipped_by_script(self) -> tuple[tuple[str, int], ...]:
        """Return (script, count) of the texts left out, most first."""
        counts = Counter(s for s, j in zip(self.scripts, self.judged, strict=True) if not j)
        return tuple(counts.most_common())


def write_judged(con: duckdb.DuckDBPyConnection, log: JudgedLog, model: str,
                 job_id: str | None) -> int:
    """Store the log under an embedder name; a persona judged again replaces its row."""
    n = len(log.ids)
    if n == 0:
        return 0
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    table = pa.table({
        "persona_id": pa.array(log.ids, pa.string()),
        "model": pa.array([model] * n, pa.string()),
        "script": pa.array(log.scripts, pa.string()),
        "judged": pa.array(log.judged, pa.bool_()),
        "job_id": pa.array([job_id] * n, pa.string()),
        "judged_at": pa.array([now] * n, pa.timestamp("us")),
    })
    view, cols = "_batch_dedup_judged", ", ".join(table.column_names)
    con.register(view, table)
    try:
        con.execute(f"INSERT OR REPLACE INTO dedup_judged ({cols}) SELECT {cols} FROM {view}")
    finally:
        con.unregister(view)
    return n

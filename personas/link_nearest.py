"""Nearest people by embedding, for triangle closing and same-person merges during expansion.

A source's neighbourhood only proposes people in the same tree; a pool of committed personas
proposes the nearest ones too, and a new persona at or above the threshold is merged into its
nearest. Ranking by (rounded cosine, id) makes a resumed expansion propose the same people.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np

from personahub.core.errors import UsageError
from personahub.personas.embedding import Embedder, embedder_scripts, offline_embedder
from personahub.personas.store import texts_by_id
from personahub.personas.writing_systems import covered

OFFLINE_EMBEDDERS = ("hash", "local")
DEFAULT_LINK_EMBEDDER = "hash"
# the expand command's defaults (ExpandConfig itself defaults to 0 candidates: trees)
DEFAULT_LINK_CANDIDATES = 4
_DECIMALS = 5  # ranks ties and float noise by id


def pool_embedder(spec: str) -> Embedder:
    """Build an offline embedder for the pool: pool embeddings are not model calls."""
    if spec.strip().partition(":")[0].lower() not in OFFLINE_EMBEDDERS:
        raise UsageError(f"--link-embedder {spec!r}: use hash or local[:model] "
                              "(embeddings made during expansion are not accounted calls)")
    return offline_embedder(spec)


class NearestPool:
    """Unit vectors of the personas seen so far, searchable by cosine."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._scripts = embedder_scripts(embedder)
        self._ids: list[str] = []
        self._known: set[str] = set()
        self._vectors = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    def judges(self, text: str) -> bool:
        """Whether the embedder was trained on the text's script (else it proposes nobody)."""
        return covered(text, self._scripts)

    def add(self, people: Sequence[tuple[str, str]]) -> None:
        """Add (persona_id, text) pairs not yet in the pool, leaving out texts it cannot judge."""
        fresh = [(pid, text) for pid, text in dict(people).items()
                 if pid not in self._known and self.judges(text)]
        if not fresh:
            return
        vectors = np.asarray(self.embedder.embed([t for _, t in fresh]), dtype=np.float32)
        self._vectors = vectors if not self._ids else np.vstack([self._vectors, vectors])
        self._ids += [pid for pid, _ in fresh]
        self._known.update(pid for pid, _ in fresh)

    def nearest(self, texts: Sequence[str], k: int, exclude: Sequence[set[str]]
                ) -> list[list[tuple[str, float]]]:
        """Return, per text, up to k (persona_id, cosine) best first, skipping exclude[i]."""
        out: list[list[tuple[str, float]]] = [[] for _ in texts]
        judged = [i for i, text in enumerate(texts) if self.judges(text)]
        if not self._ids or not judged or k < 1:
            return out
        queries = np.asarray(self.embedder.embed([texts[i] for i in judged]), dtype=np.float32)
        scores = np.round(queries @ self._vectors.T, _DECIMALS)
        for row, i in enumerate(judged):
            take = min(len(self._ids), k + len(exclude[i]))
            # everyone tied with the last taken too, so pool order never decides
            bound = np.partition(-scores[row], take - 1)[take - 1]
            top = np.flatnonzero(-scores[row] <= bound)
            ranked = sorted((-float(scores[row, j]), self._ids[j]) for j in top)
            out[i] = [(pid, -neg) for neg, pid in ranked if pid not in exclude[i]][:k]
        return out


def load_pool(con: duckdb.DuckDBPyConnection, embedder: Embedder, persona_ids: Sequence[str]
              ) -> NearestPool:
    """Build a pool of an expansion's committed personas with their hub texts."""
    pool = NearestPool(embedder)
    if persona_ids:
        rows = texts_by_id(con, persona_ids)
        pool.add([(pid, rows[pid]) for pid in persona_ids if pid in rows])
    return pool

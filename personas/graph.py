"""The relationship graph: networkx in memory, the ``relations`` table in DuckDB.

The stored form is a ``MultiDiGraph`` (one edge per (src, dst, relation)), so several relation
labels between two people survive a round trip. Simulations use the undirected simple view.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import networkx as nx

from personas.store import fetch_personas, insert_columns, upsert_personas


@dataclass(frozen=True, slots=True)
class Relation:
    """A directed, labelled edge: ``dst`` is ``src``'s ``relation`` (e.g. patient)."""

    src: str
    dst: str
    relation: str
    hop: int | None = None
    source: str = ""


def save_relations(con: duckdb.DuckDBPyConnection, relations: Iterable[Relation]) -> int:
    """Insert relations not yet stored; returns how many rows were offered."""
    unique = [r for r in dict.fromkeys(relations) if r.src != r.dst]
    return insert_columns(con, "relations", {
        "src": [r.src for r in unique], "dst": [r.dst for r in unique],
        "relation": [r.relation for r in unique], "hop": [r.hop for r in unique],
        "source": [r.source for r in unique]}, ignore_conflicts=True)


def load_graph(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str] | None = None,
               *, include_duplicates: bool = True) -> nx.MultiDiGraph:
    """The persona graph (all of it, or the subgraph induced by ``persona_ids``)."""
    graph = nx.MultiDiGraph()
    for p in fetch_personas(con, persona_ids):
        graph.add_node(p.persona_id, text=p.text, hop=p.hop, source=p.source,
                       source_ref=p.source_ref, attributes=dict(p.attributes))
    if not include_duplicates:
        dups = {r[0] for r in con.execute("SELECT persona_id FROM personas WHERE is_duplicate").fetchall()}
        graph.remove_nodes_from(dups)
    rows = con.execute("SELECT src, dst, relation, hop, source FROM relations ORDER BY src, dst, relation")
    for src, dst, relation, hop, source in rows.fetchall():
        if src in graph and dst in graph:
            graph.add_edge(src, dst, key=relation, relation=relation, hop=hop, source=source or "")
    return graph


def save_graph(con: duckdb.DuckDBPyConnection, graph: nx.MultiDiGraph) -> None:
    """Write a graph's nodes (as personas) and edges (as relations) to the hub."""
    from personas.record import Persona

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


def social_graph(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]) -> nx.Graph:
    """Undirected simple graph among ``persona_ids`` straight from the ``relations`` table.

    What ``social_view(load_graph(con, ids))`` gives, without building the multigraph and its
    persona attributes first (seconds at 100,000 personas): nodes in the given order, one edge
    per related pair, labelled with the pair's alphabetically first relation.
    """
    import pyarrow as pa

    graph = nx.Graph()
    graph.add_nodes_from(persona_ids)
    con.register("_social_ids", pa.table({"id": list(persona_ids)}))
    try:
        rows = con.execute("""
            SELECT least(src, dst), greatest(src, dst), min(relation)
            FROM relations
            WHERE src <> dst AND src IN (SELECT id FROM _social_ids)
              AND dst IN (SELECT id FROM _social_ids)
            GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
    finally:
        con.unregister("_social_ids")
    graph.add_edges_from((a, b, {"relation": r}) for a, b, r in rows)
    return graph


def small_world_pairs(n: int, k: int, rewire: float, seed: int) -> list[tuple[int, int]]:
    """Watts-Strogatz edges on ``n`` nodes: a ring where each node links its ``k`` nearest,
    then each lattice edge's far end moves to a random node with probability ``rewire``.

    Plain Python over index pairs: networkx's generator builds a graph object on the way, which
    took seconds for a 100,000-persona scenario. Seeded, so a run's links are reproducible.
    """
    if n < 3 or k < 2:
        return []
    half = min(k, n - 1) // 2
    rng = random.Random(seed)
    edges = {(min(u, (u + j) % n), max(u, (u + j) % n)) for j in range(1, half + 1) for u in range(n)}
    if 2 * half < n - 2:  # room to rewire without running out of free partners
        for j in range(1, half + 1):
            for u in range(n):
                if rng.random() >= rewire:
                    continue
                old = (min(u, (u + j) % n), max(u, (u + j) % n))
                if old not in edges:
                    continue
                w = rng.randrange(n)
                while w == u or (min(u, w), max(u, w)) in edges:
                    w = rng.randrange(n)
                edges.discard(old)
                edges.add((min(u, w), max(u, w)))
    return sorted(edges)


def social_view(graph: nx.MultiDiGraph) -> nx.Graph:
    """Undirected simple graph for neighbourhoods: who can talk to whom."""
    simple = nx.Graph()
    simple.add_nodes_from(graph.nodes(data=True))
    for u, v, data in graph.edges(data=True):
        if u != v and not simple.has_edge(u, v):
            simple.add_edge(u, v, relation=data.get("relation"))
    return simple


def graph_summary(graph: nx.MultiDiGraph) -> dict[str, Any]:
    """Nodes, edges and connected components (for console summaries)."""
    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "components": nx.number_weakly_connected_components(graph) if graph else 0,
    }


_DEGREE_BINS = ((0, 0), (1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, None))


def graph_stats(graph: nx.MultiDiGraph, *, top_labels: int = 15) -> dict[str, Any]:
    """Nodes, edges, components, degree distribution, hop counts and relation-label counts.

    Degrees count edges in both directions (a persona's relations plus those pointing to it).
    """
    from collections import Counter
    from statistics import median

    degrees = sorted(d for _, d in graph.degree())
    histogram: dict[str, int] = {}
    for low, high in _DEGREE_BINS:
        label = str(low) if high == low else (f"{low}+" if high is None else f"{low}-{high}")
        histogram[label] = sum(1 for d in degrees if d >= low and (high is None or d <= high))
    components = [len(c) for c in nx.weakly_connected_components(graph)] if graph else []
    labels = Counter(data.get("relation", key) for _, _, key, data in graph.edges(keys=True, data=True))
    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "components": len(components),
        "largest_component": max(components, default=0),
        "isolated": sum(1 for d in degrees if d == 0),
        "degree": {"min": degrees[0] if degrees else 0, "median": median(degrees) if degrees else 0,
                   "max": degrees[-1] if degrees else 0,
                   "mean": round(sum(degrees) / len(degrees), 2) if degrees else 0.0},
        "degree_histogram": {k: v for k, v in histogram.items() if v},
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
    """``expand``, ``text-to-persona``, ``seed`` kept; file paths summarised as ``file``."""
    return source if source in ("expand", "text-to-persona", "seed", "") else (
        source.split(":", 1)[0] if source.startswith("scenario:") else "file")


def write_graphml(graph: nx.MultiDiGraph, path: str | Path) -> None:
    """Write GraphML (GraphML takes scalars only: ``attributes`` is stored JSON-encoded)."""
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
    nx.write_graphml(out, str(path), encoding="utf-8")


def read_graphml(path: str | Path) -> nx.MultiDiGraph:
    """Read a GraphML file written by ``write_graphml`` back into the hub's graph form."""
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

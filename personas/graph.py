"""The relationship graph: networkx in memory, the ``relations`` table in DuckDB.

The stored form is a ``MultiDiGraph`` (one edge per (src, dst, relation)), so several relation
labels between two people survive a round trip. Simulations use the undirected simple view.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import networkx as nx

from personas.store import fetch_personas, insert_rows, upsert_personas


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
    rows = [
        {"src": r.src, "dst": r.dst, "relation": r.relation, "hop": r.hop, "source": r.source}
        for r in dict.fromkeys(relations)
        if r.src != r.dst
    ]
    return insert_rows(con, "relations", rows, ignore_conflicts=True)


def load_graph(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str] | None = None,
               *, include_duplicates: bool = True) -> nx.MultiDiGraph:
    """The persona graph (all of it, or the subgraph induced by ``persona_ids``)."""
    graph = nx.MultiDiGraph()
    for p in fetch_personas(con, persona_ids):
        graph.add_node(p.persona_id, text=p.text, hop=p.hop, source=p.source,
                       source_ref=p.source_ref, attributes=dict(p.attributes))
    if not include_duplicates:
        dups = {r[0] for r in con.execute("SELECT persona_id FROM personas WHERE is_duplicate")}
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

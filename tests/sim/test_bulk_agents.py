"""Bulk Mesa registration and the array-built network give the model one-by-one creation gives."""

import asyncio
import random

import networkx as nx
import numpy as np
import pytest
from mesa.discrete_space import Network

from personahub.personas.graph import SocialEdges
from personahub.personas.record import Persona
from personahub.sim import bulk_agents
from personahub.sim.network import SocialNetwork
from personahub.sim.scenario import Scenario
from personahub.sim.society import SocietyAgent, SocietyModel
from tests.conftest import persona_texts
from tests.fakes import FakeClient


def _personas(n: int) -> list[Persona]:
    return [Persona(text=t) for t in persona_texts(n)]


def _model(personas: list[Persona], graph: nx.Graph | SocialEdges) -> SocietyModel:
    loop = asyncio.new_event_loop()
    return SocietyModel(scenario=Scenario(name="bulk", tasks=("instruction",)), personas=personas,
                        graph=graph, llm=FakeClient(), run_id="r", seed=3,
                        runner=loop.run_until_complete)


def _edges(personas: list[Persona]) -> tuple[nx.Graph, SocialEdges]:
    """A ring with chords as networkx and as the arrays social_edges would give for it."""
    ids = [p.persona_id for p in personas]
    n = len(ids)
    pairs = sorted({(min(ids[i], ids[j]), max(ids[i], ids[j]), f"r{(i * j) % 3}")
                    for i in range(n) for j in (i + 1, i + 3) if j < n}, key=lambda e: e[:2])
    graph = nx.Graph()
    graph.add_nodes_from(ids)
    graph.add_edges_from((a, b, {"relation": r}) for a, b, r in pairs)
    position = {pid: i for i, pid in enumerate(ids)}
    lo = np.array([min(position[a], position[b]) for a, b, _ in pairs], dtype=np.int64)
    hi = np.array([max(position[a], position[b]) for a, b, _ in pairs], dtype=np.int64)
    added = np.arange(len(pairs), dtype=np.int64)
    order = np.lexsort((added, lo))
    edges = SocialEdges(ids=ids, lo=lo[order], hi=hi[order],
                        relation=[pairs[i][2] for i in order.tolist()], added=added[order])
    return graph, edges


def test_arrays_give_the_graph_cells_and_edge_rows_networkx_gives():
    personas = _personas(15)
    graph, edges = _edges(personas)
    assert nx.utils.graphs_equal(edges.to_networkx(), graph)
    assert list(edges.to_networkx().edges(data="relation")) == list(graph.edges(data="relation"))
    assert list(zip(*edges.rows(), strict=True)) == list(graph.edges(data="relation"))
    plain = Network(graph, random=random.Random(0))
    built = SocialNetwork(edges, random=plain.random)
    for pid in graph:
        assert list(built[pid].connections) == list(plain[pid].connections)
        assert all(c is built[k] for k, c in built[pid].connections.items())
    assert built._graph is None  # networkx only once something walks it
    assert nx.utils.graphs_equal(built.G, graph)


@pytest.mark.parametrize("bulk", [True, False])
def test_bulk_registration_equals_creating_agents_one_by_one(monkeypatch, bulk):
    personas = _personas(10)
    graph, edges = _edges(personas)
    reference = _model(personas, graph)
    monkeypatch.setattr(bulk_agents, "supported", lambda model: bulk)
    model = _model(personas, edges)
    assert isinstance(model.network, Network)
    assert [a.unique_id for a in model.agents] == list(range(1, 11))
    assert [a.persona_id for a in model.agents] == [a.persona_id for a in reference.agents]
    assert list(model.agents_by_type) == [SocietyAgent]
    assert len(model.agents_by_type[SocietyAgent]) == 10
    for agent in model.agents:
        assert agent.cell is model.network[agent.persona_id] and agent.cell.agents == [agent]
        assert agent.neighbour_ids() == reference.by_persona[agent.persona_id].neighbour_ids()
        assert agent.pos is None and agent.persona_text == agent.persona.text and not agent.inbox
    with pytest.raises(ValueError, match="Cannot move"):
        model.by_agent_id[1].cell = model.network[model.by_agent_id[2].persona_id]
    assert bulk_agents.next_unique_ids(model, 1) == [11]  # Mesa's own counter went on


def test_cells_make_their_connections_when_first_read():
    personas = _personas(12)
    graph, edges = _edges(personas)
    plain = Network(graph, random=random.Random(0))
    built = SocialNetwork(edges, random=plain.random)
    for pid in graph:
        a, b = built[pid], plain[pid]
        assert (a.coordinate, a.capacity, a.properties, a.agents, a.random) == (
            b.coordinate, b.capacity, b.properties, b.agents, b.random)
    first = built[personas[0].persona_id]
    assert not _has_connections(first)
    assert list(first.connections) == list(plain[personas[0].persona_id].connections)
    assert _has_connections(first)
    other = built[personas[5].persona_id]
    built.add_connection(first, other)  # Mesa's own way of linking cells still works
    assert first.connections[other.coordinate] is other


def _has_connections(cell: object) -> bool:
    from mesa.discrete_space import Cell

    try:
        Cell.connections.__get__(cell)  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return True

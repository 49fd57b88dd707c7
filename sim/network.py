"""A Mesa Network space built from the social graph's arrays, with networkx made on demand.

Mesa connects cells one call per edge end, which dominated setup at a million personas
(bench_scale.py). Here a cell's connections are made when first read; the result equals Mesa's.
"""

from __future__ import annotations

from random import Random
from typing import Any

import networkx as nx
from mesa.discrete_space import Cell, Network
from mesa.discrete_space.discrete_space import DiscreteSpace

from personahub.personas.graph import SocialEdges

_CONNECTIONS: Any = Cell.connections  # the slot a Cell keeps its connections in


class SocialCell(Cell):
    """A Mesa cell whose connections come from the network's arrays when first read."""

    __slots__ = ("_network", "_position")

    @property
    def connections(self) -> dict[object, Cell]:
        """Neighbour cells by persona id, in networkx's adjacency order."""
        try:
            return _CONNECTIONS.__get__(self)
        except AttributeError:
            value = self._network.connections_of(self._position)
            _CONNECTIONS.__set__(self, value)
            return value

    @connections.setter
    def connections(self, value: dict[object, Cell]) -> None:
        _CONNECTIONS.__set__(self, value)


class SocialNetwork(Network):
    """One cell per persona id, connected by the edges; G is built on first use."""

    def __init__(self, edges: SocialEdges, random: Random) -> None:  # noqa: D107
        DiscreteSpace.__init__(self, capacity=None, random=random, cell_klass=Cell)
        self._edges = edges
        self._graph: nx.Graph | None = None
        self._ids = ids = edges.ids
        self._starts, self._targets = edges.neighbours()
        self._cell_list = cells = [self._new_cell(node_id, position)
                                   for position, node_id in enumerate(ids)]
        self._cells = dict(zip(ids, cells, strict=True))

    def _new_cell(self, node_id: str, position: int) -> SocialCell:
        cell = SocialCell.__new__(SocialCell)
        cell.coordinate, cell._agents, cell.capacity = node_id, [], None
        cell.properties, cell.random = {}, self.random
        cell._network, cell._position = self, position
        return cell

    def connections_of(self, position: int) -> dict[object, Cell]:
        """Return the connections of the cell at a position, from the arrays."""
        lo, hi = int(self._starts[position]), int(self._starts[position + 1])
        ids, cells = self._ids, self._cell_list
        return {ids[t]: cells[t] for t in self._targets[lo:hi].tolist()}

    @property
    def G(self) -> nx.Graph:  # noqa: N802 - Mesa's name
        """The graph as networkx, built on first use."""
        if self._graph is None:
            self._graph = self._edges.to_networkx()
        return self._graph

    def _connect_cells(self) -> None:
        """Nothing to do: connections come from the arrays when first read."""


__all__ = ["SocialCell", "SocialNetwork"]

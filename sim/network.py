"""A Mesa ``Network`` space built from the social graph's arrays, with networkx made on demand.

Mesa's ``Network`` wants a networkx graph and connects its cells one ``connect`` call per edge
end; at a million personas the graph alone took 17 s and the cells another 9 s. This subclass
takes ``SocialEdges`` (CSR adjacency), fills each cell's connections in one dict, and builds
``G`` only when something asks for it (a ``near`` audience, an edge intervention). Cells,
connections and ``G`` are what ``Network(social_edges.to_networkx())`` would hold.
"""

from __future__ import annotations

from random import Random

import networkx as nx
from mesa.discrete_space import Cell, Network
from mesa.discrete_space.discrete_space import DiscreteSpace
from personahub.personas.graph import SocialEdges


class SocialNetwork(Network):
    """One cell per persona id, connected as ``edges`` say; ``G`` is built on first use."""

    def __init__(self, edges: SocialEdges, random: Random) -> None:  # noqa: D107
        DiscreteSpace.__init__(self, capacity=None, random=random, cell_klass=Cell)
        self._edges = edges
        self._graph: nx.Graph | None = None
        ids = edges.ids
        cells = [Cell(node_id, None, random=self.random) for node_id in ids]
        self._cells = dict(zip(ids, cells, strict=True))
        starts, targets = edges.neighbours()
        bounds, order = starts.tolist(), targets.tolist()
        for position, cell in enumerate(cells):
            lo, hi = bounds[position], bounds[position + 1]
            if lo != hi:
                cell.connections = {ids[t]: cells[t] for t in order[lo:hi]}

    @property
    def G(self) -> nx.Graph:  # noqa: N802 - Mesa's name
        """The graph as networkx, built from the arrays the first time it is asked for."""
        if self._graph is None:
            self._graph = self._edges.to_networkx()
        return self._graph

    def _connect_cells(self) -> None:
        """Connections come from the arrays (``__init__``), not from walking ``G``."""

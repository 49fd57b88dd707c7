"""Tests for personas.graph.small_world_pairs: the seeded Watts-Strogatz acquaintance links."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personahub.personas.graph import small_world_pairs


def ring(n: int, half: int) -> set[tuple[int, int]]:
    """The ring lattice: each node linked to its ``half`` successors, as (low, high) pairs."""
    return {(min(u, (u + j) % n), max(u, (u + j) % n)) for u in range(n) for j in range(1, half + 1)}


def degrees(pairs: list[tuple[int, int]], n: int) -> list[int]:
    counts = Counter(node for pair in pairs for node in pair)
    return [counts[node] for node in range(n)]


def assert_simple(pairs: list[tuple[int, int]], n: int) -> None:
    """Sorted (u, v) with 0 <= u < v < n, each pair once."""
    assert pairs == sorted(pairs)
    assert len(pairs) == len(set(pairs))
    assert all(isinstance(u, int) and isinstance(v, int) and 0 <= u < v < n for u, v in pairs)


def test_same_seed_same_graph_other_seed_other_graph():
    assert small_world_pairs(1000, 6, 0.3, seed=11) == small_world_pairs(1000, 6, 0.3, seed=11)
    assert small_world_pairs(1000, 6, 0.3, seed=11) != small_world_pairs(1000, 6, 0.3, seed=12)


def test_a_seeded_graph_is_pinned():
    """The stream is PCG64's, the same on every platform: a run's links must not drift."""
    assert small_world_pairs(12, 4, 0.5, seed=7) == [
        (0, 1), (0, 4), (0, 9), (0, 10), (1, 2), (1, 5), (1, 6), (2, 3), (2, 4), (2, 9), (2, 11),
        (3, 5), (3, 6), (3, 10), (4, 6), (4, 8), (5, 6), (5, 7), (5, 11), (6, 8), (6, 9), (7, 8),
        (7, 9), (8, 9)]


@pytest.mark.parametrize("n,k,rewire", [(100, 4, 0.1), (100, 4, 1.0), (1000, 10, 0.5), (7, 4, 1.0),
                                        (20, 5, 0.7), (100_000, 4, 0.1)])
def test_edge_count_degree_sum_and_no_self_loops_or_duplicates(n, k, rewire):
    pairs = small_world_pairs(n, k, rewire, seed=5)
    assert_simple(pairs, n)
    assert len(pairs) == n * (k // 2)
    node_degrees = degrees(pairs, n)
    assert sum(node_degrees) == 2 * n * (k // 2)
    assert min(node_degrees) >= k // 2  # a node keeps its own end of each edge it starts


def test_rewired_share_is_close_to_the_probability_at_scale():
    n, k = 100_000, 4
    lattice = ring(n, k // 2)
    for rewire in (0.1, 0.5):
        pairs = small_world_pairs(n, k, rewire, seed=3)
        share = sum(pair not in lattice for pair in pairs) / len(pairs)
        assert share == pytest.approx(rewire, abs=0.005)  # sd is about 0.001 here


def test_no_rewiring_is_the_exact_ring_lattice():
    assert small_world_pairs(10, 4, 0.0, seed=1) == sorted(ring(10, 2))
    assert small_world_pairs(1001, 6, 0.0, seed=9) == sorted(ring(1001, 3))


@pytest.mark.parametrize("n,k", [(0, 4), (1, 4), (2, 4), (5, 0), (5, 1), (100, 1)])
def test_too_few_nodes_or_neighbours_give_no_edges(n, k):
    assert small_world_pairs(n, k, 0.5, seed=1) == []


def test_k_is_capped_by_the_ring_and_rounded_down_to_even():
    assert small_world_pairs(3, 4, 0.5, seed=1) == [(0, 1), (0, 2), (1, 2)]
    assert small_world_pairs(5, 10, 0.5, seed=1) == sorted(ring(5, 2))  # complete graph
    assert small_world_pairs(6, 10, 0.5, seed=1) == sorted(ring(6, 2))  # k -> n - 1 = 5 -> 4
    assert small_world_pairs(50, 5, 0.0, seed=1) == sorted(ring(50, 2))  # odd k -> k - 1


def test_no_room_to_rewire_keeps_the_lattice():
    """With 2 * (k // 2) >= n - 2 some node has no partner left to move an edge to."""
    assert small_world_pairs(6, 4, 1.0, seed=1) == sorted(ring(6, 2))
    assert small_world_pairs(8, 6, 1.0, seed=1) == sorted(ring(8, 3))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 80), k=st.integers(0, 12), rewire=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_invariants_hold_for_any_small_graph(n, k, rewire, seed):
    pairs = small_world_pairs(n, k, rewire, seed)
    assert pairs == small_world_pairs(n, k, rewire, seed)
    assert_simple(pairs, n)
    if n < 3 or k < 2:
        assert pairs == []
    else:
        half = min(k, n - 1) // 2
        assert len(pairs) == n * half
        assert min(degrees(pairs, n)) >= half
        if rewire == 0 or 2 * half >= n - 2:
            assert pairs == sorted(ring(n, half))

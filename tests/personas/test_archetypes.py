"""Archetypes: seeded k-means over demographics and text (personas/archetypes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from personahub.personas.archetypes import group_archetypes

AGES = ("18-29", "30-49", "50-64", "65+")
REGIONS = ("north", "south")


def _population(n: int) -> tuple[list[str], list[dict[str, str]]]:
    attrs = [{"age": AGES[i % 4], "region": REGIONS[(i // 4) % 2]} for i in range(n)]
    texts = [f"a {a['age']} person from the {a['region']} who keeps bees, number {i}"
             for i, a in enumerate(attrs)]
    return texts, attrs


def test_demographics_only_recovers_the_cells() -> None:
    texts, attrs = _population(400)
    found = group_archetypes(texts, attrs, 8, seed=3, text_weight=0.0)
    assert len(found) == 8
    cells = [(a["age"], a["region"]) for a in attrs]
    for arch in range(len(found)):
        members = found.members(arch)
        assert len({cells[i] for i in members}) == 1  # one demographic cell per archetype
        shares = found.attribute_shares[arch]
        assert shares["age"] == {cells[members[0]][0]: 1.0}
        assert found.labels[found.representatives[arch]] == arch
    assert found.sizes.sum() == 400 and sorted(found.sizes.tolist()) == [50] * 8


def test_seeded_and_numbered_by_first_member() -> None:
    texts, attrs = _population(300)
    a = group_archetypes(texts, attrs, 5, seed=11)
    b = group_archetypes(texts, attrs, 5, seed=11)
    assert np.array_equal(a.labels, b.labels) and a.representatives == b.representatives
    first = [int(np.flatnonzero(a.labels == x)[0]) for x in range(len(a))]
    assert first == sorted(first) and a.labels[0] == 0


def test_shares_describe_members() -> None:
    texts, attrs = _population(200)
    found = group_archetypes(texts, attrs, 3, seed=0)
    for arch in range(len(found)):
        members = found.members(arch)
        north = sum(attrs[i]["region"] == "north" for i in members) / len(members)
        assert found.attribute_shares[arch]["region"].get("north", 0.0) == pytest.approx(north)
        assert sum(found.attribute_shares[arch]["age"].values()) == pytest.approx(1.0)


def test_fit_sample_assigns_everyone() -> None:
    texts, attrs = _population(1000)
    found = group_archetypes(texts, attrs, 8, seed=2, text_weight=0.0, fit_sample=100)
    assert found.labels.shape == (1000,) and found.sizes.sum() == 1000
    assert found.labels.min() == 0 and found.labels.max() == len(found) - 1


@pytest.mark.parametrize("k", [0, 11])
def test_k_out_of_range(k: int) -> None:
    texts, attrs = _population(10)
    with pytest.raises(ValueError, match="between 1 and the population"):
        group_archetypes(texts, attrs, k, seed=0)


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="3 texts but 2"):
        group_archetypes(["a", "b", "c"], [{}, {}], 1, seed=0)

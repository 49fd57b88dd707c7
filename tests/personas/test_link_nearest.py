"""The embedding pool that proposes link candidates from the whole expansion."""

import numpy as np
import pytest

from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.personas.embedding import HashEmbedder
from personahub.personas.link_nearest import NearestPool, load_pool, pool_embedder
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from personahub.personas.writing_systems import LATIN

PEOPLE = [("a", "a nurse in Lisbon who plays chess"), ("b", "a nurse in Porto who plays chess"),
          ("c", "a welder in Oslo who keeps bees"), ("d", "a baker in Lima who sings opera")]


def test_nearest_ranks_by_cosine_and_skips_excluded():
    pool = NearestPool(HashEmbedder())
    pool.add(PEOPLE)
    [near] = pool.nearest(["a nurse in Lisbon who plays chess"], 2, [set()])
    assert [pid for pid, _ in near] == ["a", "b"]
    assert near[0][1] == pytest.approx(1.0) and near[0][1] > near[1][1]
    [near] = pool.nearest(["a nurse in Lisbon who plays chess"], 2, [{"a"}])
    assert near[0][0] == "b" and "a" not in [pid for pid, _ in near]


def test_the_answer_does_not_depend_on_the_order_people_were_added():
    """A resumed expansion reloads the pool in another order than it grew; ties go by id."""
    forward, backward = NearestPool(HashEmbedder()), NearestPool(HashEmbedder())
    forward.add(PEOPLE)
    backward.add(PEOPLE[::-1])
    twins = [("x2", "the same words"), ("x1", "the same words")]
    forward.add(twins)
    backward.add(twins[::-1])
    queries = ["the same words", "a baker in Lima who plays chess"]
    assert forward.nearest(queries, 3, [set(), set()]) == backward.nearest(queries, 3, [set(), set()])
    assert [pid for pid, _ in forward.nearest(["the same words"], 1, [set()])[0]] == ["x1"]


class _EnglishOnly(HashEmbedder):
    scripts = LATIN


def test_an_english_only_embedder_proposes_nobody_for_other_scripts():
    pool = NearestPool(_EnglishOnly())
    pool.add([*PEOPLE, ("zh", "一位在上海下棋的护士")])
    assert len(pool) == len(PEOPLE)  # the Chinese persona is not in the pool
    assert pool.nearest(["一位在北京下棋的护士"], 3, [set()]) == [[]]


def test_only_offline_embedders_make_a_pool():
    assert pool_embedder("hash").name.startswith("hash")
    with pytest.raises(PersonahubError, match="--link-embedder 'openai:text-embedding-3-small'"):
        pool_embedder("openai:text-embedding-3-small")


def test_load_pool_reads_hub_texts(tmp_path):
    con = connect(tmp_path / "hub.duckdb")
    people = [Persona(text=t, source="test") for _, t in PEOPLE]
    upsert_personas(con, people)
    pool = load_pool(con, HashEmbedder(), [p.persona_id for p in people[:2]] + ["missing"])
    assert len(pool) == 2
    [near] = pool.nearest([PEOPLE[1][1]], 1, [set()])
    assert near[0][0] == people[1].persona_id and np.isclose(near[0][1], 1.0)

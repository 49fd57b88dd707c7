"""The expansion's near-duplicate index with the hub on disk flags what the in-memory index over
the same hub flags, call by call, for texts of the hub, new ones and the copies among them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from personahub.core.store import connect
from personahub.personas.hub_near_index import HubNearIndex
from personahub.personas.near_dup import NearDuplicateIndex
from personahub.personas.record import Persona
from personahub.personas.store import live_persona_ids, upsert_personas
from tests._planted import planted_corpus


@pytest.mark.slow
def test_flags_equal_the_in_memory_index(tmp_path: Path) -> None:
    corpus = planted_corpus(120, 60, length=(12, 30), seed=6)
    con = connect(tmp_path / "hub.duckdb")
    people = [Persona(text=t, source="test") for t in corpus.texts[:100]]
    upsert_personas(con, people)
    con.execute("UPDATE personas SET is_duplicate = true WHERE seq % 17 = 3")  # not indexed
    hub = [(p.persona_id, p.text) for p in people]
    live = set(live_persona_ids(con))
    memory = NearDuplicateIndex(threshold=0.9)
    memory.add_many([(pid, text) for pid, text in hub if pid in live])
    disk = HubNearIndex(con, tmp_path / "index", chunk_rows=16)
    assert len(disk) == len(memory)
    rng = random.Random(2)
    arriving = [(f"new-{i}", t) for i, t in enumerate(corpus.texts[100:])]
    arriving += [(f"again-{i}", text) for i, (_, text) in enumerate(rng.sample(hub, 20))]
    arriving += [("empty", "..."), ("merged", corpus.texts[150])]
    rng.shuffle(arriving)
    memory.add_many(arriving[:3])
    disk.add_many(arriving[:3])
    flagged = 0
    for start in range(3, len(arriving), 7):
        batch = arriving[start:start + 7]
        want = memory.check_and_add_many(batch)
        assert disk.check_and_add_many(batch) == want
        flagged += sum(flag is not None for flag in want)
    assert flagged >= 20
    disk.close()
    assert not (tmp_path / "index").exists()
    con.close()

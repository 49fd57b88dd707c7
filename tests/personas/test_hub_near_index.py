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


def test_survivor_ranges_are_survivor_batches_without_a_sort_of_the_hub(tmp_path: Path) -> None:
    """The live personas a range of seq at a time are the ones the hub's ORDER BY streams, in
    the same order, and no batch passes its size."""
    from personahub.personas.store import survivor_batches, survivor_ranges

    con = connect(tmp_path / "hub.duckdb")
    upsert_personas(con, [Persona(text=f"person {i} of the hub, {i * 7} words", source="test")
                          for i in range(500)])
    con.execute("UPDATE personas SET is_duplicate = true WHERE seq % 11 = 4")
    sorted_ = list(survivor_batches(con, 1000))
    ranged = list(survivor_ranges(con, 37))
    assert [pid for ids, _ in ranged for pid in ids] == sorted_[0][0]
    assert [t for _, texts in ranged for t in texts] == sorted_[0][1]
    assert max(len(ids) for ids, _ in ranged) <= 37 and len(ranged) > 10
    con.close()


def test_the_index_reads_the_hub_in_ranges_within_a_memory_share(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """The build streams the hub in ranges of seq (one ORDER BY over the hub held its texts in
    DuckDB's memory, growing with the hub) with DuckDB held to a small share, restored after."""
    import personahub.personas.hub_near_index as near
    from personahub.personas import store

    con = connect(tmp_path / "hub.duckdb")
    upsert_personas(con, [Persona(text=f"person {i} of the hub, {i * 7} words", source="test")
                          for i in range(50)])
    con.execute("SET memory_limit = '1GiB'")
    limits: list[str] = []
    ranges = store.survivor_ranges

    def watched(*args: object) -> object:
        limits.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return ranges(*args)  # type: ignore[arg-type]

    def refused(*args: object) -> object:
        raise AssertionError("the index sorted the whole hub")

    monkeypatch.setattr(store, "survivor_batches", refused)
    monkeypatch.setattr(store, "survivor_ranges", watched)
    for name in ("survivor_batches", "survivor_ranges"):
        if hasattr(near, name):
            monkeypatch.setattr(near, name, getattr(store, name))
    index = near.HubNearIndex(con, tmp_path / "index", chunk_rows=8)
    assert len(index) == 50 and limits and limits[0].startswith("64")
    assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == "1.0 GiB"
    index.close()
    con.close()

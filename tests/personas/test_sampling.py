"""Seeded hub samples in SQL (personas/sampling.py): uniform, stable, carve-able, one-line errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest

from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.personas.record import Persona
from personahub.personas.sampling import HubQuery, draw, draw_ids
from personahub.personas.store import upsert_personas

JOBS = ["nurse", "baker", "welder", "teacher"]


def people(n: int = 60) -> list[Persona]:
    return [Persona(text=f"Person {i}, a {JOBS[i % 4]} aged {20 + i}.", source="test",
                    attributes={"age": 20 + i, "occupation": JOBS[i % 4]}) for i in range(n)]


def hub_of(path: Path, personas: list[Persona]) -> duckdb.DuckDBPyConnection:
    con = connect(path)
    upsert_personas(con, personas)
    return con


@pytest.fixture
def hub(tmp_path: Path):
    con = hub_of(tmp_path / "hub.duckdb", people())
    yield con
    con.close()


def head(con: duckdb.DuckDBPyConnection, n: int) -> list[str]:
    return [r[0] for r in con.execute("SELECT persona_id FROM personas ORDER BY seq LIMIT ?",
                                      [n]).fetchall()]


def test_uniform_sample_is_seeded_not_head_of_hub(hub) -> None:
    first = draw_ids(hub, HubQuery(), 10, seed=0)
    assert len(first) == len(set(first)) == 10
    assert first != head(hub, 10) and set(first) != set(head(hub, 10))
    assert draw_ids(hub, HubQuery(), 10, seed=0) == first  # stable
    assert set(draw_ids(hub, HubQuery(), 10, seed=1)) != set(first)  # another seed, another sample
    assert draw_ids(hub, HubQuery(), 4, seed=0) == first[:4]  # a smaller sample is its head
    assert draw_ids(hub, HubQuery(), 10, mode="head") == head(hub, 10)
    assert [p.persona_id for p in draw(hub, HubQuery(), 10, seed=0)] == first  # key order kept


def test_sample_depends_on_the_personas_not_their_import_order(hub, tmp_path: Path) -> None:
    other = hub_of(tmp_path / "reversed.duckdb", people()[::-1])
    try:
        assert draw_ids(other, HubQuery(), 10, seed=5) == draw_ids(hub, HubQuery(), 10, seed=5)
    finally:
        other.close()


@pytest.mark.slow
def test_every_persona_can_be_drawn(hub) -> None:
    """Rough uniformity: over 600 seeds each of the 60 personas is drawn first a few times."""
    counts = Counter(draw_ids(hub, HubQuery(), 1, seed=s)[0] for s in range(600))
    assert len(counts) == 60 and max(counts.values()) < 30


def test_carve_and_sql_conditions_combine_and_skip_duplicates(hub) -> None:
    nurses = draw_ids(hub, HubQuery(carve=("occupation=nurse", "age>=40")), None)
    expected = {p.persona_id for p in people() if p.attributes["occupation"] == "nurse"
                and p.attributes["age"] >= 40}
    assert set(nurses) == expected
    both = draw_ids(hub, HubQuery(where="text ILIKE '%aged 6%'", carve=("occupation~nur",)), None)
    assert both and set(both) < expected
    hub.execute("UPDATE personas SET is_duplicate = true WHERE persona_id = ?", [nurses[0]])
    assert nurses[0] not in draw_ids(hub, HubQuery(carve=("occupation=nurse",)), None)


@pytest.mark.parametrize("query, fragment", [
    (HubQuery(carve=("age",)), r"--carve 'age': expected KEY OP VALUE"),
    (HubQuery(carve=("age>30", "text~[")), r"--carve 'text~\[': .*missing \]"),
    (HubQuery(where="nosuch = 1"), r"--personas 'nosuch = 1': Binder Error"),
    (HubQuery(where="1=1; DROP TABLE personas"), "--personas: give one WHERE condition"),
    (HubQuery(carve=("occupation=astronaut",)), r"--carve 'occupation=astronaut': no personas match"),
    (HubQuery(carve=("age>1",), carve_label="personas.carve"), None),
])
def test_bad_queries_are_one_line_errors_naming_the_part(hub, query: HubQuery, fragment) -> None:
    if fragment is None:
        assert len(draw_ids(hub, query, 3)) == 3
        return
    with pytest.raises(PersonahubError, match=fragment) as info:
        draw_ids(hub, query, 3)
    assert "\n" not in str(info.value)
    assert hub.execute("SELECT count(*) FROM personas").fetchall()[0][0] == 60


def test_an_empty_hub_is_an_error(tmp_path: Path) -> None:
    con = connect(tmp_path / "empty.duckdb")
    try:
        with pytest.raises(PersonahubError, match="no personas"):
            draw_ids(con, HubQuery(), 3)
    finally:
        con.close()


def test_a_draw_with_conditions_reads_the_hub_in_batches_never_whole(hub, monkeypatch) -> None:
    """With a condition, the draw streams the hub through the sandbox a few rows at a time and
    picks what one ORDER BY over the whole hub picks: seeded, head, every match, more than match."""
    from personahub.personas import sampling, selection_sandbox

    query = HubQuery(where="CAST(attributes->>'age' AS INT) >= 30", carve=["occupation!=baker"])
    matched = [r[0] for r in hub.execute(
        "SELECT persona_id FROM personas WHERE CAST(attributes->>'age' AS INT) >= 30 "
        "AND attributes->>'occupation' <> 'baker' ORDER BY seq").fetchall()]

    def ordered(seed: int) -> list[str]:
        return [r[0] for r in hub.execute(
            "SELECT persona_id FROM personas WHERE persona_id IN (SELECT unnest(?)) "
            "ORDER BY md5(? || ':' || persona_id), persona_id", [matched, str(seed)]).fetchall()]

    def whole(*args, **kwargs):
        raise AssertionError("the whole hub was copied into the sandbox")

    monkeypatch.setattr(selection_sandbox, "personas_arrow", whole)
    monkeypatch.setattr(selection_sandbox, "BATCH_ROWS", 7)
    assert 12 < len(matched) < 60
    for seed in (0, 3):
        assert draw_ids(hub, query, 10, seed=seed) == ordered(seed)[:10]
        assert draw_ids(hub, query, None, seed=seed) == ordered(seed)
        assert draw_ids(hub, query, 100, seed=seed) == ordered(seed)
    assert draw_ids(hub, query, 5, mode="head") == matched[:5]
    assert draw_ids(hub, query, None, mode="head") == matched
    assert sampling.matching_ids(hub, query) == matched
    with pytest.raises(PersonahubError, match="no personas match"):
        draw_ids(hub, HubQuery(carve=["occupation=pilot"]), 3)

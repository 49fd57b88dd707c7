import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from personahub.cli.app import app
from personahub.core.store import connect
from personahub.personas.carve import (
    Condition,
    Selection,
    carve,
    neighbourhood,
    sample_ids,
    select_ids,
    shortfall,
)
from personahub.personas.graph import Relation, save_relations
from personahub.personas.importers import iter_personas
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from tests.cli_helpers import usage_error

JOBS = ["nurse", "baker", "welder", "Nurse", "teacher"]


def people(n=40):
    return [Persona(text=f"Person {i}, a {JOBS[i % 5].lower()} who likes topic {i % 7}.", source="test",
                    hop=i % 3, attributes={"age": 20 + i, "occupation": JOBS[i % 5],
                                           "labels": ["Finance", "art"] if i % 4 == 0 else ["sport"]})
            for i in range(n)]


@pytest.fixture
def hub(tmp_path):
    con = connect(tmp_path / "carve.duckdb")
    ps = people()
    upsert_personas(con, ps)
    ids = [p.persona_id for p in ps]
    # a chain 0 - 1 - 2 - 3 and a branch 1 <- 5; persona 4 is flagged as a duplicate of 0
    save_relations(con, [Relation(ids[0], ids[1], "colleague", 1), Relation(ids[1], ids[2], "friend", 2),
                         Relation(ids[2], ids[3], "supplier", 3), Relation(ids[5], ids[1], "mentor", 1)])
    con.execute("update personas set is_duplicate = true, duplicate_of = ? where persona_id = ?",
                [ids[0], ids[4]])
    yield con, ids, tmp_path / "carve.duckdb"
    con.close()


def test_attribute_conditions(hub):
    con, ids, _ = hub
    older = select_ids(con, Selection(where=["age>=50"]))
    assert older == [i for n, i in enumerate(ids) if 20 + n >= 50]
    nurses = select_ids(con, Selection(where=["occupation=nurse"]))
    assert nurses == [i for n, i in enumerate(ids) if n % 5 in (0, 3) and n != 4]  # case-insensitive
    both = select_ids(con, Selection(where=["occupation = nurse", "age<30"]))
    assert both == [ids[0], ids[3], ids[5], ids[8]]
    assert select_ids(con, Selection(where=["labels=finance"])) == [i for n, i in enumerate(ids) if n % 4 == 0
                                                                    and n != 4]
    assert len(select_ids(con, Selection(where=["occupation!=nurse"]))) == 39 - len(nurses)
    assert select_ids(con, Selection(where=["hop=2", "age<=25"])) == [ids[2], ids[5]]
    assert select_ids(con, Selection(where=["occupation~^(we|ba)"])) == [i for n, i in enumerate(ids)
                                                                         if n % 5 in (1, 2)]
    assert select_ids(con, Selection(where=["missing=x"])) == []
    with pytest.raises(ValueError, match="KEY OP VALUE"):
        Condition.parse("age")


def test_text_match_and_duplicates(hub):
    con, ids, _ = hub
    assert select_ids(con, Selection(contains="TOPIC 6")) == [i for n, i in enumerate(ids) if n % 7 == 6]
    assert select_ids(con, Selection(regex=r"Person 1\d,")) == ids[10:20]
    assert select_ids(con, Selection(ilike="person 3_,%")) == ids[30:40]
    assert ids[4] not in select_ids(con)
    assert ids[4] in select_ids(con, Selection(include_duplicates=True))
    with pytest.raises(ValueError, match="selection failed"):
        select_ids(con, Selection(regex="("))


def test_neighbourhood(hub):
    con, ids, _ = hub
    assert neighbourhood(con, ids[0], 0) == {ids[0]}
    assert neighbourhood(con, ids[0], 1) == {ids[0], ids[1]}
    assert neighbourhood(con, ids[0], 2) == {ids[0], ids[1], ids[2], ids[5]}  # edges in both directions
    assert set(select_ids(con, Selection(near=ids[3], within=6))) == {ids[0], ids[1], ids[2], ids[3], ids[5]}
    assert select_ids(con, Selection(near=ids[1], within=1, where=["age>21"])) == [ids[2], ids[5]]


def test_sampling_is_seeded_uniform_and_stratified(hub):
    con, ids, _ = hub
    pool = select_ids(con)
    a = sample_ids(con, pool, 10, seed=1)
    assert a == sample_ids(con, pool, 10, seed=1) and a != sample_ids(con, pool, 10, seed=2)
    assert len(a) == 10 and a == [i for i in pool if i in set(a)]  # hub order
    assert sample_ids(con, pool, None) == pool and sample_ids(con, pool, 100) == pool
    strat = carve(con, k=13, seed=3, stratify="occupation")
    counts = Counter(p.attributes["occupation"] for p in strat)
    # proportional: 39 personas = Nurse 8, baker 8, nurse 7, teacher 8, welder 8 -> 13 split ~ 1/3 each
    assert sum(counts.values()) == 13 and all(2 <= c <= 3 for c in counts.values())
    equal = carve(con, k=10, seed=3, stratify="occupation", equal=True)
    assert set(Counter(p.attributes["occupation"] for p in equal).values()) == {2}
    hops = Counter(p.hop for p in carve(con, k=9, seed=0, stratify="hop"))
    assert hops == {0: 3, 1: 3, 2: 3}


def test_cli_sample_writes_reimportable_jsonl(hub, tmp_path):
    con, ids, db = hub
    con.close()
    out = tmp_path / "sample.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["personas", "sample", "--db", str(db), "-w", "age>=30", "-k", "5",
                                 "--seed", "4", "--stratify", "occupation", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 5 and all(set(line) == {"persona"} for line in lines)
    assert len(list(iter_personas(out))) == 5  # re-importable (PersonaSource(path=...) reads it)
    ids_out = runner.invoke(app, ["personas", "sample", "--db", str(db), "--near", ids[0], "--within", "1",
                                  "--format", "ids"])
    assert ids_out.exit_code == 0 and ids_out.stdout.split() == [ids[0], ids[1]]
    table = runner.invoke(app, ["personas", "sample", "--db", str(db), "--contains", "topic 3", "-k", "2"])
    assert table.exit_code == 0 and "2 personas" in table.output
    attrs = runner.invoke(app, ["personas", "sample", "--db", str(db), "-k", "1", "--format", "jsonl",
                                "--with-attributes"])
    assert "occupation" in json.loads(attrs.stdout)
    bad = runner.invoke(app, ["personas", "sample", "--db", str(db), "-w", "age"])
    assert bad.exit_code == 2 and "KEY OP VALUE" in bad.output  # a usage error (docs/cli.md)
    # a typo in --stratify is refused, naming the attributes the hub has (it sampled unstratified)
    typo = usage_error(runner.invoke(app, ["personas", "sample", "--db", str(db), "-k", "2",
                                           "--stratify", "occupaton"]))
    assert typo.startswith("error: --stratify 'occupaton': no persona has that attribute; known: ")
    assert "age" in typo and "occupation" in typo and "persona_id" in typo


def draws_agree(con, selections, ks, strata, seeds) -> None:
    from personahub.personas.carve import sample_selection

    for selection in selections:
        pool = select_ids(con, selection)
        for k in ks:
            for stratify, equal in strata:
                for seed in seeds:
                    want = sample_ids(con, pool, k, seed=seed, stratify=stratify, equal=equal)
                    got = sample_selection(con, selection, k, seed=seed, stratify=stratify,
                                           equal=equal)
                    assert got == want, (selection, k, stratify, equal, seed)


def test_drawn_from_the_store_in_batches_as_from_every_id_in_memory(hub, monkeypatch):
    """The two-pass draw over batches of the hub picks what sample_ids picks from the whole list
    of matches, uniform and stratified (a missing value its own stratum)."""
    from personahub.personas import selection_sandbox

    con, ids, _ = hub
    con.execute("UPDATE personas SET attributes = '{}' WHERE seq % 6 = 0")
    monkeypatch.setattr(selection_sandbox, "BATCH_ROWS", 7)
    draws_agree(con, [Selection(where=["age>=25"])], (3, 100), ((None, False), ("occupation", False)),
                (1,))


@pytest.mark.slow
def test_drawn_from_the_store_whatever_the_selection_and_batch(hub, monkeypatch):
    """Conditions, duplicates, a neighbourhood and text; proportional and equal strata, a column
    stratum; k of none, all and some; batches of 3 rows and of all of them, each under its own seed."""
    from personahub.personas import selection_sandbox

    con, ids, _ = hub
    con.execute("UPDATE personas SET attributes = '{}' WHERE seq % 6 = 0")
    selections = [Selection(), Selection(include_duplicates=True),
                  Selection(near=ids[1], within=2), Selection(contains="likes topic 3")]
    for rows, seed in ((3, 0), (1000, 7)):  # a seed per batch size: each draw is a whole pass
        monkeypatch.setattr(selection_sandbox, "BATCH_ROWS", rows)
        draws_agree(con, selections, (0, 1, 10, None), ((None, False), ("occupation", True),
                                                        ("hop", False)), (seed,))


@pytest.mark.slow
def test_drawn_in_hub_order_across_gaps_in_seq_and_a_row_without_one(hub, monkeypatch):
    """The hub is streamed in ranges of seq: a gap wider than a range, and a row without a seq
    (last, where ORDER BY seq puts it), draw as from the list of every match."""
    from personahub.personas import selection_sandbox
    from personahub.personas.store import personas_arrow_batches

    con, ids, _ = hub
    con.execute("UPDATE personas SET seq = seq + 1000 WHERE persona_id IN (SELECT unnest(?))",
                [ids[20:]])
    con.execute("UPDATE personas SET seq = NULL WHERE persona_id = ?", [ids[7]])
    streamed = [pid for batch in personas_arrow_batches(con, ["persona_id"], 4)
                for pid in batch.column(0).to_pylist()]
    in_order = [r[0] for r in con.execute("SELECT persona_id FROM personas ORDER BY seq").fetchall()]
    assert streamed == in_order and streamed[-1] == ids[7]
    monkeypatch.setattr(selection_sandbox, "BATCH_ROWS", 4)
    draws_agree(con, [Selection(), Selection(where=["age>=25"])], (3, 30),
                ((None, False), ("occupation", False)), (2,))


@pytest.mark.slow
def test_a_draw_holds_a_range_of_the_hub_not_the_hub_sorted_whole(tmp_path, monkeypatch):
    """DuckDB held to a few MiB with nowhere to spill: sorting the whole hub in hub order would
    not fit, the draw's ranges of seq do."""
    from personahub.personas import selection_sandbox
    from personahub.personas.carve import sample_selection

    con = connect(tmp_path / "big.duckdb")
    con.execute("INSERT INTO personas (persona_id, seq, text, source, gate) SELECT md5(i::VARCHAR), "
                "i, 'person ' || i, 'file', 'passed' FROM range(300000) t(i)")
    con.close()
    con = connect(tmp_path / "big.duckdb", read_only=True)
    try:
        con.execute("SET memory_limit = '16MB'")
        con.execute("SET temp_directory = ''")  # nowhere to spill: what is held must fit
        monkeypatch.setattr(selection_sandbox, "BATCH_ROWS", 5000)
        drawn = sample_selection(con, Selection(), 10, seed=1)
        stratified = sample_selection(con, Selection(), 10, seed=1, stratify="source")
    finally:
        con.close()
    assert len(drawn) == 10 and drawn == stratified  # one stratum draws as the uniform draw
    con = connect(tmp_path / "big.duckdb", read_only=True)
    try:
        assert drawn == sample_ids(con, select_ids(con), 10, seed=1)
    finally:
        con.close()


def test_cli_sample_holds_duckdb_to_the_sample_bound(hub, monkeypatch):
    """The sample command draws with DuckDB held to its own small pool, not the default's share
    of the machine nor stats' larger one."""
    from personahub.personas import carve as carving
    from personahub.personas.hub_memory import HUB_MEMORY_MB, SAMPLE_MEMORY_MB

    con, ids, db = hub
    con.close()
    limits: list[str] = []
    original = carving.carve

    def watched(con, *args, **kwargs):
        limits.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return original(con, *args, **kwargs)

    monkeypatch.setattr(carving, "carve", watched)
    result = CliRunner().invoke(app, ["personas", "sample", "--db", str(db), "-k", "3",
                                      "--format", "ids"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 3
    assert limits == [f"{SAMPLE_MEMORY_MB:.1f} MiB"] and SAMPLE_MEMORY_MB < HUB_MEMORY_MB


def test_a_selection_reads_the_hub_in_batches_never_whole(hub, monkeypatch):
    """Every match (k of none or past the matches) and the shortfall's counts come from batches
    of the hub: the whole hub is never copied into one table."""
    from personahub.personas import selection_sandbox

    con, ids, _ = hub
    want = [r[0] for r in con.execute(
        "SELECT persona_id FROM personas WHERE NOT is_duplicate "
        "AND CAST(attributes->>'age' AS INT) >= 50 ORDER BY seq").fetchall()]

    def whole(*args, **kwargs):
        raise AssertionError("the whole hub was loaded")

    monkeypatch.setattr(selection_sandbox, "personas_arrow", whole)
    monkeypatch.setattr(selection_sandbox, "BATCH_ROWS", 6)
    selection = Selection(where=["age>=50"])
    assert select_ids(con, selection) == want and len(want) == 10
    assert [p.persona_id for p in carve(con, selection, k=20, seed=1)] == want
    assert "1 more match but are flagged" in (shortfall(con, Selection(where=["age>=20"]), 50, 39)
                                              or "")

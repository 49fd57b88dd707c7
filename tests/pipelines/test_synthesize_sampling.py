"""Which personas a synthesis job asks: a seeded uniform sample, carve selections, and a resume
that asks the same personas even after the hub grew."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from personahub.api import run_synthesis
from personahub.core.errors import PersonahubError
from personahub.core.store import connect, transaction
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from personahub.pipelines import synthesize
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke, one_line_error, usage_error


def hub(db: Path, n: int = 40, start: int = 0) -> None:
    con = connect(db)
    try:
        with transaction(con):
            upsert_personas(con, [Persona(text=f"Person {i}, a {'nurse' if i % 2 else 'baker'} of "
                                          f"{20 + i} who runs the market stall number {i}.",
                                          source="test", attributes={"age": 20 + i})
                                  for i in range(start, start + n)])
    finally:
        con.close()


def rows(db: Path, sql: str, params: list | None = None) -> list:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def asked(db: Path, job_id: str) -> set[str]:
    return {r[0] for r in rows(db, "SELECT persona_id FROM synth_items WHERE job_id = ?", [job_id])}


@pytest.mark.slow
def test_n_is_a_seeded_uniform_sample(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    hub(db)
    first_five = {r[0] for r in rows(db, "SELECT persona_id FROM personas ORDER BY seq LIMIT 5")}
    a = run_synthesis(SynthConfig(task="instruction", n=5, seed=3, db=str(db)))
    b = run_synthesis(SynthConfig(task="instruction", n=5, seed=3, db=str(db)), fresh=True)
    c = run_synthesis(SynthConfig(task="instruction", n=5, seed=4, db=str(db)))
    assert len(asked(db, a.job_id)) == 5 and asked(db, a.job_id) != first_five
    assert asked(db, a.job_id) == asked(db, b.job_id)  # same seed, same hub
    assert asked(db, a.job_id) != asked(db, c.job_id)
    stored = [r[0] for r in rows(db, "SELECT persona_id FROM synth_job_personas WHERE job_id = ? "
                                     "ORDER BY position", [a.job_id])]
    assert set(stored) == asked(db, a.job_id) and len(stored) == 5
    head = run_synthesis(SynthConfig(task="instruction", n=5, sample="head", db=str(db)))
    assert asked(db, head.job_id) == first_five  # the old order, on request


@pytest.mark.slow
def test_resume_asks_the_drawn_personas_after_the_hub_grew(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "s.duckdb"
    hub(db)
    real = synthesize.SynthesisSpec.commit
    calls = {"n": 0}

    def flaky(self, ctx, batch, result):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(self, ctx, batch, result)

    monkeypatch.setattr(synthesize.SynthesisSpec, "commit", flaky)
    with pytest.raises(PersonahubError, match="--resume"):
        run_synthesis(SynthConfig(task="instruction", n=8, batch_size=3, seed=9, db=str(db)))
    monkeypatch.setattr(synthesize.SynthesisSpec, "commit", real)
    job_id = rows(db, "SELECT job_id FROM synth_jobs")[0][0]
    drawn = [r[0] for r in rows(db, "SELECT persona_id FROM synth_job_personas WHERE job_id = ? "
                                    "ORDER BY position", [job_id])]
    hub(db, n=400, start=1000)  # many new personas: a fresh draw would take some of them
    fresh = run_synthesis(SynthConfig(task="instruction", n=8, seed=9, db=str(db)), fresh=True)
    assert asked(db, fresh.job_id) != set(drawn)
    resumed = run_synthesis(SynthConfig(task="instruction", db=str(db)), resume=job_id)
    assert resumed.skipped_done == 3 and resumed.written == 5
    assert asked(db, job_id) == set(drawn)


def test_carve_selects_and_is_part_of_the_job(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    hub(db)
    summary = run_synthesis(SynthConfig(task="instruction", n=100, carve=("age>=50",),
                                         db=str(db)))
    assert summary.written == 10
    assert all(r[0] >= 50 for r in rows(
        db, "SELECT CAST(json_extract_string(p.attributes, '$.age') AS INT) FROM synth_items i "
            "JOIN personas p USING (persona_id) WHERE i.job_id = ?", [summary.job_id]))
    other = run_synthesis(SynthConfig(task="instruction", n=100, carve=("age>=50",),
                                       where="text ILIKE '%nurse%'", db=str(db)))
    assert other.written == 5


def test_cli_carve_errors_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    hub(db)
    line = usage_error(invoke("synthesize", "tool_spec", "--db", db, "--carve", "age>30",
                              "--carve", "age"))  # a flag's value that does not parse: exit 2
    assert "--carve 'age': expected KEY OP VALUE" in line
    line = one_line_error(invoke("synthesize", "tool_spec", "--db", db, "--carve", "age>900"))
    assert "--carve 'age>900': no personas match" in line
    line = usage_error(invoke("synthesize", "tool_spec", "--db", db, "--sample", "first"))
    assert "--sample 'first'" in line
    ok = invoke("synthesize", "tool_spec", "--db", db, "--n", "2", "--carve", "age<25")
    assert ok.exit_code == 0, ok.output
    assert rows(db, "SELECT count(*) FROM synth_items")[0][0] == 2

"""``personas sample-population --llm``: the people drawn as without a model, each one's text
written by the model (one checked call per person) as a kernel job that resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub import runtime
from personahub.core.interrupts import Stopped
from personahub.core.kernel import BatchOutcome
from personahub.pipelines import population_write
from personahub.pipelines.population_write import POPULATION_WRITE, WriteConfig
from tests.cli_helpers import invoke, usage_error
from tests.pipelines.calibrate_fixtures import MARGINALS


def people(db: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT persona_id, text, attributes FROM personas ORDER BY ALL"
                           ).fetchall()
    finally:
        con.close()


def test_a_model_writes_the_drawn_people(tmp_path: Path) -> None:
    marginals = tmp_path / "m.csv"
    marginals.write_text(MARGINALS, encoding="utf-8")
    template_db, model_db = tmp_path / "t.duckdb", tmp_path / "m.duckdb"
    assert invoke("personas", "sample-population", "--marginals", marginals, "--n", 12,
                  "--db", template_db).exit_code == 0
    result = invoke("personas", "sample-population", "--marginals", marginals, "--n", 12,
                    "--db", model_db, "--llm", "offline")
    assert result.exit_code == 0, result.output
    assert "12 of 12 people written by offline" in result.stdout
    keys = ("sex", "party")
    drawn = sorted(tuple(json.loads(a)[k] for k in keys) for _, _, a in people(template_db))
    written = people(model_db)
    assert sorted(tuple(json.loads(a)[k] for k in keys) for _, _, a in written) == drawn
    assert all(json.loads(a)["text_origin"] == "model" and text for _, text, a in written)
    assert "--out" in usage_error(invoke("personas", "sample-population", "--marginals", marginals,
                                         "--llm", "offline", "--out", tmp_path / "p.jsonl"))


@pytest.mark.parametrize("how", [["resume"], ["personas", "sample-population", "--resume"]],
                         ids=["resume ID", "sample-population --resume"])
def test_an_interrupted_population_job_resumes_to_the_same_people(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: list[str]) -> None:
    marginals = tmp_path / "m.csv"
    marginals.write_text(MARGINALS, encoding="utf-8")
    config = WriteConfig(marginals=str(marginals), n=10, seed=5, batch_size=3)
    whole_db, cut_db = tmp_path / "whole.duckdb", tmp_path / "cut.duckdb"
    runtime.run(POPULATION_WRITE, config, whole_db)
    real, seen = population_write.WriteSpec.commit, []

    def stops(self: Any, ctx: Any, batch: Any, result: Any) -> BatchOutcome:
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, ctx, batch, result)

    monkeypatch.setattr(population_write.WriteSpec, "commit", stops)
    with pytest.raises(Stopped):
        runtime.run(POPULATION_WRITE, config, cut_db)
    monkeypatch.setattr(population_write.WriteSpec, "commit", real)
    assert len(people(cut_db)) == 3
    con = duckdb.connect(str(cut_db), read_only=True)
    (job_id,) = [r[0] for r in con.execute("SELECT job_id FROM jobs").fetchall()]
    con.close()
    resumed = invoke(*how, job_id, "--db", cut_db)
    assert resumed.exit_code == 0, resumed.output
    # the same people with the same texts; the population id names the job (its last 6 hex)
    strip = [(t, {k: v for k, v in json.loads(a).items() if k != "population"})
             for _, t, a in people(cut_db)]
    whole = [(t, {k: v for k, v in json.loads(a).items() if k != "population"})
             for _, t, a in people(whole_db)]
    assert sorted(strip, key=str) == sorted(whole, key=str) and len(whole) == 10

"""Honest counts. ``--per-persona K`` asks K items of each persona, each its own
seeded sample; a job holding fewer items than asked says so in one line with the reason and is an
error for the command (exit 1) and the API (``FewerItems``) unless ``--allow-fewer``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest

import personahub
from personahub.api import FewerItems, run_synthesis
from personahub.core.errors import PersonahubError
from personahub.pipelines import synthesize
from personahub.pipelines.synthesize import SynthConfig, item_id_for
from tests.cli_helpers import invoke, one_line_error, usage_error
from tests.core.test_jobs import hub


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_per_persona_asks_k_samples_of_each_persona(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    summary = run_synthesis(SynthConfig(task="instruction", n=3, per_persona=4, db=str(db)))
    assert summary.written == 12 and summary.items == 12 and summary.shortfall is None
    made = rows(db, "SELECT item_id, persona_id, text FROM synth_items WHERE job_id = ?",
                [summary.job_id])
    assert Counter(p for _, p, _ in made) == {p: 4 for p in {p for _, p, _ in made}}
    assert len({p for _, p, _ in made}) == 3
    for persona in {p for _, p, _ in made}:  # each its own sample: four different texts
        assert len({t for _, p, t in made if p == persona}) == 4
    ids = {i for i, _, _ in made}
    assert ids == {item_id_for(summary.job_id, p, k) for p in {p for _, p, _ in made}
                   for k in range(4)}
    assert item_id_for("j", "p") == item_id_for("j", "p", 0)  # a first sample keeps its old id
    # seeded: the same job in another database writes the same texts
    again = run_synthesis(SynthConfig(task="instruction", n=3, per_persona=4,
                                      db=str(tmp_path / "k2.duckdb")))
    assert sorted(t for (t,) in rows(tmp_path / "k2.duckdb", "SELECT text FROM synth_items")) == \
        sorted(t for _, _, t in made)
    assert again.written == 12
    # and K = 1 asks what a job always asked
    one = run_synthesis(SynthConfig(task="instruction", n=3, db=str(tmp_path / "k3.duckdb")))
    firsts = {t for (t,) in rows(tmp_path / "k3.duckdb", "SELECT text FROM synth_items")}
    assert firsts == {t for i, p, t in made if i == item_id_for(summary.job_id, p)}
    assert one.written == 3


def test_a_resume_asks_only_the_missing_samples(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.duckdb"
    real = synthesize.SynthesisSpec.commit
    seen = {"n": 0}

    def flaky(self, ctx, batch, result):  # noqa: ANN001
        seen["n"] += 1
        if seen["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(self, ctx, batch, result)

    monkeypatch.setattr(synthesize.SynthesisSpec, "commit", flaky)
    with pytest.raises(PersonahubError, match="--resume"):
        run_synthesis(SynthConfig(task="instruction", n=3, per_persona=2, batch_size=4, db=str(db)))
    (job_id,) = rows(db, "SELECT job_id FROM synth_jobs")[0]
    assert len(rows(db, "SELECT 1 FROM synth_items")) == 4
    monkeypatch.setattr(synthesize.SynthesisSpec, "commit", real)
    resumed = run_synthesis(SynthConfig(task="instruction", db=str(db)), resume=job_id)
    assert (resumed.skipped_done, resumed.written, resumed.items) == (4, 2, 6)
    assert resumed.shortfall is None


def test_an_empty_hub_short_of_n_says_so_and_exits_1(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    line = one_line_error(invoke("synthesize", "instruction", "--n", 200, "--db", db, "-q"))
    assert line == ("error: fewer items than asked: 150 of 200: --n 200 but only 150 personas "
                    "match (the hub was empty: 150 shipped personas were imported), so 50 items "
                    "had no persona to ask (--allow-fewer accepts fewer)")
    assert rows(db, "SELECT count(*) FROM synth_items") == [(150,)]  # what it wrote is kept


def test_allow_fewer_exits_0_and_still_says_so(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    hub(db, 4)
    result = invoke("synthesize", "instruction", "--n", 6, "--per-persona", 2, "--db", db,
                    "--allow-fewer", "--preview", 0)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "fewer items than asked" in line]
    assert notes == ["note: fewer items than asked: 8 of 12: --n 6 but only 4 personas match, so "
                     "4 items had no persona to ask (allowed by --allow-fewer)"]


def test_failed_asks_are_a_shortfall_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "f.duckdb"
    hub(db, 6)
    real = synthesize.SynthesisAsker._one

    async def half_fail(self, ask, caller):  # noqa: ANN001
        answer = await real(self, ask, caller)
        return answer._replace(content=None) if ask.sample == 1 else answer

    monkeypatch.setattr(synthesize.SynthesisAsker, "_one", half_fail)
    line = one_line_error(invoke("synthesize", "instruction", "--n", 2, "--per-persona", 2,
                                 "--db", db, "-q"))
    assert line.startswith("error: fewer items than asked: 2 of 4: 2 asked items failed or were "
                           "rejected (resume to retry: personahub synthesize --resume synth-")


def test_the_api_raises_fewer_items_unless_allowed(tmp_path: Path) -> None:
    db = tmp_path / "api.duckdb"
    hub(db, 3)
    with pytest.raises(FewerItems, match=r"fewer items than asked: 3 of 5.*allow_fewer=True") as err:
        personahub.synthesize("instruction", db=db, n=5)
    assert err.value.job.summary.items == 3 and err.value.job.kind == "synthesis"
    job = personahub.synthesize("instruction", db=db, n=5, allow_fewer=True, seed=1)
    assert job.summary.items == 3 and job.summary.shortfall is not None
    assert personahub.synthesize("instruction", db=db, n=1, per_persona=3).summary.items == 3


def test_per_persona_must_be_a_positive_count(tmp_path: Path) -> None:
    assert "--per-persona" in usage_error(invoke("synthesize", "instruction", "--per-persona", 0,
                                                 "--db", tmp_path / "x.duckdb"))
    with pytest.raises(PersonahubError, match="--per-persona"):
        SynthConfig(task="instruction", per_persona=100_000)


@pytest.mark.slow
def test_resume_says_a_shortfall_and_exits_1_unless_allowed(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "resumed.duckdb"
    hub(db, 4)
    real = synthesize.SynthesisAsker._one

    async def half_fail(self, ask, caller):  # noqa: ANN001
        answer = await real(self, ask, caller)
        return answer._replace(content=None) if ask.sample == 1 else answer

    with monkeypatch.context() as patch:
        patch.setattr(synthesize.SynthesisAsker, "_one", half_fail)
        invoke("synthesize", "instruction", "--n", 3, "--per-persona", 2, "--db", db,
               "--allow-fewer", "--preview", 0)
    (job_id,) = rows(db, "SELECT job_id FROM synth_jobs")[0]
    # the failed samples are asked again, but 3 personas of 4 cannot give --n 6 of per-persona 2...
    short = invoke("synthesize", "instruction", "--n", 6, "--db", db, "--allow-fewer", "--preview", 0)
    assert short.exit_code == 0, short.output
    (short_id,) = [j for (j,) in rows(db, "SELECT job_id FROM synth_jobs") if j != job_id]
    line = one_line_error(invoke("resume", short_id, "--db", db, "-q"))
    assert line == ("error: fewer items than asked: 4 of 6: --n 6 but only 4 personas match, so 2 "
                    "items had no persona to ask (--allow-fewer accepts fewer)")
    allowed = invoke("resume", short_id, "--db", db, "--allow-fewer")
    assert allowed.exit_code == 0, allowed.output
    assert [ln for ln in allowed.stderr.splitlines() if "fewer items" in ln] == [
        "note: fewer items than asked: 4 of 6: --n 6 but only 4 personas match, so 2 items had "
        "no persona to ask (allowed by --allow-fewer)"]
    # ... while the job whose asks failed is made whole by its resume: exit 0, no shortfall
    whole = invoke("resume", job_id, "--db", db)
    assert whole.exit_code == 0, whole.output
    assert "fewer items" not in whole.output
    assert rows(db, "SELECT count(*) FROM synth_items WHERE job_id = ?", [job_id]) == [(6,)]

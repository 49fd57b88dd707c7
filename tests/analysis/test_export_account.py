"""Every export says what it left out or kept, and why: on the console after "wrote N
records", and in a Hugging Face folder's card. Contaminated items an evaluation left out of
its split, the other side of a split, --task and --drop-duplicates; flagged near-duplicates,
user-only chat rows and rows drawn from an archetype's one call that it kept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from personahub.api import run_synthesis
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.optional import need_hf
from tests.pipeline_helpers import rows


@pytest.fixture
def evaluated(tmp_path: Path) -> tuple[Path, str, str]:
    """An offline instruction job of 12 items, evaluated with 3 of them in a benchmark file:
    (database, synthesis job, evaluation job)."""
    db = tmp_path / "ex.duckdb"
    job = run_synthesis(SynthConfig(task="instruction", n=12, db=str(db))).job_id
    texts = [t for (t,) in rows(db, "SELECT text FROM synth_items ORDER BY item_id")]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:3]))
    result = invoke("evaluate", "--db", db, "--job", job, "--test-n", 3, "--seed", 1,
                    "--solver", "offline?seed=1", "--agree", 1, "--against", bench)
    assert result.exit_code == 0, result.output
    (evaluation,), = rows(db, "SELECT job_id FROM jobs WHERE kind = 'evaluation'")
    return db, job, evaluation


def _flagged(db: Path) -> int:
    return rows(db, "SELECT count(DISTINCT item_id) FROM eval_contamination")[0][0]


@pytest.mark.slow
def test_a_split_export_says_what_it_left_out_and_why(
        evaluated: tuple[Path, str, str], tmp_path: Path) -> None:
    db, job, evaluation = evaluated
    flagged = _flagged(db)
    assert flagged >= 3
    out = tmp_path / "test.chat.jsonl"
    result = invoke("export", "--db", db, "--job", job, "--split", "test", "--format", "chat",
                    "--out", out)
    assert result.exit_code == 0, result.output
    written = len(out.read_text().splitlines())
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote {written} records (chat) to {out}"
    assert lines[1] == (f"  left out {12 - written} of 12: {flagged} contaminated: flagged by "
                        f"--against in evaluation {evaluation}, in neither side; "
                        f"{12 - written - flagged} on the other side of evaluation "
                        f"{evaluation}'s split (--split test)")
    assert lines[2] == (f"  kept: {written} instruction rows with the user's turn only: no "
                        "answer is known (synthesize --solve, or multi_turn --with-assistant, "
                        "adds one)")
    # without --split every item is written: the contaminated ones are said to be there
    whole = invoke("export", "--db", db, "--evaluation", evaluation, "--format", "personahub",
                   "--out", tmp_path / "all.jsonl")
    assert whole.stdout.splitlines()[1] == (
        f"  kept: {flagged} contaminated: flagged by --against in evaluation {evaluation} "
        "(--split leaves them out)")


def test_an_export_that_leaves_nothing_out_says_nothing_more(tmp_path: Path) -> None:
    db = tmp_path / "plain.duckdb"
    job = run_synthesis(SynthConfig(task="math_problem", n=4, db=str(db), solve=True)).job_id
    result = invoke("export", "--db", db, "--job", job, "--format", "chat",
                    "--out", tmp_path / "m.jsonl")
    assert result.exit_code == 0, result.output
    duplicates = rows(db, "SELECT count(*) FILTER (is_duplicate) FROM synth_items")[0][0]
    expected = ([f"  kept: {duplicates} flagged near-duplicates (is_duplicate; "
                 "--drop-duplicates leaves them out)"] if duplicates else [])
    assert result.stdout.splitlines()[1:] == expected


@pytest.mark.slow
def test_an_hf_export_of_an_evaluated_job_says_it_in_the_card(
        evaluated: tuple[Path, str, str], tmp_path: Path) -> None:
    need_hf()
    db, job, evaluation = evaluated
    flagged = _flagged(db)
    result = invoke("export", "--db", db, "--job", job, "--format", "hf", "--out",
                    tmp_path / "hf")
    assert result.exit_code == 0, result.output
    assert re.match(rf"wrote {12 - flagged} records \(train {9 - flagged}, test 3\) \(hf ",
                    result.stdout)
    assert f"  left out {flagged} of 12: {flagged} contaminated" in result.stdout
    card = (tmp_path / "hf" / "README.md").read_text()
    assert f"- **Left out:** {flagged} of the 12 items: {flagged} contaminated: flagged by " \
        f"--against in evaluation {evaluation}, in neither side" in card
    assert f"- **Kept:** {12 - flagged} instruction rows with the user's turn only" in card


SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="archetyped", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=3), steps=2,
                    tasks=("instruction",), archetypes=3, seed=5)
"""


@pytest.mark.slow
def test_an_archetype_run_export_says_which_rows_speak_for_many(tmp_path: Path) -> None:
    """A run whose agents answer from 3 archetypes' calls: the export counts the rows drawn
    from a pool and the near-duplicates kept; the card names the archetypes."""
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(18)))
    (tmp_path / "archetyped.py").write_text(SCENARIO)
    db = tmp_path / "run.duckdb"
    assert invoke("run", tmp_path / "archetyped.py", "--db", db).exit_code == 0
    (run,), = rows(db, "SELECT job_id FROM jobs WHERE kind = 'run'")
    drawn, duplicates, total = rows(
        db, "SELECT count(archetype), count(*) FILTER (is_duplicate), count(*) FROM emissions")[0]
    assert drawn and duplicates
    out = tmp_path / "run.chat.jsonl"
    result = invoke("export", "--db", db, "--run", run, "--format", "chat", "--out", out)
    assert result.exit_code == 0, result.output
    kept = result.stdout.splitlines()[1]
    assert kept.startswith(f"  kept: {duplicates} flagged near-duplicates (is_duplicate; ")
    assert f"; {drawn} rows drawn from an archetype's pool: one call answered for its " \
        "members, so their texts repeat (scenario.archetypes)" in kept
    dropped = invoke("export", "--db", db, "--run", run, "--format", "chat",
                     "--drop-duplicates", "--out", tmp_path / "d.jsonl")
    assert f"  left out {duplicates} of {total}: {duplicates} flagged near-duplicates " \
        "(--drop-duplicates)" in dropped.stdout.splitlines()
    need_hf()
    hf = invoke("export", "--db", db, "--run", run, "--format", "hf", "--out", tmp_path / "hf")
    assert hf.exit_code == 0, hf.output
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "- **Archetypes:** the run grouped its agents (3 over 18 agents" in card
    assert f"- **Kept:** {drawn} rows drawn from an archetype's pool" in card

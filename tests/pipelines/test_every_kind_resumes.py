"""Every job kind, stopped by Ctrl-C as one of its batches commits, resumes through the command
line (``personahub resume ID``) and through the API (``personahub.resume(ID, db=...)``) to the
rows of the same job run without a stop (issue 27: "An interrupted job of each kind resumes
through the CLI and through the API to the same rows"). ``personahub jobs`` lists the stopped job
as ``interrupted`` and, after the resume, ``finished``; the answers kept equal the uninterrupted
job's, so no answer is kept twice and none is lost.

``KINDS`` must name every registered kind: a kind added without a case here fails
``test_every_registered_kind_has_a_case``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub.core import kernel
from personahub.runtime import registered_kinds
from tests._planted import planted_corpus
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import MARGINALS, make_population, write_survey

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="every", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=2), steps=3,
                    kinds=("npc_dialogue", "instruction"), seed=4)
"""
QUESTION = "What did you notice this week?"
# the answers a job kept, by purpose (a stopped job's uncommitted answers are 'discarded')
KEPT_CALLS = "SELECT purpose, count(*) FROM llm_calls WHERE status = 'ok' GROUP BY 1 ORDER BY 1"


@dataclass(frozen=True)
class Kind:
    """One job kind: what its database needs first, how the command starts it, the rows it
    makes (without ids that differ between two jobs), and which batch commit the stop hits."""

    kind: str
    prepare: Callable[[Path, Path], dict[str, Any]]  # (folder, db) -> names the start uses
    start: Callable[[Path, dict[str, Any]], list[object]]  # personahub ARGS, without --db
    made: str
    stop_at_write: int = 3  # the job's own row, one batch, then the stop


def _people(folder: Path, db: Path, n: int = 8) -> dict[str, Any]:
    people = folder / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(n)))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    return {}


def _near_duplicates(folder: Path, db: Path) -> dict[str, Any]:
    texts = planted_corpus(40, 30, length=(60, 60), kinds=("swap", "edit_block"), seed=7).texts
    people = folder / "near.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    return {}


def _corpus(folder: Path, db: Path) -> dict[str, Any]:
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(f"Notes {i}: how to repair a bicycle chain, oil it and check "
                                  f"its wear on day {i}." for i in range(6)) + "\n")
    return {"corpus": corpus}


def _scenario(folder: Path, db: Path) -> dict[str, Any]:
    _people(folder, db, 6)
    (folder / "every.py").write_text(SCENARIO)
    return {"scenario": folder / "every.py"}


def _synthesized(folder: Path, db: Path) -> dict[str, Any]:
    _people(folder, db)
    assert invoke("synthesize", "instruction", "--n", 8, "--db", db).exit_code == 0
    return {"job": rows(db, "SELECT job_id FROM jobs WHERE kind = 'synthesis'")[0][0]}


def _ran(folder: Path, db: Path) -> dict[str, Any]:
    names = _scenario(folder, db)
    assert invoke("run", names["scenario"], "--db", db).exit_code == 0
    return {"run": rows(db, "SELECT job_id FROM jobs WHERE kind = 'run'")[0][0]}


def _population(folder: Path, db: Path) -> dict[str, Any]:
    return {"population": make_population(folder, db), "survey": write_survey(folder / "s.csv")}


def _marginals(folder: Path, db: Path) -> dict[str, Any]:
    marginals = folder / "marginals.csv"
    marginals.write_text(MARGINALS, encoding="utf-8")
    return {"marginals": marginals}


KINDS = [
    Kind("run", _scenario, lambda f, n: ["run", n["scenario"]],
         "SELECT step, agent_id, persona_id, kind, content, text FROM emissions ORDER BY ALL"),
    Kind("synthesis", lambda f, db: _people(f, db),
         lambda f, n: ["synthesize", "instruction", "--n", 8, "--batch-size", 3],
         "SELECT persona_id, content, text, is_duplicate FROM synth_items ORDER BY ALL"),
    Kind("text_to_persona", _corpus,
         lambda f, n: ["personas", "from-text", n["corpus"], "--relations", "read,like",
                       "--batch-size", 2],
         "SELECT text, source, hop FROM personas ORDER BY ALL"),
    Kind("expansion", lambda f, db: _people(f, db, 4),
         lambda f, n: ["personas", "expand", "--hops", 2, "--fanout", 2, "--batch-size", 2],
         "SELECT text, source, hop FROM personas ORDER BY ALL"),
    Kind("dedup", _near_duplicates, lambda f, n: ["personas", "dedup", "--batch-size", 10],
         "SELECT p.text, p.is_duplicate, p.duplicate_of, p.dup_stage, e.model, e.vector "
         "FROM personas p LEFT JOIN persona_embeddings e USING (persona_id) ORDER BY ALL"),
    Kind("judge", _synthesized,
         lambda f, n: ["judge", "--job", n["job"], "--batch-size", 3],
         "SELECT item_id, kind, criteria, valid, reason FROM judgments ORDER BY ALL"),
    Kind("interview", _ran,
         lambda f, n: ["interview", "--run", n["run"], "--carve", "hop=0", "--batch-size", 2,
                       QUESTION],
         "SELECT agent_id, persona_id, step, question, answer, status, error FROM interviews "
         "ORDER BY ALL"),
    Kind("calibration", _population,
         lambda f, n: ["calibrate", n["survey"], "--population", n["population"], "--n", 5,
                       "--seed", 2, "--no-persona-n", 3, "--batch-size", 7],
         "SELECT question_id, steering, respondent, persona_id, answer, refused "
         "FROM calibration_answers ORDER BY ALL"),
    Kind("population_write", _marginals,
         lambda f, n: ["personas", "sample-population", "--marginals", n["marginals"], "--n", 80,
                       "--seed", 5, "--llm", "offline"],  # two batches of the default 64
         "SELECT text, json_extract_string(attributes, '$.sex'), "
         "json_extract_string(attributes, '$.party') FROM personas ORDER BY ALL"),
]


def test_every_registered_kind_has_a_case() -> None:
    """Every shipped kind: a kind registered from outside the package (the toy job of
    ``tests/core/test_toy_job.py``, imported in the same process) is not this module's."""
    shipped = [kind for kind in registered_kinds()
               if type(kernel.spec_for(kind)).__module__.startswith("personahub.")]
    assert sorted(k.kind for k in KINDS) == shipped
    assert len(shipped) >= 9


def stop_at_write(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Ctrl-C as the kernel begins its ``number``-th write (the job's row is the first, then
    one a batch): every kind commits through ``kernel._write``, with or without a model."""
    seen = []
    real = kernel._write

    def counting(ctx: Any, outcome: Any) -> Any:
        seen.append(1)
        if len(seen) == number:
            raise KeyboardInterrupt
        return real(ctx, outcome)

    monkeypatch.setattr(kernel, "_write", counting)


def _listed(db: Path) -> list[tuple[str, str]]:
    result = invoke("jobs", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    return [(j["kind"], j["status"]) for j in json.loads(result.stdout)]


def _stopped(case: Kind, folder: Path, db: Path, names: dict[str, Any],
             monkeypatch: pytest.MonkeyPatch) -> str:
    """Start the job with the command and stop it at its batch commit; its id."""
    before = {r[0] for r in rows(db, "SELECT job_id FROM jobs")} if db.exists() else set()
    with monkeypatch.context() as patch:
        stop_at_write(patch, case.stop_at_write)
        result = invoke(*case.start(folder, names), "--db", db)
    assert result.exit_code == 130, result.output
    (job_id, status), = [r for r in rows(db, "SELECT job_id, status FROM jobs WHERE kind = ?",
                                         [case.kind]) if r[0] not in before]
    assert status == "interrupted"
    assert (case.kind, "interrupted") in _listed(db)
    return str(job_id)


@pytest.mark.slow
@pytest.mark.parametrize("case", KINDS, ids=[k.kind for k in KINDS])
def test_a_stopped_job_resumes_through_the_command_and_the_api_to_the_same_rows(
        case: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "fixture"
    folder.mkdir()
    template = folder / "template.duckdb"
    names = case.prepare(folder, template)
    before = rows(template, case.made) if template.exists() else []
    copies = {}
    for name in ("whole", "cli", "api"):
        copies[name] = tmp_path / f"{name}.duckdb"
        if template.exists():
            shutil.copy(template, copies[name])

    whole = invoke(*case.start(folder, names), "--db", copies["whole"])
    assert whole.exit_code == 0, whole.output
    expected = rows(copies["whole"], case.made)
    assert expected, "the uninterrupted job made no rows"

    for through in ("cli", "api"):
        db = copies[through]
        job_id = _stopped(case, folder, db, names, monkeypatch)
        assert before != rows(db, case.made) != expected  # stopped between its batches
        if through == "cli":
            resumed = invoke("resume", job_id, "--db", db)
            assert resumed.exit_code == 0, resumed.output
            assert f"resuming job {job_id}" in resumed.stderr + resumed.stdout
        else:
            handle = personahub.resume(job_id, db=db)
            assert (handle.kind, handle.job_id, handle.status) == (case.kind, job_id, "finished")
        assert rows(db, case.made) == expected, through
        assert rows(db, KEPT_CALLS) == rows(copies["whole"], KEPT_CALLS), through
        assert (case.kind, "finished") in _listed(db)
        assert (case.kind, "interrupted") not in _listed(db)


@pytest.mark.slow
def test_resume_of_a_finished_job_asks_nothing(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    _people(tmp_path, db, 3)
    job = personahub.synthesize("instruction", db=db, n=3)
    calls = rows(db, "SELECT count(*) FROM llm_calls")
    again = personahub.resume(job.job_id, db=db)
    assert (again.kind, again.job_id, again.status) == ("synthesis", job.job_id, "finished")
    assert rows(db, "SELECT count(*) FROM llm_calls") == calls


@pytest.mark.slow
def test_jobs_lists_every_job_as_a_frame_and_refuses_an_unknown_filter(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    _people(tmp_path, db, 3)
    personahub.synthesize("instruction", db=db, n=2)
    personahub.dedup(db=db)
    frame = personahub.jobs(db=db)
    assert sorted(frame["kind"]) == ["dedup", "synthesis"]
    assert set(frame["status"]) == {"finished"}
    assert list(personahub.jobs(db=db, kind="dedup")["kind"]) == ["dedup"]
    assert personahub.jobs(db=db, status="interrupted").empty
    with pytest.raises(personahub.PersonahubError, match="--kind expand: no such job kind"):
        personahub.jobs(db=db, kind="expand")
    with pytest.raises(personahub.PersonahubError, match="--status done: no such status"):
        personahub.jobs(db=db, status="done")
    assert invoke("jobs", "--db", db, "--kind", "expand").exit_code == 2
    with pytest.raises(personahub.PersonahubError, match="no such job"):
        personahub.resume("nope", db=db)
    with pytest.raises(personahub.PersonahubError, match="no such database"):
        personahub.resume("nope", db=tmp_path / "missing.duckdb")

"""Every job kind, stopped by Ctrl-C as one of its batches commits, resumes through the command
line (``personahub resume ID``) and through the API (``personahub.resume(ID, db=...)``) to the
rows of the same job run without a stop (issue 27: "An interrupted job of each kind resumes
through the CLI and through the API to the same rows"). ``personahub jobs`` lists the stopped job
as ``interrupted`` and, after the resume, ``finished``; the answers kept equal the uninterrupted
job's, so no answer is kept twice and none is lost.

``KINDS`` (``tests/pipelines/every_kind.py``) must name every shipped kind: a kind added
without a case there fails ``test_every_registered_kind_has_a_case``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub.core import kernel
from personahub.core.store import connect
from personahub.pipelines.labels import SHIPPED
from personahub.runtime import registered_kinds, registered_spec
from tests.cli_helpers import invoke
from tests.pipeline_helpers import rows
from tests.pipelines.every_kind import KEPT_CALLS, KINDS, Kind, import_people, prepared


def test_every_registered_kind_has_a_case() -> None:
    """Every shipped kind: a kind registered from outside the package (the toy job of
    ``tests/core/test_toy_job.py``, imported in the same process) is not this module's."""
    shipped = [kind for kind in registered_kinds()
               if type(kernel.spec_for(kind)).__module__.startswith("personahub.")]
    assert sorted(k.kind for k in KINDS) == shipped
    assert len(shipped) >= 9
    # personahub jobs labels the shipped kinds from pipelines/labels.py without importing them
    assert sorted(SHIPPED) == shipped
    for kind in shipped:
        assert type(kernel.spec_for(kind)).label is not kernel.SpecBase.label, kind


@pytest.mark.slow
def test_listing_jobs_labels_every_kind_without_importing_a_spec(tmp_path: Path) -> None:
    """``personahub jobs`` reads labels from ``pipelines/labels.py``: a listing of one job of
    each shipped kind imports no spec module (they bring in LangGraph and LangChain), and each
    label is the one the kind's spec gives."""
    from personahub.core.jobs_store import create_job

    configs = {"run": {"scenario": {"name": "riverside"}}, "synthesis": {"task": "npc", "n": 3},
               "expansion": {"hops": 2, "fanout": 3}, "text_to_persona": {"corpus": "c.txt"},
               "dedup": {"embedder": "hash"}, "judge": {"job": "j1", "sample": 5},
               "interview": {"run_id": "r1", "question": "Why?"},
               "calibration": {"survey": "/x/w.csv", "population": "p", "n": 4},
               "population_write": {"marginals": "/x/m.csv", "n": 9},
               "evaluation": {"job": "j1", "solvers": ["offline", "offline?seed=2"]}}
    assert sorted(configs) == sorted(SHIPPED)
    db = tmp_path / "hub.duckdb"
    con = connect(db)
    for kind, config in configs.items():
        create_job(con, f"id-{kind}", kind, config)
    con.close()
    script = ("import json, sys\n"
              "from personahub.any_job import job_rows\n"
              f"rows = job_rows({str(db)!r})\n"
              "heavy = sorted(m for m in sys.modules if m.startswith(('langgraph', 'langchain',"
              " 'personahub.pipelines.')) and m != 'personahub.pipelines.labels')\n"
              "print(json.dumps({'what': {r['kind']: r['what'] for r in rows}, 'heavy': heavy}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=tmp_path)
    listed = json.loads(done.stdout)
    assert listed["heavy"] == []
    assert listed["what"] == {kind: registered_spec(kind).label(config)
                              for kind, config in configs.items()}
    assert listed["what"]["synthesis"] == "npc x3"


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
    names, copies = prepared(case, tmp_path, ("whole", "cli", "api"))
    folder, template = names["folder"], names["template"]
    before = rows(template, case.made) if template.exists() else []
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
    import_people(tmp_path, db, 3)
    job = personahub.synthesize("instruction", db=db, n=3)
    calls = rows(db, "SELECT count(*) FROM llm_calls")
    again = personahub.resume(job.job_id, db=db)
    assert (again.kind, again.job_id, again.status) == ("synthesis", job.job_id, "finished")
    assert rows(db, "SELECT count(*) FROM llm_calls") == calls


@pytest.mark.slow
def test_jobs_lists_every_job_as_a_frame_and_refuses_an_unknown_filter(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    import_people(tmp_path, db, 3)
    personahub.synthesize("instruction", db=db, n=2)
    personahub.dedup(db=db)
    frame = personahub.jobs(db=db)
    assert sorted(frame["kind"]) == ["dedup", "synthesis"]
    assert set(frame["status"]) == {"finished"}
    assert list(personahub.jobs(db=db, kind="dedup")["kind"]) == ["dedup"]
    assert personahub.jobs(db=db, status="interrupted").empty
    with pytest.raises(personahub.PersonahubError, match="kind=expand: no such job kind"):
        personahub.jobs(db=db, kind="expand")
    with pytest.raises(personahub.PersonahubError, match="status=done: no such status"):
        personahub.jobs(db=db, status="done")
    assert invoke("jobs", "--db", db, "--kind", "expand").exit_code == 2
    with pytest.raises(personahub.PersonahubError, match="no such job"):
        personahub.resume("nope", db=db)
    with pytest.raises(personahub.PersonahubError, match="no such database"):
        personahub.resume("nope", db=tmp_path / "missing.duckdb")

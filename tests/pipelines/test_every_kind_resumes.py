"""Every job kind, stopped by Ctrl-C as one of its batches commits, resumes through the command
line (``personahub resume ID``) and through the API (``personahub.resume(ID, db=...)``) to what
an uninterrupted job of the same config makes. ``personahub jobs`` lists the stopped job as
``interrupted`` and, after the resume, ``finished``; the answers kept equal the uninterrupted
job's, so no answer is kept twice and none is lost.

The cases are the rows of ``pipelines/labels.py`` (``tests/pipelines/every_kind.py``): a kind
added with its row is stopped and resumed here, and listed, with nothing to add to this module.
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
from personahub.core.interrupts import Stopped
from personahub.core.store import connect
from personahub.pipelines.labels import SHIPPED
from personahub.runtime import registered_kinds, registered_spec
from tests.cli_helpers import invoke
from tests.pipeline_helpers import rows
from tests.pipelines.every_kind import (
    KEPT_CALLS,
    KINDS,
    Agreement,
    Kind,
    Table,
    import_people,
    prepared,
    snapshot,
    start,
)


def test_every_registered_kind_is_a_row_and_a_case() -> None:
    """Every shipped kind: a kind registered from outside the package (the toy job of
    ``tests/core/test_toy_job.py``, imported in the same process) is not this module's."""
    shipped = [kind for kind in registered_kinds()
               if type(kernel.spec_for(kind)).__module__.startswith("personahub.")]
    assert sorted(SHIPPED) == shipped
    assert sorted(k.kind for k in KINDS) == shipped
    assert len(shipped) >= 9
    for kind in shipped:
        assert type(kernel.spec_for(kind)).label is not kernel.SpecBase.label, kind


@pytest.mark.slow
def test_listing_jobs_labels_every_kind_without_importing_a_spec(tmp_path: Path) -> None:
    """``personahub jobs`` reads labels from ``pipelines/labels.py``: a listing of one job of
    each shipped kind, stored with its row's sample config, imports no spec module (they bring
    in LangGraph and LangChain), and each label is the one the kind's spec gives."""
    from personahub.core.jobs_store import create_job

    configs = {kind: dict(row.sample) for kind, row in SHIPPED.items()}
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
    assert listed["what"]["synthesis"] == "instruction x8"


def _items(*rows: tuple[str, int, str]) -> dict[str, Table]:
    """A snapshot of one table: an id a job draws, its insertion order, a text naming the id."""
    return {"items": (["item_id", "seq", "text", "note"],
                      [(i, f"\x00{seq}", text, f"{i} from {text}") for i, seq, text in rows])}


def test_a_comparison_masks_fresh_ids_and_leaves_out_what_two_whole_jobs_pair_differently() -> None:
    one = _items(("a1b2c3d4", 1, "x"), ("e5f6a7b8", 2, "y"))
    two = _items(("c9d8e7f6", 2, "x"), ("b5a4c3d2", 1, "y"))  # new ids, another order
    agreed = Agreement.of(one, two)
    assert agreed.id_columns == {("items", "item_id")}
    assert agreed.columns == {"items": ["item_id", "text", "note"]}
    assert agreed.made(one) == agreed.made(two) == {
        "items": [("<id>", "x", "<id> from x"), ("<id>", "y", "<id> from y")]}


def test_a_comparison_tells_a_lost_a_doubled_or_a_changed_row() -> None:
    one = _items(("a1b2c3d4", 1, "x"), ("e5f6a7b8", 2, "y"))
    agreed = Agreement.of(one, _items(("c9d8e7f6", 1, "x"), ("b5a4c3d2", 2, "y")))
    assert agreed.columns == {"items": ["item_id", "seq", "text", "note"]}
    for wrong in (_items(("f0e1d2c3", 1, "x")),
                  _items(("f0e1d2c3", 1, "x"), ("a0b1c2d3", 2, "y"), ("d4c3b2a1", 3, "y")),
                  _items(("f0e1d2c3", 1, "x"), ("a0b1c2d3", 2, "z")),
                  _items(("f0e1d2c3", 2, "x"), ("a0b1c2d3", 1, "y"))):
        assert agreed.made(wrong) != agreed.made(one)


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


def _stopped(case: Kind, names: dict[str, Any], db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Start the case's job and stop it at its batch commit; its id."""
    before = {r[0] for r in rows(db, "SELECT job_id FROM jobs")}
    with monkeypatch.context() as patch:
        stop_at_write(patch, case.stop_at_write)
        with pytest.raises(Stopped):
            start(case, names, db)
    (job_id, status), = [r for r in rows(db, "SELECT job_id, status FROM jobs WHERE kind = ?",
                                         [case.kind]) if r[0] not in before]
    assert status == "interrupted"
    assert (case.kind, "interrupted") in _listed(db)
    return str(job_id)


def resumes_to_the_same_rows(case: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that the case's job, stopped between its batches, resumes through the command and
    through the API to what an uninterrupted job makes, and is listed as it goes."""
    names, copies = prepared(case, tmp_path, ("whole", "again", "cli", "api"))
    template = names.pop("template")
    names.pop("folder")
    whole, again = (start(case, names, copies[n]).job_id for n in ("whole", "again"))
    agreed = Agreement.of(snapshot(copies["whole"], whole), snapshot(copies["again"], again))
    expected = agreed.made(snapshot(copies["whole"], whole))
    before = agreed.made(snapshot(template, None))
    assert expected != before, "the uninterrupted job made no rows"

    for through in ("cli", "api"):
        db = copies[through]
        job_id = _stopped(case, names, db, monkeypatch)
        assert before != agreed.made(snapshot(db, job_id)) != expected  # stopped between batches
        if through == "cli":
            resumed = invoke("resume", job_id, "--db", db)
            assert resumed.exit_code == 0, resumed.output
            assert f"resuming job {job_id}" in resumed.stderr + resumed.stdout
        else:
            handle = personahub.resume(job_id, db=db)
            assert (handle.kind, handle.job_id, handle.status) == (case.kind, job_id, "finished")
        assert agreed.made(snapshot(db, job_id)) == expected, through
        assert rows(db, KEPT_CALLS) == rows(copies["whole"], KEPT_CALLS), through
        assert (case.kind, "finished") in _listed(db)
        assert (case.kind, "interrupted") not in _listed(db)


@pytest.mark.slow
@pytest.mark.parametrize("case", KINDS, ids=[k.kind for k in KINDS])
def test_a_stopped_job_resumes_through_the_command_and_the_api_to_the_same_rows(
        case: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resumes_to_the_same_rows(case, tmp_path, monkeypatch)


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

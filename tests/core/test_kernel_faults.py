"""The kernel under model faults: a job whose calls stop completing is
stopped by the client's watchdog, resumably, instead of hanging; attempts its uncommitted
batches made, and those a killed run left in its call spill, end up in ``llm_calls``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub import runtime
from personahub.core import call_spill
from personahub.core.contracts import CallRecord
from personahub.core.errors import PersonahubError
from personahub.core.interrupts import Stopped
from personahub.core.kernel import BatchOutcome
from personahub.models.client import LLMClient
from personahub.models.settings import LLMSettings
from tests.agents.test_seam_faults import Hanging
from tests.cli_helpers import invoke
from tests.core.test_toy_job import TEXTS, TOY, CountConfig, CountSpec, counts


def _calls(db: Path, job_id: str) -> list[tuple[str, int]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT status, count(*) FROM llm_calls WHERE job_id = ? GROUP BY 1 "
                           "ORDER BY 1", [job_id]).fetchall()
    finally:
        con.close()


def _job(db: Path) -> dict[str, Any]:
    (job,) = json.loads(invoke("jobs", "--db", db, "--json").stdout)
    return dict(job)


@pytest.mark.slow
def test_a_job_whose_calls_never_complete_is_stopped_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "hung.duckdb"
    client = LLMClient(LLMSettings(), endpoints=[Hanging()])
    client.liveness.bound_s = 0.3  # the default is 2 x --timeout + 60 s
    with pytest.raises(PersonahubError, match=r"word count \S+ stopped: no model call completed "
                                              r".* with 2 in flight .*; resume with personahub "
                                              r"resume \S+ --db") as stopped:
        runtime.run(TOY, CountConfig(texts=TEXTS, seed=4), db, client=client)
    assert "\n" not in str(stopped.value)
    job = _job(db)
    assert job["status"] == "failed" and client.liveness.in_flight == 0
    resumed = runtime.run(TOY, {}, db, resume=job["job_id"])  # a healthy endpoint (offline)
    assert (resumed.status, resumed.summary) == ("finished", 7)
    whole = runtime.run(TOY, CountConfig(texts=TEXTS, seed=4), tmp_path / "whole.duckdb")
    assert counts(db, resumed.job_id) == counts(tmp_path / "whole.duckdb", whole.job_id)


def test_the_attempts_of_a_batch_never_committed_are_kept_as_discarded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "cut.duckdb"
    real, seen = CountSpec.commit, []

    def stops_at_the_third(self: CountSpec, ctx: Any, batch: Any, result: Any) -> BatchOutcome:
        seen.append(1)
        if len(seen) == 3:  # its two calls were answered, and nothing of them committed
            raise KeyboardInterrupt
        return real(self, ctx, batch, result)

    monkeypatch.setattr(CountSpec, "commit", stops_at_the_third)
    with pytest.raises(Stopped):
        runtime.run(TOY, CountConfig(texts=TEXTS, seed=4), db)
    monkeypatch.setattr(CountSpec, "commit", real)
    job_id = _job(db)["job_id"]
    assert _calls(db, job_id) == [("discarded", 2), ("ok", 4)]  # billed, so counted
    assert not call_spill.spill_path(db, job_id).exists()
    runtime.run(TOY, {}, db, resume=job_id)
    assert _calls(db, job_id) == [("discarded", 2), ("ok", 7)]  # the two were asked again


def test_what_a_killed_run_left_in_the_spill_is_committed_by_the_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "killed.duckdb"
    monkeypatch.setattr(CountSpec, "commit", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(Stopped):
        runtime.run(TOY, CountConfig(texts=TEXTS), db)
    monkeypatch.undo()
    job_id = _job(db)["job_id"]
    before = _calls(db, job_id)
    # what a kill -9 in mid-batch leaves: attempts in the spill, no commit, no cleanup
    lost = [CallRecord(purpose="toy:count", model="offline", attempt=a, status=s, error=e,
                       latency_ms=5.0)
            for a, s, e in ((1, "error", "HTTP 503: busy"), (2, "ok", None))]
    with call_spill.CallSpill(call_spill.spill_path(db, job_id),
                              tags={"job_kind": TOY.kind, "job_id": job_id,
                                    "run_id": job_id}) as spill:
        spill.done(lost)
    runtime.run(TOY, {}, db, resume=job_id)
    after = dict(_calls(db, job_id))
    assert after["error"] == dict(before).get("error", 0) + 1
    assert after["discarded"] == dict(before).get("discarded", 0) + 1
    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = {r[0] for r in con.execute("SELECT call_id FROM llm_calls").fetchall()}
    finally:
        con.close()
    assert {r.call_id for r in lost} <= ids
    assert not call_spill.spill_path(db, job_id).exists()


def test_what_killed_ray_workers_spilled_is_committed_by_the_resume_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job on Ray whose driver was killed mid-batch: its workers' attempts are only in their
    own spill files (one a worker, in the job's worker folder). The resume commits each once
    (an attempt in the driver's spill too counts once, as the driver recorded it), and the
    folder goes."""
    db = tmp_path / "ray-killed.duckdb"
    monkeypatch.setattr(CountSpec, "commit", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(Stopped):
        runtime.run(TOY, CountConfig(texts=TEXTS), db)
    monkeypatch.undo()
    job_id = _job(db)["job_id"]
    before = dict(_calls(db, job_id))
    tags = {"job_kind": TOY.kind, "job_id": job_id, "run_id": job_id}
    spill = call_spill.WorkerSpill.beside(db, job_id, tags)
    assert spill.folder == str(call_spill.worker_folder(db, job_id))

    def attempt(n: int, status: str, error: str | None = None) -> CallRecord:
        return CallRecord(purpose="toy:count", model="offline", attempt=n, status=status,
                          error=error, latency_ms=5.0)

    first = [attempt(1, "error", "timeout after 1 s"), attempt(2, "ok")]
    second = [attempt(1, "error", "HTTP 503: busy")]
    judged = CallRecord(**{**first[1].__dict__, "status": "invalid", "error": "bad JSON"})
    for records in (first, second):  # two workers, a file each
        opened = spill.open()
        assert opened is not None
        with opened:
            opened.done(records)
    with call_spill.CallSpill(call_spill.spill_path(db, job_id), tags=tags) as driver:
        driver.done([judged])  # the driver's layers judged the worker's answer: its record wins
    assert len(list(call_spill.worker_folder(db, job_id).iterdir())) == 2
    runtime.run(TOY, {}, db, resume=job_id)
    after = dict(_calls(db, job_id))
    assert after["error"] == before.get("error", 0) + 2
    assert after["invalid"] == before.get("invalid", 0) + 1
    assert after.get("discarded", 0) == before.get("discarded", 0)  # the ok one is the invalid one
    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = [r[0] for r in con.execute("SELECT call_id FROM llm_calls").fetchall()]
    finally:
        con.close()
    assert len(ids) == len(set(ids)) and {r.call_id for r in first + second} <= set(ids)
    assert not call_spill.worker_folder(db, job_id).exists()


def test_a_worker_that_cannot_see_the_folder_spills_nothing(tmp_path: Path) -> None:
    spill = call_spill.WorkerSpill(str(tmp_path / "elsewhere.calls.d"), {"job_id": "j"})
    assert spill.open() is None and not (tmp_path / "elsewhere.calls.d").exists()


def test_the_cost_view_counts_the_discarded_attempts_it_was_billed_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``v_run_cost`` counts every billed attempt: those of a batch the job never committed
    (kept from the call spill as ``discarded``) as well as the committed ones."""
    from personahub.analysis.views import install_views
    from personahub.core.store import connect

    db = tmp_path / "billed.duckdb"
    real, seen = CountSpec.commit, []

    def stops_at_the_third(self: CountSpec, ctx: Any, batch: Any, result: Any) -> BatchOutcome:
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt
        return real(self, ctx, batch, result)

    monkeypatch.setattr(CountSpec, "commit", stops_at_the_third)
    with pytest.raises(Stopped):
        runtime.run(TOY, CountConfig(texts=TEXTS, seed=4), db)
    job_id = _job(db)["job_id"]
    con = connect(db)
    try:
        install_views(con)
        by_status = dict(con.execute(
            "SELECT status, sum(tokens_in + tokens_out) FROM llm_calls WHERE job_id = ? "
            "GROUP BY 1", [job_id]).fetchall())
        calls, tokens = con.execute("SELECT calls, tokens_in + tokens_out FROM v_run_cost "
                                    "WHERE run_id = ?", [job_id]).fetchone()
    finally:
        con.close()
    assert by_status["discarded"] > 0 and set(by_status) == {"ok", "discarded"}
    assert calls == 6 and tokens == by_status["ok"] + by_status["discarded"]

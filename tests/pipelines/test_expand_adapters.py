"""``personahub personas expand`` and ``personahub.expand(...)`` are thin adapters over one
``ExpandConfig`` run by the job kernel: for the same settings they hand the kernel the
same config; an interrupted expansion resumes through either to the rows of an uninterrupted
one; ``personahub jobs`` lists it and ``personahub resume ID`` goes on with it; a run's setup
expansion is a child job of the run."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub import runtime
from personahub.core import jobs_store
from personahub.core.errors import PersonahubError
from personahub.core.kernel import JobResult
from personahub.core.store import connect
from personahub.models.client import LLMClient, LLMSettings
from personahub.personas.expand import ExpandSummary
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from personahub.pipelines.expand import ExpandConfig
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.fakes import FakeClient, crash_after
from tests.pipeline_helpers import handed_runs, personas_snapshot, relations_snapshot

# (command-line flags, the same as keyword arguments of personahub.expand)
FLAG_SETS: list[tuple[list[object], dict[str, Any]]] = [
    ([], {}),
    (["--hops", 3, "--fanout", 4, "--limit", 2, "--language", "de", "--seed", 5,
      "--link-candidates", 0, "--link-embedder", "none", "--temperature", 0.4,
      "--max-tokens", 300, "--top-p", 0.9, "--structured", "json_object"],
     {"hops": 3, "fanout": 4, "limit": 2, "language": "de", "seed": 5, "link_candidates": 0,
      "link_embedder": None, "temperature": 0.4, "max_tokens": 300, "top_p": 0.9,
      "structured": "json_object"}),
    (["--concurrency", "auto", "--timeout", 12, "--rps", 2, "--batch-size", 5,
      "--max-failed-share", 0.5, "--cache", "record", "--offline-latency", 0.01],
     {"concurrency": "auto", "timeout_s": 12.0, "rps": 2.0, "batch_size": 5,
      "max_failed_share": 0.5, "cache": "record", "offline_latency_s": 0.01}),
    (["--executor", "ray", "--ray-workers", 3, "--ray-address", "127.0.0.1:6379"],
     {"executor": "ray", "ray_workers": 3, "ray_address": "127.0.0.1:6379"}),
]


def _hub(db: Path, n: int = 5) -> list[str]:
    con = connect(db)
    try:
        upsert_personas(con, [Persona(text=t, source="test") for t in persona_texts(n)])
        return [r[0] for r in con.execute("SELECT persona_id FROM personas ORDER BY seq").fetchall()]
    finally:
        con.close()


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (the job itself is not run)."""
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    return handed_runs(monkeypatch, JobResult("exp-1", "finished",
                                              ExpandSummary(expansion_id="exp-1", hops=1)))


@pytest.mark.parametrize("flags,options", FLAG_SETS, ids=["defaults", "what-it-makes", "engine", "ray"])
@pytest.mark.slow
def test_the_command_and_the_api_build_the_same_config(tmp_path: Path, handed: list[dict[str, Any]],
                                                       flags: list[object],
                                                       options: dict[str, Any]) -> None:
    db = tmp_path / "h.duckdb"
    _hub(db)
    result = invoke("personas", "expand", "--db", db, *flags)
    assert result.exit_code == 0, result.output
    personahub.expand(db=db, **options)
    (cli, api) = handed
    assert isinstance(cli["config"], ExpandConfig) and cli["config"].origin == "cli"
    assert dataclasses.replace(cli["config"], origin="api") == api["config"]
    assert cli["kind"] == api["kind"] == "expansion" and cli["db"] == api["db"] == str(db)
    assert cli["resume"] is api["resume"] is None


def _fake_models(monkeypatch: pytest.MonkeyPatch, client: Any) -> None:
    monkeypatch.setattr(runtime.StandardModels, "build", lambda self, settings: client)
    monkeypatch.setattr(runtime.StandardModels, "check_reachable", lambda self, c: None)


@pytest.mark.slow
def test_an_interrupted_expansion_resumes_through_the_api_and_the_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"hops": 2, "fanout": 2, "batch_size": 2, "link_candidates": 2}
    whole, api_cut = tmp_path / "whole.duckdb", tmp_path / "api.duckdb"
    _hub(whole)
    shutil.copy(whole, api_cut)
    cli_cut = tmp_path / "cli.duckdb"
    shutil.copy(whole, cli_cut)
    personahub.expand(db=whole, **options)
    offline = LLMClient(LLMSettings(seed=0))
    for db in (api_cut, cli_cut):
        _fake_models(monkeypatch, FakeClient(crash_after(5), inner=offline))
        with pytest.raises(PersonahubError, match="simulated crash"):
            personahub.expand(db=db, **options)
        monkeypatch.undo()
    (stopped,) = jobs_store.list_jobs(connect(api_cut, read_only=True), kind="expansion")
    assert stopped.status == "failed"
    with pytest.raises(PersonahubError, match="the job's fanout is 2, not 3"):
        personahub.expand(db=api_cut, resume=stopped.job_id, fanout=3)
    resumed = personahub.expand(db=api_cut, resume=stopped.job_id)
    assert resumed.job_id == stopped.job_id and resumed.summary.resumed
    (cli_job,) = jobs_store.list_jobs(connect(cli_cut, read_only=True), kind="expansion")
    listed = invoke("jobs", "--db", cli_cut)
    assert listed.exit_code == 0 and cli_job.job_id in listed.output and "failed" in listed.output
    again = invoke("resume", cli_job.job_id, "--db", cli_cut)
    assert again.exit_code == 0, again.output
    assert "(resumed)" in again.output
    for db in (api_cut, cli_cut):
        con, uncut = connect(db, read_only=True), connect(whole, read_only=True)
        try:
            assert personas_snapshot(con) == personas_snapshot(uncut)
            assert relations_snapshot(con) == relations_snapshot(uncut)
            (job,) = jobs_store.list_jobs(con, kind="expansion")
            assert job.status == "finished"
        finally:
            con.close()
            uncut.close()


def test_the_api_reports_progress_hop_by_hop(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    _hub(db, n=3)
    seen: list[tuple[str, int, int | None]] = []
    job = personahub.expand(db=db, hops=2, fanout=1, link_candidates=0,
                            progress=lambda phase, done, total: seen.append((phase, done, total)))
    hops = [done for phase, done, total in seen if phase == "expand" and total == 2]
    assert hops and hops == sorted(hops) and hops[-1] == 2 and job.summary.hops == 2


def test_a_runs_setup_expansion_is_its_child_job(tmp_path: Path, scenario_file: Any) -> None:
    path = scenario_file(n_personas=4, steps=1)
    db = tmp_path / "r.duckdb"
    result = invoke("run", path, "--db", db)
    assert result.exit_code == 0, result.output
    con = connect(db, read_only=True)
    try:
        (run,) = jobs_store.list_jobs(con, kind="run")
        (child,) = jobs_store.list_jobs(con, kind="expansion")
        assert child.parent_id == run.job_id and child.status == "finished"
        assert child.config["origin"] == "run" and len(child.config["start_ids"]) == 4
        calls = con.execute("SELECT DISTINCT run_id FROM llm_calls WHERE purpose = 'expand'"
                            ).fetchall()
        assert calls == [(run.job_id,)]  # its calls are the run's
    finally:
        con.close()


def test_zero_hops_asks_and_records_nothing_and_still_answers_json(tmp_path: Path) -> None:
    import json

    db = tmp_path / "h.duckdb"
    _hub(db, n=2)
    result = invoke("personas", "expand", "--db", db, "--hops", 0, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["expansion_id"] == "" and answer["counts"]["asked"] == 0
    assert jobs_store.list_jobs(connect(db, read_only=True)) == []

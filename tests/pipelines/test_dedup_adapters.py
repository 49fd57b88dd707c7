"""``personahub personas dedup`` and ``personahub.dedup(...)`` are thin adapters over one
``DedupJobConfig`` run by the job kernel: for the same settings they hand the kernel
the same config; an interrupted dedup job resumes through either (and through ``personahub
resume ID``) to the flags and vectors of an uninterrupted one; ``personahub jobs`` lists it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub.core import jobs_store
from personahub.core.errors import PersonahubError
from personahub.core.kernel import JobResult
from personahub.core.store import connect
from personahub.personas.dedup import DedupSummary
from personahub.pipelines import dedup as dedup_spec
from personahub.pipelines.dedup import DedupJobConfig
from tests._planted import planted_corpus
from tests.cli_helpers import invoke
from tests.pipeline_helpers import handed_runs, rows

# (command-line flags, the same as keyword arguments of personahub.dedup)
FLAG_SETS: list[tuple[list[object], dict[str, Any]]] = [
    ([], {}),
    (["--threshold", 0.8, "--num-perm", 64, "--ngram", 2, "--embedder", "none",
      "--embed-threshold", 0.85, "--ann", "ivf"],
     {"threshold": 0.8, "num_perm": 64, "ngram": 2, "embedder": None, "embed_threshold": 0.85,
      "ann": "ivf"}),
    (["--embedder", "openai:emb", "--batch-size", 7, "--cache", "record", "--rps", 3],
     {"embedder": "openai:emb", "batch_size": 7, "cache": "record", "rps": 3.0}),
    (["--executor", "ray", "--ray-workers", 3, "--ray-address", "127.0.0.1:6379"],
     {"executor": "ray", "ray_workers": 3, "ray_address": "127.0.0.1:6379"}),
]
FLAGS = "SELECT text, is_duplicate, duplicate_of, dup_stage FROM personas ORDER BY ALL"
VECTORS = "SELECT persona_id, model, vector FROM persona_embeddings ORDER BY ALL"


def hub(db: Path) -> Path:
    """A hub with near-duplicates for both stages (edit_block: left to the embeddings)."""
    people = db.with_suffix(".jsonl")
    texts = planted_corpus(40, 30, length=(60, 60), kinds=("swap", "edit_block"), seed=7).texts
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    return db


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (the job itself is not run)."""
    return handed_runs(monkeypatch, JobResult("dedup-1", "finished", DedupSummary(())))


@pytest.mark.parametrize("flags,options", FLAG_SETS, ids=["defaults", "what-it-marks", "engine", "ray"])
@pytest.mark.slow
def test_the_command_and_the_api_build_the_same_config(tmp_path: Path, handed: list[dict[str, Any]],
                                                       flags: list[object],
                                                       options: dict[str, Any]) -> None:
    db = tmp_path / "h.duckdb"
    hub(db)
    result = invoke("personas", "dedup", "--db", db, *flags)
    assert result.exit_code == 0, result.output
    personahub.dedup(db=db, **options)
    (cli, api) = handed
    assert isinstance(cli["config"], DedupJobConfig) and cli["config"] == api["config"]
    assert cli["kind"] == api["kind"] == "dedup" and cli["db"] == api["db"] == str(db)
    assert cli["resume"] is api["resume"] is None


def stop_at_second_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C inside the commit of stage 2's second batch of vectors."""
    seen: list[int] = []
    real = dedup_spec.write_vectors

    def counting(*args: Any) -> int:
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(dedup_spec, "write_vectors", counting)


@pytest.mark.slow
def test_an_interrupted_dedup_job_resumes_through_the_api_and_the_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = hub(tmp_path / "whole.duckdb")
    api_cut, cli_cut = tmp_path / "api.duckdb", tmp_path / "cli.duckdb"
    shutil.copy(whole, api_cut)
    shutil.copy(whole, cli_cut)
    done = personahub.dedup(db=whole, batch_size=10)
    assert done.summary.stage("embedding").marked > 0  # type: ignore[union-attr]
    for db in (api_cut, cli_cut):
        with monkeypatch.context() as patch:
            stop_at_second_batch(patch)
            with pytest.raises(KeyboardInterrupt, match="interrupted"):
                personahub.dedup(db=db, batch_size=10)
        assert len(rows(db, VECTORS)) == 10  # the first batch's, whole
    (stopped,) = jobs_store.list_jobs(connect(api_cut, read_only=True), kind="dedup")
    assert stopped.status == "interrupted"
    with pytest.raises(PersonahubError, match="the job's embed_threshold is 0.9, not 0.5"):
        personahub.dedup(db=api_cut, resume=stopped.job_id, embed_threshold=0.5)
    resumed = personahub.dedup(db=api_cut, resume=stopped.job_id, batch_size=25)
    assert resumed.job_id == stopped.job_id

    (cli_job,) = jobs_store.list_jobs(connect(cli_cut, read_only=True), kind="dedup")
    listed = invoke("jobs", "--db", cli_cut, "--json")
    assert listed.exit_code == 0
    assert [(j["job_id"], j["kind"], j["status"], j["what"]) for j in json.loads(listed.stdout)] \
        == [(cli_job.job_id, "dedup", "interrupted", "embedder hash")]
    again = invoke("resume", cli_job.job_id, "--db", cli_cut)
    assert again.exit_code == 0, again.output
    assert "total marked" in again.stdout
    for db in (api_cut, cli_cut):
        assert rows(db, FLAGS) == rows(whole, FLAGS)
        assert rows(db, VECTORS) == rows(whole, VECTORS)
        assert rows(db, "SELECT status FROM jobs WHERE kind = 'dedup'") == [("finished",)]

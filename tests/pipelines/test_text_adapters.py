"""``personahub personas from-text`` and ``personahub.text_to_persona(...)`` are thin adapters over
one ``TextConfig``: for the same settings they hand the kernel the same config, and over a corpus
that has its job already both go on with that job with the same settings. ``personahub resume
ID`` asks with the job's recorded model unless ``--llm`` is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub import executors, runtime
from personahub.core import jobs_store
from personahub.core.kernel import JobResult
from personahub.core.store import connect, transaction
from personahub.personas.text_to_persona import TextToPersonaSummary
from personahub.pipelines.synthesize import SynthSummary
from personahub.pipelines.text_to_persona import TextConfig
from tests.cli_helpers import invoke

# (command-line flags after CORPUS, the same as keyword arguments of personahub.text_to_persona)
FLAG_SETS: list[tuple[list[object], dict[str, Any]]] = [
    ([], {}),
    (["--relations", "like,read", "--per-text", 3, "--limit", 7, "--split", "line",
      "--corpus", "notes", "--skip-bad", "--language", "de", "--seed", 4, "--temperature", 0.3,
      "--max-tokens", 200, "--top-p", 0.8, "--structured", "json_object"],
     {"relations": "like,read", "per_text": 3, "limit": 7, "split": "line", "corpus_name": "notes",
      "skip_bad": True, "language": "de", "seed": 4, "temperature": 0.3, "max_tokens": 200,
      "top_p": 0.8, "structured": "json_object"}),
    (["--cache", "record", "--id-column", "id", "--text-column", "body"],
     {"cache": "record", "id_column": "id", "text_column": "body"}),
    (["--concurrency", "auto", "--timeout", 12, "--rps", 2,
      "--batch-size", 5, "--max-failed-share", 0.5, "--executor", "ray", "--ray-workers", 3,
      "--ray-address", "127.0.0.1:6379"],
     {"concurrency": "auto", "timeout_s": 12.0, "rps": 2.0, "batch_size": 5,
      "max_failed_share": 0.5, "executor": "ray", "ray_workers": 3,
      "ray_address": "127.0.0.1:6379"}),
]


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (the job itself is not run)."""
    seen: list[dict[str, Any]] = []

    def fake_run(spec: Any, config: Any, db: Any, **kwargs: Any) -> JobResult[Any]:
        seen.append({"kind": spec.kind, "config": config, "db": str(db), "resume": kwargs["resume"]})
        summary: Any = TextToPersonaSummary(corpus="c")
        if spec.kind == "synthesis":
            summary = SynthSummary(job_id="synth-1", task="instruction", prompting="zero-shot",
                                   engine="offline", offline=True)
        return JobResult("text-1", "finished", summary)

    monkeypatch.setattr(runtime, "run", fake_run)
    monkeypatch.setattr(executors, "ray_installed", lambda: True)  # compared, never run
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return seen


def _corpus(folder: Path) -> Path:
    path = folder / "corpus.txt"
    path.write_text("A note on repairing bicycle chains.\n\nA note on sourdough starters.\n")
    return path


@pytest.mark.parametrize("flags,options", FLAG_SETS, ids=["defaults", "what-it-makes", "columns", "engine"])
@pytest.mark.slow
def test_the_command_and_the_api_build_the_same_config(tmp_path: Path, handed: list[dict[str, Any]],
                                                       flags: list[object],
                                                       options: dict[str, Any]) -> None:
    corpus, db = _corpus(tmp_path), tmp_path / "t.duckdb"
    connect(db).close()  # the end-of-job preview reads it
    result = invoke("personas", "from-text", corpus, "--db", db, *flags)
    assert result.exit_code == 0, result.output
    personahub.text_to_persona(corpus, db=db, **options)
    (cli, api) = handed
    assert isinstance(cli["config"], TextConfig) and cli["config"] == api["config"]
    assert cli["config"].path == str(corpus.resolve())
    assert cli["kind"] == api["kind"] == "text_to_persona" and cli["db"] == api["db"] == str(db)
    assert cli["resume"] is api["resume"] is None


def _text_job(db: Path, job_id: str, corpus: str, llm: str) -> None:
    """A stopped text job over ``corpus`` that recorded model ``llm``."""
    con = connect(db)
    try:
        with transaction(con):
            jobs_store.create_job(con, job_id, "text_to_persona",
                                  {"corpus": corpus, "path": "/nowhere/corpus.txt", "llm": llm,
                                   "relations": ["read"], "seed": 0})
            con.execute("INSERT INTO text_jobs VALUES (?, ?)", [job_id, corpus])
        jobs_store.finish_job(con, job_id, "interrupted", "interrupted by SIGINT")
    finally:
        con.close()


def test_a_run_over_a_corpus_with_its_job_goes_on_with_it(tmp_path: Path,
                                                          handed: list[dict[str, Any]]) -> None:
    corpus, db = _corpus(tmp_path), tmp_path / "t.duckdb"
    _text_job(db, "text-1", "corpus.txt", "offline")
    assert invoke("personas", "from-text", corpus, "--db", db, "--relations", "read",
                  "--limit", 1).exit_code == 0
    personahub.text_to_persona(corpus, db=db, relations="read", limit=1)
    (cli, api) = handed
    assert cli == api and cli["resume"] == "text-1"
    config = cli["config"]  # the engine settings, and of what the job makes only what was named
    assert config["relations"] == ("read",) and config["limit"] == 1
    assert config["path"] == str(corpus.resolve()) and "seed" not in config


RECORDED = "http://127.0.0.1:9/v1?model=recorded"


@pytest.mark.parametrize("argv", [["resume", "text-1"], ["personas", "from-text", "--resume", "text-1"]],
                         ids=["resume ID", "from-text --resume"])
def test_a_resume_asks_the_recorded_model_unless_llm_is_given(tmp_path: Path, handed: list[dict[str, Any]],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              argv: list[str]) -> None:
    db = tmp_path / "t.duckdb"
    _text_job(db, "text-1", "corpus.txt", RECORDED)
    monkeypatch.setenv("PERSONAHUB_LLM", "offline")  # the job's own model wins over the default
    assert invoke(*argv, "--db", db).exit_code == 0
    assert invoke(*argv, "--db", db, "--llm", "offline").exit_code == 0
    (recorded, given) = handed
    assert recorded["resume"] == given["resume"] == "text-1"
    assert recorded["config"]["llm"] == RECORDED and given["config"]["llm"] == "offline"


def test_resume_by_id_asks_a_synthesis_with_its_recorded_model(tmp_path: Path,
                                                               handed: list[dict[str, Any]]) -> None:
    db = tmp_path / "s.duckdb"
    con = connect(db)
    try:
        jobs_store.create_job(con, "synth-1", "synthesis", {"task": "instruction", "llm": RECORDED})
        jobs_store.finish_job(con, "synth-1", "failed", "HTTP 503")
    finally:
        con.close()
    assert invoke("resume", "synth-1", "--db", db).exit_code == 0
    assert invoke("resume", "synth-1", "--db", db, "--llm", "offline").exit_code == 0
    assert [h["config"]["llm"] for h in handed] == [RECORDED, "offline"]

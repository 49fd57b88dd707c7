"""``personahub judge`` / ``personahub.judge`` and ``personahub interview`` /
``personahub.interview`` are thin adapters: for the same settings they hand the kernel the same
config (so the command and the API do the same work), and an interview's resume hands it the
same engine settings from both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub import executors, runtime
from personahub.core.kernel import JobResult
from personahub.core.store import connect
from personahub.pipelines import interview as interview_module
from personahub.pipelines.interview import InterviewConfig, InterviewResult
from personahub.pipelines.judge import JudgeConfig, JudgeSummary
from tests.cli_helpers import invoke


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (nothing is asked)."""
    seen: list[dict[str, Any]] = []

    def fake_run(spec: Any, config: Any, db: Any, **kwargs: Any) -> JobResult[Any]:
        seen.append({"kind": spec.kind, "config": config, "db": str(db),
                     "resume": kwargs["resume"]})
        if spec.kind == "judge":
            summary: Any = JudgeSummary(judge_id="judge-1", target_kind="synthesis",
                                        target_id="s-1", engine="offline", offline=True)
        else:
            summary = InterviewResult("iv-1", "r-1", 1, "q", "offline", True)
        return JobResult("x-1", "finished", summary)

    monkeypatch.setattr(runtime, "run", fake_run)
    # the request is checked against a run in the database first: none here
    monkeypatch.setattr(interview_module, "prepare", lambda db, request: None)
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    # the config is compared, nothing runs: --executor ray is accepted without the [ray] extra
    monkeypatch.setattr(executors, "ray_installed", lambda: True)
    return seen


JUDGE_SETS: list[tuple[list[object], dict[str, Any]]] = [
    ([], {}),
    (["--task", "math_problem", "--sample", 5, "--seed", 3, "--temperature", 0.2,
      "--max-tokens", 200, "--top-p", 0.8, "--structured", "json_object"],
     {"task": "math_problem", "sample": 5, "seed": 3, "temperature": 0.2, "max_tokens": 200,
      "top_p": 0.8, "structured": "json_object"}),
    (["--concurrency", "auto", "--timeout", 7, "--rps", 3, "--batch-size", 4,
      "--offline-latency", 0.25, "--max-failed-share", 0.5],
     {"concurrency": "auto", "timeout_s": 7.0, "rps": 3.0, "batch_size": 4,
      "offline_latency_s": 0.25, "max_failed_share": 0.5}),
    (["--cache", "record"], {"cache": "record"}),
    (["--executor", "ray", "--ray-address", "127.0.0.1:6379", "--ray-workers", 2],
     {"executor": "ray", "ray_address": "127.0.0.1:6379", "ray_workers": 2}),
]


@pytest.mark.parametrize("flags,options", JUDGE_SETS,
                         ids=["defaults", "generation", "engine", "cache", "ray"])
def test_judge_command_and_api_build_the_same_config(tmp_path: Path, handed: list[dict[str, Any]],
                                                     flags: list[object],
                                                     options: dict[str, Any]) -> None:
    db = tmp_path / "j.duckdb"
    connect(db).close()
    result = invoke("judge", "--job", "s-1", "--db", db, *flags)
    assert result.exit_code == 0, result.output
    personahub.judge(job="s-1", db=db, **options)
    (cli, api) = handed
    assert isinstance(cli["config"], JudgeConfig) and cli == api
    assert cli["kind"] == "judge" and cli["db"] == str(db) and cli["resume"] is None


INTERVIEW_SETS: list[tuple[list[object], dict[str, Any]]] = [
    (["--agent", "3"], {"agent": "3"}),
    (["--carve", "hop=0", "--carve", "age>30", "--personas", "text ILIKE '%a%'", "--limit", 4,
      "--step", 1, "--temperature", 0.3, "--max-tokens", 120, "--structured", "json_schema"],
     {"carve": ("hop=0", "age>30"), "where": "text ILIKE '%a%'", "limit": 4, "step": 1,
      "temperature": 0.3, "max_tokens": 120, "structured": "json_schema"}),
    (["--agent", "1", "--concurrency", 3, "--timeout", 9, "--rps", 2, "--batch-size", 5,
      "--offline-latency", 0.5, "--max-failed-share", 0.6],
     {"agent": "1", "concurrency": 3, "timeout_s": 9.0, "rps": 2.0, "batch_size": 5,
      "offline_latency_s": 0.5, "max_failed_share": 0.6}),
    (["--agent", "2", "--cache", "replay"], {"agent": "2", "cache": "replay"}),
    (["--agent", "2", "--executor", "ray", "--ray-workers", 3],
     {"agent": "2", "executor": "ray", "ray_workers": 3}),
]


@pytest.mark.parametrize("flags,options", INTERVIEW_SETS,
                         ids=["agent", "group", "engine", "cache", "ray"])
def test_interview_command_and_api_build_the_same_config(tmp_path: Path,
                                                         handed: list[dict[str, Any]],
                                                         flags: list[object],
                                                         options: dict[str, Any]) -> None:
    db = tmp_path / "i.duckdb"
    connect(db).close()
    result = invoke("interview", "--run", "r-1", "--db", db, *flags, "How is the ferry?")
    assert result.exit_code == 0, result.output
    personahub.interview("How is the ferry?", run="r-1", db=db, **options)
    (cli, api) = handed
    assert isinstance(cli["config"], InterviewConfig) and cli == api
    assert cli["kind"] == "interview" and cli["resume"] is None


def test_an_interview_resume_hands_only_how_it_asks(tmp_path: Path,
                                                    handed: list[dict[str, Any]]) -> None:
    db = tmp_path / "i.duckdb"
    connect(db).close()
    assert invoke("interview", "--resume", "iv-1", "--db", db, "--offline-latency", 0.5,
                  "--batch-size", 3).exit_code == 0
    personahub.interview(resume="iv-1", db=db, offline_latency_s=0.5, batch_size=3)
    (cli, api) = handed
    assert cli == api and cli["resume"] == "iv-1"
    assert cli["config"] == {"db": str(db), "llm": "offline", "concurrency": 16,
                             "timeout_s": 60.0, "offline_latency_s": 0.5, "batch_size": 3,
                             "rps": None, "cache": "off", "executor": "local",
                             "ray_address": None, "ray_workers": None,
                             "provider_batch": False, "provider_batch_file": None,
                             "provider_batch_window": "24h", "provider_batch_fallback": "batch",
                             "provider_batch_poll_s": 5.0}  # the job keeps its own --max-failed-share
    with pytest.raises(personahub.PersonahubError, match="agent cannot change"):
        personahub.interview(resume="iv-1", db=db, agent="2")
    with pytest.raises(personahub.PersonahubError, match="keeps its question and run"):
        personahub.interview("Other?", resume="iv-1", db=db)
    assert "keeps its question and run" in invoke("interview", "--resume", "iv-1", "--db", db,
                                                  "Other?").stderr

"""``personahub synthesize`` and ``personahub.synthesize(...)`` are thin adapters over one
``SynthConfig``: for the same settings they hand the kernel the same config (the job does the
same work), and a resume hands it only what a resume may change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub import executors, runtime
from personahub.core.errors import PersonahubError
from personahub.core.kernel import JobResult
from personahub.pipelines.synthesize import SynthConfig, SynthSummary
from tests.cli_helpers import invoke

# (command-line flags after TASK, the same as keyword arguments of personahub.synthesize)
FLAG_SETS: list[tuple[list[object], dict[str, Any]]] = [
    ([], {}),
    (["--n", 7, "--seed", 3, "--solve", "--batch-size", 5],
     {"n": 7, "seed": 3, "solve": True, "batch_size": 5}),
    (["--n", 4, "--per-persona", 3, "--allow-fewer"],
     {"n": 4, "per_persona": 3, "allow_fewer": True}),
    (["--personas", "text ILIKE '%nurse%'", "--carve", "age>30", "--carve", "hop=0", "--sample",
      "head", "--prompting", "few-shot", "--temperature", 0.7, "--max-tokens", 300, "--top-p", 0.9,
      "--structured", "json_object", "--concurrency", "auto", "--timeout", 12, "--rps", 2,
      "--cache", "record", "--max-failed-share", 0.5],
     {"where": "text ILIKE '%nurse%'", "carve": ("age>30", "hop=0"), "sample": "head",
      "prompting": "few-shot", "temperature": 0.7, "max_tokens": 300, "top_p": 0.9,
      "structured": "json_object", "concurrency": "auto", "timeout_s": 12.0, "rps": 2.0,
      "cache": "record", "max_failed_share": 0.5}),
    (["--prompting", "persona-few-shot", "--offline-latency", 0.25, "--executor", "ray",
      "--ray-workers", 3, "--ray-address", "127.0.0.1:6379"],
     {"prompting": "persona-few-shot", "offline_latency_s": 0.25, "executor": "ray",
      "ray_workers": 3, "ray_address": "127.0.0.1:6379"}),
]


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (the job itself is not run)."""
    seen: list[dict[str, Any]] = []

    def fake_run(spec: Any, config: Any, db: Any, **kwargs: Any) -> JobResult[SynthSummary]:
        seen.append({"kind": spec.kind, "config": config, "db": str(db), "resume": kwargs["resume"]})
        summary = SynthSummary(job_id="synth-x", task=getattr(config, "task", "tool_spec"),
                               prompting="zero-shot", engine="offline", offline=True)
        return JobResult("synth-x", "finished", summary)

    monkeypatch.setattr(runtime, "run", fake_run)
    # the config is compared, nothing runs: --executor ray is accepted without the [ray] extra
    monkeypatch.setattr(executors, "ray_installed", lambda: True)
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return seen


@pytest.mark.parametrize("flags,options", FLAG_SETS,
                         ids=["defaults", "solve", "per-persona", "filters", "engine"])
def test_the_command_and_the_api_build_the_same_config(tmp_path: Path, handed: list[dict[str, Any]],
                                                       flags: list[object],
                                                       options: dict[str, Any]) -> None:
    db = tmp_path / "s.duckdb"
    result = invoke("synthesize", "math_problem", "--db", db, *flags)
    assert result.exit_code == 0, result.output
    personahub.synthesize("math_problem", db=db, **options)
    (cli, api) = handed
    assert isinstance(cli["config"], SynthConfig) and cli == api
    assert cli["kind"] == "synthesis" and cli["db"] == str(db) and cli["resume"] is None


def test_a_resume_hands_only_what_a_resume_may_change(tmp_path: Path,
                                                      handed: list[dict[str, Any]]) -> None:
    db = tmp_path / "s.duckdb"
    assert invoke("synthesize", "--resume", "synth-1", "--db", db, "--concurrency", 4,
                  "--seed", 9).exit_code == 0
    (resumed,) = handed
    assert resumed["resume"] == "synth-1"
    config = resumed["config"]  # engine settings only: the task, seed, ... are the job's
    assert config["concurrency"] == 4 and "seed" not in config and "task" not in config
    assert "max_failed_share" not in config  # not given: the job keeps its own
    assert config["allow_fewer"] is False  # how this invocation treats a shortfall


def test_an_unknown_api_option_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(PersonahubError, match="unknown option.*colour"):
        personahub.synthesize("math_problem", db=tmp_path / "s.duckdb", colour="red")

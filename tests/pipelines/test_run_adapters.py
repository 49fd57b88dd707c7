"""``personahub run`` and ``personahub.run_scenario(...)`` are thin adapters over one
``RunConfig``: for the same settings they hand the kernel the same config (the run does the same
work), and ``personahub run --resume`` and ``personahub.resume_run`` hand it the same engine
settings, none of what the run makes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub import executors, runtime
from personahub.core.kernel import JobResult
from personahub.core.store import connect
from personahub.pipelines.run import RunConfig, RunSummary
from tests.cli_helpers import invoke

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "scenarios" / "product_launch.py"

# (command-line flags after SCENARIO, the same as keyword arguments of personahub.run_scenario)
FLAG_SETS: list[tuple[list[object], dict[str, Any]]] = [
    ([], {}),
    (["--steps", 2, "--seed", 5, "--temperature", 0.7, "--max-tokens", 300, "--top-p", 0.9,
      "--structured", "json_object", "--price-in", 1.5, "--price-out", 2],
     {"steps": 2, "seed": 5, "temperature": 0.7, "max_tokens": 300, "top_p": 0.9,
      "structured": "json_object", "price_in": 1.5, "price_out": 2.0}),
    (["--concurrency", "auto", "--timeout", 12, "--rps", 2, "--cache", "record",
      "--max-failed-share", 0.5, "--offline-latency", 0.25, "--executor", "ray",
      "--ray-workers", 3, "--ray-address", "127.0.0.1:6379"],
     {"concurrency": "auto", "timeout_s": 12.0, "rps": 2.0, "cache": "record",
      "max_failed_share": 0.5, "offline_latency_s": 0.25, "executor": "ray", "ray_workers": 3,
      "ray_address": "127.0.0.1:6379"}),
]


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (the run itself is not run)."""
    seen: list[dict[str, Any]] = []

    def fake_run(spec: Any, config: Any, db: Any, **kwargs: Any) -> JobResult[RunSummary]:
        seen.append({"kind": spec.kind, "config": config, "db": str(db), "resume": kwargs["resume"]})
        summary = RunSummary(run_id="r-1", scenario="s", db=Path(db), engine="offline",
                             offline=True, agents=0, edges=0, steps=0)
        return JobResult("r-1", "finished", summary)

    monkeypatch.setattr(runtime, "run", fake_run)
    # the config is compared, nothing runs: --executor ray is accepted without the [ray] extra
    monkeypatch.setattr(executors, "ray_installed", lambda: True)
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return seen


def _without_scenario(config: RunConfig) -> RunConfig:
    """The config without the loaded scenario (two loads of one file hold different function
    objects); its file, digest, seed and steps stay."""
    return dataclasses.replace(config, scenario=None)


@pytest.mark.parametrize("flags,options", FLAG_SETS, ids=["defaults", "generation", "engine"])
def test_the_command_and_the_api_build_the_same_config(tmp_path: Path, handed: list[dict[str, Any]],
                                                       flags: list[object],
                                                       options: dict[str, Any]) -> None:
    db = tmp_path / "r.duckdb"
    result = invoke("run", LAUNCH, "--db", db, *flags)
    assert result.exit_code == 0, result.output
    personahub.run_scenario(LAUNCH, db=db, **options)
    (cli, api) = handed
    assert isinstance(cli["config"], RunConfig) and isinstance(api["config"], RunConfig)
    assert cli["config"].scenario.name == api["config"].scenario.name == "product_launch"
    assert _without_scenario(cli["config"]) == _without_scenario(api["config"])
    assert cli["config"].scenario_file == str(LAUNCH) and cli["config"].scenario_sha256
    assert cli["kind"] == api["kind"] == "run" and cli["db"] == api["db"] == str(db)
    assert cli["resume"] is api["resume"] is None


def test_a_resume_hands_only_what_a_resume_may_change(tmp_path: Path,
                                                      handed: list[dict[str, Any]]) -> None:
    db = tmp_path / "r.duckdb"
    connect(db).close()
    assert invoke("run", "--resume", "r-1", "--db", db, "--offline-latency", 0.5,
                  "--max-failed-share", 0.4).exit_code == 0
    personahub.resume_run("r-1", db=db, offline_latency_s=0.5, max_failed_share=0.4)
    (cli, api) = handed
    assert cli == api and cli["resume"] == "r-1"
    config = cli["config"]  # engine settings only: the scenario, seed, steps are the run's
    assert config == {"db": db, "offline_latency_s": 0.5, "executor": "local",
                      "ray_address": None, "ray_workers": None, "max_failed_share": 0.4,
                      "llm": "offline"}

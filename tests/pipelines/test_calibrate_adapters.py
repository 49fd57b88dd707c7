"""``personahub calibrate`` and ``personahub.calibrate(...)`` are thin adapters over one
``CalibrateConfig``: the same settings hand the kernel the same config, and a resume hands it
only what a resume may change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub import runtime
from personahub.core.kernel import JobResult
from personahub.pipelines.calibrate import CalibrateConfig, CalibrationSummary
from tests.cli_helpers import invoke

# (command-line flags after SURVEY --population P, the same as keyword arguments)
FLAG_SETS: list[tuple[list[object], dict[str, Any]]] = [
    ([], {}),
    (["--n", 7, "--seed", 3, "--no-persona-n", 0, "--limit", 2, "--no-refusal-option"],
     {"n": 7, "seed": 3, "no_persona_n": 0, "limit": 2, "offer_refusal": False}),
    (["--steering", "attributes", "--steering", "persona", "--question", "Q1", "--question", "Q2",
      "--attribute", "SEX", "--carve", "age>30", "--temperature", 0.7, "--max-tokens", 300,
      "--top-p", 0.9, "--structured", "json_object"],
     {"steering": ("attributes", "persona"), "questions": ("Q1", "Q2"), "attributes": ("SEX",),
      "carve": ("age>30",), "temperature": 0.7, "max_tokens": 300, "top_p": 0.9,
      "structured": "json_object"}),
    (["--concurrency", "auto", "--timeout", 12, "--rps", 2, "--cache", "record",
      "--max-failed-share", 0.5, "--batch-size", 9, "--offline-latency", 0.25],
     {"concurrency": "auto", "timeout_s": 12.0, "rps": 2.0, "cache": "record",
      "max_failed_share": 0.5, "batch_size": 9, "offline_latency_s": 0.25}),
    (["--elicit", "distribution", "--elicit", "few-shot:2"],
     {"elicit": ("distribution", "few-shot:2")}),
]


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (the job itself is not run)."""
    seen: list[dict[str, Any]] = []

    def fake_run(spec: Any, config: Any, db: Any, **kwargs: Any) -> JobResult[CalibrationSummary]:
        seen.append({"kind": spec.kind, "config": config, "db": str(db),
                     "resume": kwargs["resume"]})
        summary = CalibrationSummary(job_id="calib-x", survey="s", population="p",
                                     steering=("persona",))
        return JobResult("calib-x", "finished", summary)

    monkeypatch.setattr(runtime, "run", fake_run)
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    return seen


@pytest.mark.parametrize("flags,options", FLAG_SETS, ids=["defaults", "sizes", "what", "engine", "elicit"])
def test_the_command_and_the_api_build_the_same_config(tmp_path: Path, handed: list[dict[str, Any]],
                                                       flags: list[object],
                                                       options: dict[str, Any]) -> None:
    db, survey = tmp_path / "c.duckdb", str(tmp_path / "survey.csv")
    result = invoke("calibrate", survey, "--population", "pop-1", "--db", db, *flags)
    assert result.exit_code == 0, result.output
    personahub.calibrate(survey, population="pop-1", db=db, **options)
    (cli, api) = handed
    assert isinstance(cli["config"], CalibrateConfig) and cli == api
    assert cli["kind"] == "calibration" and cli["resume"] is None


def test_a_resume_hands_only_what_a_resume_may_change(tmp_path: Path,
                                                      handed: list[dict[str, Any]]) -> None:
    db = tmp_path / "c.duckdb"
    assert invoke("calibrate", "--resume", "calib-1", "--db", db, "--concurrency", 4,
                  "--seed", 9, "--n", 50).exit_code == 0
    personahub.calibrate(resume="calib-1", db=db, concurrency=4)
    (cli, api) = handed
    assert cli["resume"] == api["resume"] == "calib-1"
    assert cli["config"]["concurrency"] == api["config"]["concurrency"] == 4
    for config in (cli["config"], api["config"]):  # the survey, seed, n ... are the job's
        assert not {"seed", "n", "survey", "population"} & set(config)
    with pytest.raises(personahub.PersonahubError, match="steering"):
        personahub.calibrate(resume="calib-1", db=db, steering=("attributes",))

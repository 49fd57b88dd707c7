"""``personahub personas sample-population --llm`` and ``personahub.write_population(...)`` are thin
adapters over one ``WriteConfig`` (``personahub.api.population_write_config``): the same settings
hand the kernel the same config, a resume hands it only what a resume may change, and the model
and engine flags are refused where no model is called."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import duckdb
import pytest

import personahub
from personahub import executors, runtime
from personahub.core.kernel import JobResult, engine_fields
from personahub.personas.population import Population
from personahub.pipelines.population_write import WriteConfig, WriteSummary
from tests.cli_helpers import invoke, usage_error
from tests.pipelines.calibrate_fixtures import MARGINALS

# (command-line flags after --marginals FILE --llm offline, the same as keyword arguments)
FLAG_SETS: list[tuple[list[object], dict[str, Any]]] = [
    ([], {}),
    (["--n", 7, "--seed", 3, "--temperature", 0.7, "--max-tokens", 300, "--top-p", 0.9,
      "--structured", "json_object"],
     {"n": 7, "seed": 3, "temperature": 0.7, "max_tokens": 300, "top_p": 0.9,
      "structured": "json_object"}),
    (["--concurrency", "auto", "--timeout", 12, "--rps", 2, "--cache", "record",
      "--max-failed-share", 0.5, "--batch-size", 9, "--offline-latency", 0.25],
     {"concurrency": "auto", "timeout_s": 12.0, "rps": 2.0, "cache": "record",
      "max_failed_share": 0.5, "batch_size": 9, "offline_latency_s": 0.25}),
    (["--executor", "ray", "--ray-workers", 3, "--ray-address", "127.0.0.1:6379",
      "--concurrency", 4],
     {"executor": "ray", "ray_workers": 3, "ray_address": "127.0.0.1:6379", "concurrency": 4}),
]


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each adapter hands ``runtime.run`` (the job itself is not run)."""
    seen: list[dict[str, Any]] = []

    def fake_run(spec: Any, config: Any, db: Any, **kwargs: Any) -> JobResult[WriteSummary]:
        seen.append({"kind": spec.kind, "config": config, "db": str(db),
                     "resume": kwargs["resume"]})
        return JobResult("popwrite-x", "finished",
                         WriteSummary("popwrite-x", "pop-1-abcdef", "pop-1", 1,
                                      Population("pop-1", ({"age": "18-29"},), {}, 0), written=1))

    monkeypatch.setattr(runtime, "run", fake_run)
    monkeypatch.setattr(executors, "ray_installed", lambda: True)  # compared, never run
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("PERSONAHUB_OFFLINE_LATENCY", raising=False)
    return seen


def _marginals(folder: Path) -> Path:
    path = folder / "shares.csv"
    path.write_text(MARGINALS, encoding="utf-8")
    return path


@pytest.mark.parametrize("flags,options", FLAG_SETS,
                         ids=["defaults", "generation", "engine", "ray"])
def test_the_command_and_the_api_build_the_same_config(tmp_path: Path, handed: list[dict[str, Any]],
                                                       flags: list[object],
                                                       options: dict[str, Any]) -> None:
    db, marginals = tmp_path / "p.duckdb", _marginals(tmp_path)
    result = invoke("personas", "sample-population", "--marginals", marginals, "--db", db,
                    "--llm", "offline", *flags)
    assert result.exit_code == 0, result.output
    personahub.write_population(marginals, db=db, llm="offline", **options)
    (cli, api) = handed
    assert isinstance(cli["config"], WriteConfig) and cli == api
    assert cli["kind"] == "population_write" and cli["resume"] is None
    assert cli["config"].marginals == str(marginals) and cli["config"].joint is None


def test_a_resume_hands_only_what_a_resume_may_change(tmp_path: Path,
                                                      handed: list[dict[str, Any]]) -> None:
    db = tmp_path / "p.duckdb"
    assert invoke("personas", "sample-population", "--resume", "popwrite-1", "--db", db,
                  "--concurrency", 4, "--max-failed-share", 0.5).exit_code == 0
    personahub.write_population(resume="popwrite-1", db=db, concurrency=4, max_failed_share=0.5)
    assert invoke("personas", "sample-population", "--resume", "popwrite-1", "--db", db,
                  "--rps", 2).exit_code == 0
    (cli, api, unshared) = handed
    assert cli["resume"] == api["resume"] == "popwrite-1"
    # the command hands every engine setting (its default where not given), the API those named;
    # both the model the job recorded (none here: offline)
    defaults = {f.name: f.default for f in fields(WriteConfig)
                if f.name in engine_fields(WriteConfig) - {"llm", "max_failed_share"}}
    assert api["config"] == {"llm": "offline", "concurrency": 4, "max_failed_share": 0.5}
    assert cli["config"] == {**defaults, **api["config"]}
    assert "max_failed_share" not in unshared["config"]  # not given: the job keeps its own
    assert set(unshared["config"]) <= engine_fields(WriteConfig)
    with pytest.raises(personahub.PersonahubError, match="temperature"):
        personahub.write_population(resume="popwrite-1", db=db, temperature=0.3)
    with pytest.raises(personahub.PersonahubError, match="keeps its marginals"):
        personahub.write_population(tmp_path / "other.csv", resume="popwrite-1", db=db)
    for flags in (["--n", 5], ["--marginals", _marginals(tmp_path)], ["--seed", 2]):
        line = usage_error(invoke("personas", "sample-population", "--resume", "popwrite-1",
                                  "--db", db, *flags))
        assert f"leave out {flags[0]}" in line
    assert len(handed) == 3


def test_an_unknown_api_option_is_refused(tmp_path: Path, handed: list[dict[str, Any]]) -> None:
    marginals = _marginals(tmp_path)
    with pytest.raises(personahub.PersonahubError, match="unknown option.*steering"):
        personahub.write_population(marginals, db=tmp_path / "p.duckdb", steering="persona")
    with pytest.raises(personahub.PersonahubError, match="marginals=FILE, joint=FILE"):
        personahub.write_population(db=tmp_path / "p.duckdb")
    assert handed == []


MODEL_FLAGS: list[list[object]] = [
    ["--concurrency", 4], ["--timeout", 5], ["--offline-latency", 0.1], ["--cache", "record"],
    ["--rps", 2], ["--structured", "tools"], ["--max-tokens", 100], ["--temperature", 0.5],
    ["--top-p", 0.9], ["--executor", "local"], ["--ray-address", "127.0.0.1:6379"],
    ["--ray-workers", 2], ["--max-failed-share", 0.5], ["--batch-size", 3], ["--fresh"],
    ["--json"]]


@pytest.mark.parametrize("flag", MODEL_FLAGS, ids=[str(f[0]) for f in MODEL_FLAGS])
def test_a_model_flag_without_llm_is_a_usage_error(tmp_path: Path, handed: list[dict[str, Any]],
                                                   flag: list[object]) -> None:
    db = tmp_path / "p.duckdb"
    line = usage_error(invoke("personas", "sample-population", "--marginals",
                              _marginals(tmp_path), "--db", db, *flag))
    assert f"{flag[0]} needs --llm" in line and "template" in line
    assert not db.exists() and handed == []


def test_engine_settings_from_the_environment_leave_the_template_path_alone(
        tmp_path: Path, handed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("PERSONAHUB_OFFLINE_LATENCY", "0.5")
    db = tmp_path / "p.duckdb"
    result = invoke("personas", "sample-population", "--marginals", _marginals(tmp_path),
                    "--n", 4, "--db", db)
    assert result.exit_code == 0, result.output
    assert "text_origin=template" in result.stdout and handed == []
    line = usage_error(invoke("personas", "sample-population", "--marginals",
                              _marginals(tmp_path), "--db", db, "--rps", 1, "--cache", "record"))
    assert "--cache, --rps need --llm" in line


# --- the real job, through both adapters ----------------------------------------------------

def _people(db: Path, population_id: str) -> list[tuple[str, ...]]:
    """The hub's personas, the written population's id (which names its job, and so its persona
    ids) made neutral: each written person is known by its place (``source_ref``)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT text, source, source_ref, CAST(attributes AS VARCHAR) "
                           "FROM personas").fetchall()
    finally:
        con.close()
    return sorted(tuple(str(v).replace(population_id, "POP") for v in row) for row in rows)


def test_the_api_writes_the_people_the_command_writes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    marginals, base = _marginals(tmp_path), tmp_path / "base.duckdb"
    # a hub that already holds the template people of the same draw
    assert invoke("personas", "sample-population", "--marginals", marginals, "--n", 10,
                  "--seed", 4, "--db", base).exit_code == 0
    by_command, by_api = tmp_path / "command.duckdb", tmp_path / "api.duckdb"
    shutil.copy(base, by_command)
    shutil.copy(base, by_api)
    result = invoke("personas", "sample-population", "--marginals", marginals, "--n", 10,
                    "--seed", 4, "--db", by_command, "--llm", "offline", "--batch-size", 3,
                    "--temperature", 0.5, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "finished" and record["counts"]["written"] == 10
    job = personahub.write_population(marginals, n=10, seed=4, db=by_api, llm="offline",
                                      batch_size=3, temperature=0.5, progress=False)
    assert job.kind == "population_write" and job.status == "finished" and job.written == 10
    written = _people(by_api, job.population_id)
    assert written == _people(by_command, record["population_id"])
    assert len(written) == 20 and sum("POP person" in row[2] for row in written) == 10
    items = job.items()  # the handle reads the people it wrote
    assert len(items) == 10 and set(items["source_ref"]) == {
        f"{job.population_id} person {place}" for place in range(1, 11)}

"""An evaluation on Ray ("Resumable, on any executor"): ``personahub evaluate
--executor ray`` asks every solver's, scored model's and judge's calls on the job's one Ray
actor pool (each actor builds the other specs' clients from their settings:
``RayCaller.alongside``), and its tables are those of the same evaluation run locally; a run
stopped on Ray resumes there to the same tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import personahub
from personahub.core import kernel
from tests.cli_helpers import invoke
from tests.pipeline_helpers import rows
from tests.pipelines.every_kind import import_people

SOLVERS = ("offline?seed=1", "offline?seed=2")
MODEL = "offline?seed=3#answer"
# the evaluation's tables, without times, and its kept calls (a stopped batch's are 'discarded')
TABLES = {
    "answers": "SELECT item_id, role, spec, mode, sample, answer, reasoning, model "
               "FROM eval_answers ORDER BY ALL",
    "verified": "SELECT item_id, verified, reference, agreed, answered, agree "
                "FROM eval_verified ORDER BY ALL",
    "calls": "SELECT purpose, model_name, count(*) FROM llm_calls "
             "WHERE job_kind = 'evaluation' AND status = 'ok' GROUP BY ALL ORDER BY ALL",
}


def _evaluate(job: str, db: Path, *extra: object) -> Any:
    args: list[object] = ["evaluate", "--job", job, "--test-n", 5, "--agree", 1,
                          "--batch-size", 2, "--model", MODEL, "--db", db]
    for solver in SOLVERS:
        args += ["--solver", solver]
    return invoke(*args, *extra)


def _tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows(db, sql) for name, sql in TABLES.items()}


@pytest.fixture
def synthesized(tmp_path: Path) -> tuple[str, Path]:
    """A synthesis job of 10 offline items (its database the template the tests copy)."""
    db = tmp_path / "template.duckdb"
    import_people(tmp_path, db, 10)
    assert invoke("synthesize", "instruction", "--n", 10, "--db", db).exit_code == 0
    (job,), = rows(db, "SELECT job_id FROM jobs WHERE kind = 'synthesis'")
    return str(job), db


@pytest.fixture
def alongside(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The settings (spec, seed) of the clients the Ray pool was asked to answer for besides
    its own."""
    from personahub.executors.ray_actors import RayCaller

    asked: list[tuple[str, int]] = []
    real = RayCaller.alongside

    def recording(self: RayCaller, client: Any) -> Any:
        asked.append((client.settings.spec, client.settings.seed))
        return real(self, client)

    monkeypatch.setattr(RayCaller, "alongside", recording)
    return asked


@pytest.mark.slow
def test_an_evaluation_on_ray_makes_the_local_tables(local_ray: None,
                                                     alongside: list[tuple[str, int]],
                                                     synthesized: tuple[str, Path],
                                                     tmp_path: Path) -> None:
    job, template = synthesized
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    api_db = tmp_path / "api.duckdb"
    for db in (local_db, ray_db, api_db):
        db.write_bytes(template.read_bytes())
    local = _evaluate(job, local_db)
    assert local.exit_code == 0, local.output
    assert not alongside
    on_ray = _evaluate(job, ray_db, "--executor", "ray", "--ray-workers", 2)
    assert on_ray.exit_code == 0, on_ray.output
    # the second solver's and the model's calls went through the pool, as their own clients
    assert set(alongside) == {("offline", 2), ("offline", 3)}

    expected = _tables(local_db)
    answers = expected["answers"]
    by_spec: dict[str, list[str]] = {}
    for row in answers:
        by_spec.setdefault(row[2], []).append(row[5])
    # the seeds differ, so a worker answering with the pool's client would not match
    assert by_spec["offline?seed=1"] != by_spec["offline?seed=2"]
    assert len(answers) == 15 and expected["verified"]
    assert _tables(ray_db) == expected
    assert on_ray.stdout == local.stdout  # split, verified share, agreement, score lines
    (config,), = rows(ray_db, "SELECT config FROM jobs WHERE kind = 'evaluation'")
    assert json.loads(config)["executor"] == "ray"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("ray.duckdb.")]

    # the Python API takes the executor as the command does
    summary = personahub.evaluate(job=job, solvers=list(SOLVERS), db=api_db, test_n=5, agree=1,
                                  batch_size=2, models=[MODEL], executor="ray", ray_workers=2)
    assert summary.scores and _tables(api_db) == expected


@pytest.mark.slow
def test_an_evaluation_stopped_on_ray_resumes_there_to_the_same_tables(
        local_ray: None, synthesized: tuple[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    job, template = synthesized
    whole_db, db = tmp_path / "whole.duckdb", tmp_path / "stopped.duckdb"
    for copy in (whole_db, db):
        copy.write_bytes(template.read_bytes())
    whole = _evaluate(job, whole_db)
    assert whole.exit_code == 0, whole.output

    seen: list[int] = []
    real = kernel._write

    def stopping(ctx: Any, outcome: Any) -> Any:  # Ctrl-C as the third batch (one answer,
        # the first solver's fifth item) commits
        seen.append(1)
        if len(seen) == 4:  # the job's row, two batches, then the stop
            raise KeyboardInterrupt
        return real(ctx, outcome)

    with monkeypatch.context() as patch:
        patch.setattr(kernel, "_write", stopping)
        stopped = _evaluate(job, db, "--executor", "ray", "--ray-workers", 2)
    assert stopped.exit_code == 130, stopped.output
    (job_id, status), = rows(db, "SELECT job_id, status FROM jobs WHERE kind = 'evaluation'")
    assert status == "interrupted"
    assert rows(db, "SELECT count(*) FROM eval_answers") == [(4,)]  # two batches of two

    resumed = invoke("evaluate", "--resume", job_id, "--db", db, "--executor", "ray",
                     "--ray-workers", 2)
    assert resumed.exit_code == 0, resumed.output
    assert rows(db, "SELECT status FROM jobs WHERE kind = 'evaluation'") == [("finished",)]
    assert _tables(db) == _tables(whole_db)  # no answer lost, none kept twice
    # the answer of the batch in flight at the stop (its worker spilled it) is accounted for
    assert rows(db, "SELECT count(*) FROM llm_calls WHERE status = 'discarded'") == [(1,)]


@pytest.mark.slow
def test_an_item_set_on_ray_makes_the_local_tables(local_ray: None,
                                                   alongside: list[tuple[str, int]],
                                                   tmp_path: Path) -> None:
    """``evaluate --items`` is the same job kind: on Ray its tables and lines are the local
    run's (the solvers answer the items without a reference, the model every test item)."""
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"question": f"What is {i} times {i + 2}?",
                                         **({"answer": str(i * (i + 2))} if i % 2 else {})})
                             + "\n" for i in range(10)))
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    args: list[object] = ["evaluate", "--items", items, "--test-n", 6, "--agree", 1,
                          "--batch-size", 2, "--model", MODEL]
    for solver in SOLVERS:
        args += ["--solver", solver]
    local = invoke(*args, "--db", local_db)
    assert local.exit_code == 0, local.output
    on_ray = invoke(*args, "--db", ray_db, "--executor", "ray", "--ray-workers", 2)
    assert on_ray.exit_code == 0, on_ray.output
    assert set(alongside) == {("offline", 2), ("offline", 3)}
    assert _tables(ray_db) == _tables(local_db)
    assert on_ray.stdout == local.stdout

"""``personahub evaluate --provider-batch``: each solver's, scored model's and judge's
calls go as provider batches to its own server, one ``BatchingCaller`` per client with its own
``custom_id`` prefix (``c0.``, ``c1.``...), so two clients asked the same item in the same
prompting (the same call key) never share an id; the tables equal the online run's. Over the
loopback server answers are compared, not attempts (a loaded machine adds straggler retries).
An in-process engine has no Batch API: refused in one line before any call
(``tests/cli/test_evaluate.py``)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from personahub.api import run_evaluation_config, run_synthesis
from personahub.pipelines.evaluate import EvalConfig
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import kill_when
from tests.pipeline_helpers import rows

FAST: dict[str, Any] = {"provider_batch_poll_s": 0.02}
TABLES = ("SELECT item_id, role, spec, mode, sample, answer FROM eval_answers ORDER BY ALL",
          "SELECT item_id, verified, reference, agreed::VARCHAR, answered FROM eval_verified "
          "ORDER BY ALL")


def _copies(tmp_path: Path, *names: str) -> tuple[str, dict[str, Path]]:
    """One offline math synthesis job of 16 items, copied once per name."""
    template = tmp_path / "template.duckdb"
    job = run_synthesis(SynthConfig(task="math_problem", n=16, db=str(template))).job_id
    copies = {}
    for name in names:
        copies[name] = tmp_path / f"{name}.duckdb"
        shutil.copy(template, copies[name])
    return job, copies


def _specs(a: Any, b: Any) -> dict[str, Any]:
    """Solvers on two servers of different seeds, and a scored model on the first solver's
    server: it asks the same items in the same prompting, so the same call keys."""
    return {"solvers": (f"{a.base_url}?model=a", f"{b.base_url}?model=b"),
            "models": (f"{a.base_url}?model=c",)}


def _tables(db: Path) -> list[list[Any]]:
    return [rows(db, sql) for sql in TABLES]


@pytest.mark.slow
def test_a_batched_evaluation_writes_the_online_tables_each_client_its_own_ids(
        server: Any, tmp_path: Path) -> None:
    job, dbs = _copies(tmp_path, "online", "batch")
    a, b = server(seed=1, batch_delay_s=0.05), server(seed=2, batch_delay_s=0.05)
    common = {"job": job, "test_n": 6, "seed": 1, "agree": 1, "batch_size": 4, **_specs(a, b)}
    online = run_evaluation_config(EvalConfig(db=str(dbs["online"]), **common))
    assert online.batches is None and a.stats.batches_created == 0
    batched = run_evaluation_config(EvalConfig(db=str(dbs["batch"]), provider_batch=True, **FAST,
                                               **common))
    assert _tables(dbs["batch"]) == _tables(dbs["online"])
    assert batched.scores == online.scores and batched.matrix == online.matrix
    answers = _tables(dbs["batch"])[0]
    assert len(answers) == 18
    solved = {end: [r[5] for r in answers if r[2].endswith(end)] for end in ("=a", "=b")}
    assert solved["=a"] != solved["=b"]  # the two seeds answer differently: no mixing shows
    # two clients on server a (6 answers each, 4 per batch: 2 + 2), one on b (2)
    assert a.stats.batches_created == 4 and b.stats.batches_created == 2
    # every answer but each client's first (it learns the structured mode online) from a batch
    made = rows(dbs["batch"], "SELECT substr(custom_id, 1, 3) AS client, count(*), "
                "count(DISTINCT provider_batch_id) FROM llm_calls WHERE job_id = ? AND status = 'ok' "
                "AND custom_id IS NOT NULL GROUP BY 1 ORDER BY 1", [batched.job_id])
    assert made == [("c0.", 5, 2), ("c1.", 5, 2), ("c2.", 5, 2)]
    assert "c0. batches: 2 created" in (batched.batches or "")
    # once committed, each batch's provider files were deleted (the kernel's after-commit hook)
    assert rows(dbs["batch"], "SELECT count(*), count(input_file_id), count(output_file_id) "
                "FROM provider_batches WHERE job_id = ?", [batched.job_id]) == [(6, 0, 0)]


@pytest.mark.slow
def test_a_killed_batched_evaluation_polls_its_batch_on_resume(
        server: Any, tmp_path: Path) -> None:
    """Killed while a client's batch runs: the resume polls that batch (created once), and
    answers the rest, to the tables of an uninterrupted batched run."""
    job, dbs = _copies(tmp_path, "whole", "killed")
    a, b = server(seed=1, batch_delay_s=1.5), server(seed=2, batch_delay_s=0.05)
    specs = _specs(a, b)
    args = ["evaluate", "--job", job, "--test-n", "6", "--seed", "1", "--agree", "1",
            "--batch-size", "4", "--solver", specs["solvers"][0], "--solver",
            specs["solvers"][1], "--model", specs["models"][0], "--provider-batch", "--provider-batch-poll",
            "0.05", "--db", str(dbs["killed"])]
    code = kill_when(args, lambda: a.stats.batches_created >= 1,
                     "the evaluation never created its batch")
    assert code == -signal.SIGKILL
    [(job_id, status)] = rows(dbs["killed"], "SELECT job_id, status FROM jobs "
                                             "WHERE kind = 'evaluation'")
    assert status == "running"
    resumed = run_evaluation_config({"db": str(dbs["killed"]), "provider_batch": True, **FAST, **specs},
                                    db=dbs["killed"], resume=job_id)
    assert a.stats.batches_created == 4  # the first batch polled again, not created twice
    assert "1 picked up again" in (resumed.batches or "")
    whole = run_evaluation_config(EvalConfig(db=str(dbs["whole"]), provider_batch=True, **FAST,
                                             job=job, test_n=6, seed=1, agree=1, batch_size=4,
                                             **specs))
    assert _tables(dbs["killed"]) == _tables(dbs["whole"])
    assert resumed.scores == whole.scores


@pytest.mark.slow
def test_an_item_set_is_batched_as_a_job_is(server: Any, tmp_path: Path) -> None:
    """``evaluate --items`` with --provider-batch: the model's calls go as provider batches and the
    tables equal the online run's."""
    a = server(seed=1, batch_delay_s=0.05)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"question": f"What is {i} plus {i}?",
                                         "answer": str(2 * i)}) + "\n" for i in range(8)))
    common = {"items": str(items), "models": (f"{a.base_url}?model=c",), "batch_size": 4}
    online = run_evaluation_config(EvalConfig(db=str(tmp_path / "online.duckdb"), **common))
    batched = run_evaluation_config(EvalConfig(db=str(tmp_path / "batch.duckdb"), provider_batch=True,
                                               **FAST, **common))
    assert _tables(tmp_path / "batch.duckdb") == _tables(tmp_path / "online.duckdb")
    assert batched.scores == online.scores and batched.by_reference == 8
    assert a.stats.batches_created == 2  # 8 answers, 4 a batch

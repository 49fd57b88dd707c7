"""Parquet shards of a Ray job's answers (personahub/executors/shards.py): complete or ignored,
committed in batch
order, released once committed, plain columns, and no folder for a local job."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from personahub.api import run_synthesis
from personahub.core.contracts import CacheEntry, CallRecord, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.executors.shards import (
    ShardStore,
    batches_from_shards,
    calls_json,
    calls_of,
    clear_job_folder,
    job_folder,
    jobs_root,
    write_shard,
)
from personahub.pipelines.synthesize import SynthConfig


def shard(folder: Path, keys: list[str]) -> str:
    return write_shard(folder, keys, [json.dumps({"k": k}) for k in keys], ["[]"] * len(keys))


def piece(shard_name: str, indexes: list[int]) -> dict[str, list]:
    return {"index": indexes, "answer": [shard_name] * len(indexes)}


def test_job_folders_sit_next_to_the_database(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    assert job_folder(db, "synth-20250101-000000-abcdef") == tmp_path / "hub.duckdb.jobs" / \
        "synth-20250101-000000-abcdef"
    odd = job_folder(db, "../my corpus/é")
    assert odd.parent == jobs_root(db) and "/" not in odd.name and odd.name != job_folder(db, "x").name


def test_calls_round_trip_as_json() -> None:
    record = CallRecord(purpose="synth:x", model="m", attempt=1, status="ok", latency_ms=3.5,
                        tokens_in=4, tokens_out=5, persona_id="p1", endpoint=0)
    entry = CacheEntry(key="k", model="m", request={"messages": [["human", "hi"]]}, response="{}",
                       tokens_in=1, tokens_out=2, sample=0)
    [back] = calls_of(calls_json([StructuredResult({"a": 1}, [record], cache_entries=[entry])]))
    assert back.value is None and back.records == [record] and back.cache_entries == [entry]


def test_batches_come_in_order_and_shards_go_once_committed(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    store = ShardStore(folder)
    assert store.open(["a", "b", "c", "d"]) == 0 and folder.is_dir()
    late = shard(folder, ["c", "d"])  # the second batch's worker finished first
    early = shard(folder, ["a", "b"])
    batches = batches_from_shards([piece(late, [2, 3]), piece(early, [0, 1])], [1, 1, 2], store,
                                  ["a", "b", "c", "d"])
    assert [r["key"] for r in next(batches)] == ["a"]
    assert (folder / early).exists()  # "b" is not committed yet
    assert [r["key"] for r in next(batches)] == ["b"]
    assert (folder / early).exists()  # asking for the next batch says "b" is committed
    assert [json.loads(r["value"]) for r in next(batches)] == [{"k": "c"}, {"k": "d"}]
    assert not (folder / early).exists() and (folder / late).exists()
    assert next(batches, None) is None  # the last batch committed: the folder goes
    assert not folder.exists()


def test_a_resume_takes_the_answers_left_and_ignores_partial_and_corrupt_files(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    folder.mkdir()
    left = shard(folder, ["b", "c", "old"])  # "old" was committed before the driver died
    (folder / ".deadbeef.part").write_bytes(b"PAR1 half a shard")
    (folder / "cafe.parquet").write_bytes(b"PAR1 truncated")
    gone = shard(folder, ["done"])  # every answer in it committed: nothing to keep it for
    store = ShardStore(folder)
    assert store.open(["a", "b", "c"]) == 2 and set(store.ready) == {"b", "c"}
    assert sorted(p.name for p in folder.iterdir()) == [left]
    assert gone not in {p.name for p in folder.iterdir()}
    new = shard(folder, ["a"])  # this pass asks only what no shard answers
    rows = list(batches_from_shards([piece(new, [0])], [2, 1], store, ["a", "b", "c"]))
    assert [[r["key"] for r in batch] for batch in rows] == [["a", "b"], ["c"]]
    assert not folder.exists()


def test_an_answer_given_twice_counts_once_and_a_missing_batch_fails(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    store = ShardStore(folder)
    store.open(["a", "b"])
    first, retry = shard(folder, ["a"]), shard(folder, ["a"])
    answers = batches_from_shards([piece(first, [0]), piece(retry, [0])], [1, 1], store, ["a", "b"])
    assert [r["key"] for r in next(answers)] == ["a"]
    with pytest.raises(PersonahubError, match="batch 2 of 2"):
        next(answers)


def test_a_shard_holds_plain_columns(tmp_path: Path) -> None:
    name = shard(tmp_path, ["a"])
    table = pq.read_table(tmp_path / name)
    assert table.column_names == ["key", "value", "calls"]
    assert all(str(t) == "string" for t in table.schema.types)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_clearing_a_job_folder_keeps_other_jobs(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    for job in ("one", "two"):
        job_folder(db, job).mkdir(parents=True)
        shard(job_folder(db, job), ["a"])
    clear_job_folder(db, "one")
    assert not job_folder(db, "one").exists() and job_folder(db, "two").exists()
    clear_job_folder(db, "two")
    assert not jobs_root(db).exists()
    clear_job_folder(db, "none")  # nothing there: nothing to do


def test_a_local_job_makes_no_job_folder(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    summary = run_synthesis(SynthConfig(task="math_problem", n=3, db=str(db)))
    assert summary.written == 3 and not jobs_root(db).exists()

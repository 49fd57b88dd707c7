"""The batch commit (``core.commit.commit_batch``) writes the call records and cache entries
that the batch's results carry, and nothing else: the client keeps no buffer of them, so two
jobs sharing one client each write exactly their own calls. ``FakeClient`` and ``LLMClient``
both answer what ``contracts.StructuredCaller`` declares."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Generic, Protocol

import duckdb
from langchain_core.messages import HumanMessage

from personahub.core.commit import JobRef, commit_batch
from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.core.store import connect
from personahub.models.cache import ResponseCache
from personahub.models.client import LLMClient, LLMSettings
from personahub.tasks.instruction import Instruction
from tests.fakes import FakeClient, shuffled_completion


def written(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[Any, ...]], set[str]]:
    """(call id, purpose, job id) of every ``llm_calls`` row, and every ``llm_cache`` key."""
    calls = con.execute("SELECT call_id, purpose, job_id FROM llm_calls ORDER BY ALL").fetchall()
    keys = {k for (k,) in con.execute("SELECT key FROM llm_cache").fetchall()}
    return calls, keys


def carried(results: list[StructuredResult[Any]], job_id: str) -> tuple[list[tuple[Any, ...]], set[str]]:
    """What ``written`` must read back after committing ``results`` as job ``job_id``."""
    calls = sorted((r.call_id, r.purpose, job_id) for res in results for r in res.records)
    return calls, {e.key for res in results for e in res.cache_entries}


def ask(client: StructuredCaller, purpose: str, n: int) -> Any:
    return asyncio.gather(*[client.structured(Instruction, [HumanMessage(f"{purpose} question {i}")],
                                              purpose=purpose) for i in range(n)])


def recording_client(**fake: Any) -> FakeClient:
    client = FakeClient(inner=LLMClient(LLMSettings(seed=3)), **fake)
    client.use_cache(ResponseCache("record", client.cache_model))
    return client


def test_a_batch_writes_exactly_the_records_and_cache_entries_its_results_carry(tmp_path: Path) -> None:
    client = recording_client()
    con = connect(tmp_path / "batch.duckdb")

    async def job() -> tuple[list[Any], list[Any]]:
        outside = await ask(client, "outside", 2)  # asked, but not part of the batch
        batch = await ask(client, "batch", 3)
        return outside, batch

    outside, batch = asyncio.run(job())
    commit_batch(con, JobRef("synthesis", "j1"), client, {}, batch)
    calls, keys = written(con)
    assert (calls, keys) == carried(batch, "j1")
    assert len(calls) == 3 and len(keys) == 3  # one attempt and one recorded answer per call
    assert not {r.call_id for res in outside for r in res.records} & {c[0] for c in calls}
    con.close()


def test_two_concurrent_jobs_on_one_client_write_only_their_own_calls(tmp_path: Path) -> None:
    """Jobs A and B share a client and run interleaved on one loop (calls complete in a shuffled
    order), each committing its batches to its own database: each database holds exactly its
    job's calls and recorded answers. A buffer on the client would hand A's batch B's calls."""
    client = recording_client(delay=shuffled_completion(7))
    databases = {name: connect(tmp_path / f"{name}.duckdb") for name in ("A", "B")}
    asked: dict[str, list[Any]] = {"A": [], "B": []}

    async def job(name: str) -> None:
        for batch in range(3):
            results = list(await ask(client, f"{name}{batch}", 4))
            commit_batch(databases[name], JobRef("synthesis", name), client, {}, results)
            asked[name] += results

    async def both() -> None:
        await asyncio.gather(job("A"), job("B"))

    asyncio.run(both())
    assert client.max_in_flight > 4  # the two jobs' calls were in flight together
    for name, con in databases.items():
        calls, keys = written(con)
        assert (calls, keys) == carried(asked[name], name)
        assert len(calls) == 12 and {purpose[0] for _, purpose, _ in calls} == {name}
        con.close()


class _Shape(Protocol):
    """Stands for the typing bases of a protocol (not its members)."""


def protocol_members(protocol: type) -> set[str]:
    """The names a protocol declares (its own and its bases'), without typing's machinery."""
    skip = {*vars(Protocol), *vars(Generic), *vars(_Shape), *vars(object)}
    return {name for cls in protocol.__mro__ if cls not in (Protocol, Generic, object)
            for name in vars(cls) if name not in skip and not name.startswith("_")}


def test_the_client_and_the_fake_answer_everything_a_structured_caller_declares() -> None:
    members = protocol_members(StructuredCaller)
    assert {"structured", "endpoints", "cache_model", "use_cache", "structured_modes",
            "stats", "label", "is_offline"} <= members
    fake = FakeClient()
    for client in (LLMClient(LLMSettings()), fake):
        assert {name for name in members if not hasattr(client, name)} == set()
    assert not hasattr(fake, "drain_records")  # nothing to drain: results carry the records

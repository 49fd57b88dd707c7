"""Executors without Ray: refusals before anything is opened, and answers put back in batch order."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from personahub.core.errors import PersonahubError
from personahub.executors import check_executor
from personahub.executors.order import in_batch_order
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke


def piece(*indices: int) -> dict[str, list]:
    return {"index": list(indices), "answer": [pickle.dumps(f"a{i}") for i in indices]}


def test_answers_come_back_in_batch_order_whatever_order_they_finish_in() -> None:
    pieces = [piece(4, 5), piece(2), piece(0, 1), piece(1), piece(3)]  # 1 twice: a retried task
    batches = list(in_batch_order(pieces, [2, 2, 2]))
    assert batches == [["a0", "a1"], ["a2", "a3"], ["a4", "a5"]]


def test_a_missing_answer_fails_the_job_rather_than_skipping_a_batch() -> None:
    got = in_batch_order([piece(0, 1), piece(3)], [2, 2])
    assert next(got) == ["a0", "a1"]
    with pytest.raises(PersonahubError, match="batch 2 of 2"):
        next(got)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"executor": "dask"}, "--executor 'dask'"),
    ({"executor": "ray", "cache": "record"}, "--cache off"),
    ({"executor": "ray", "ray_workers": 0}, "--ray-workers"),
])
def test_refused_before_anything_is_opened(kwargs: dict, message: str) -> None:
    with pytest.raises(PersonahubError, match=message):
        SynthConfig(task="instruction", **kwargs)


def test_local_is_the_default_and_needs_no_ray() -> None:
    check_executor("local")
    assert SynthConfig(task="instruction").executor == "local"


@pytest.mark.slow
def test_the_local_path_imports_no_ray() -> None:
    """Ray is imported only by personahub/executors/ray_batches.py, when a command asks for it."""
    import subprocess
    import sys

    code = ("import sys, personahub.cli.app, personahub.pipelines.synthesize, personahub.cli.dedup, "
            "personahub.cli.personas, personahub.personas.asks; "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("command", [["personas", "expand"], ["personas", "from-text", "CORPUS"]])
@pytest.mark.parametrize(("flags", "message"), [
    (["--executor", "ray", "--cache", "record"], "--cache off"),
    (["--executor", "dask"], "--executor 'dask'"),
])
def test_persona_commands_refuse_what_cannot_run_on_ray(tmp_path: Path, command: list[str],
                                                         flags: list[str], message: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("A text about sourdough.\n")
    args = [corpus if a == "CORPUS" else a for a in command]
    result = invoke(*args, "--db", tmp_path / "hub.duckdb", *flags)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "hub.duckdb").exists()  # refused before anything was opened


@pytest.mark.parametrize(("executor", "embedder", "refused"), [
    ("ray", "local", True), ("ray", "openai:text-embedding-3-small", True), ("ray", "hash", False),
    ("ray", "hash:256", False), ("ray", None, False), ("local", "local", False),
])
def test_dedup_refuses_a_model_embedder_on_ray(executor: str, embedder: str | None,
                                               refused: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage 2's vectors are made on the driver: a model embedder on Ray is refused by the
    job's config, before anything is opened (checked, never run)."""
    from personahub import executors
    from personahub.pipelines.dedup import DedupJobConfig

    monkeypatch.setattr(executors, "ray_installed", lambda: True)
    if refused:
        with pytest.raises(PersonahubError, match="do not run on Ray yet"):
            DedupJobConfig(executor=executor, embedder=embedder)
    else:
        assert DedupJobConfig(executor=executor, embedder=embedder).executor == executor


def test_a_ray_call_actor_spills_every_attempt_into_the_job_worker_folder(tmp_path: Path) -> None:
    """The actor's own client writes each attempt to the worker folder as it is final: the
    records a killed driver never received (``core.call_spill.WorkerSpill``). No Ray cluster
    is needed: the actor class runs in this process."""
    import asyncio

    from langchain_core.messages import HumanMessage

    from personahub.core import call_spill
    from personahub.executors.ray_actors import _CallActor
    from personahub.models.client import LLMSettings
    from tests.agents.test_seam_wrappers import Answer

    db = tmp_path / "hub.duckdb"
    tags = {"job_kind": "run", "job_id": "run-1", "run_id": "run-1"}
    actor = _CallActor(LLMSettings(spec="offline", seed=3),
                       call_spill.WorkerSpill.beside(db, "run-1", tags))
    call = (Answer, [HumanMessage("hi")], "t", "p1", 2, None, 0, 77)  # its own max_tokens, forwarded
    request = actor.client.request_for(Answer, [HumanMessage("again")], purpose="t", step=2)
    (kind, _, result), (missed, _, below) = asyncio.run(actor.answer([call, request]))
    assert kind == missed == "ok"
    assert result.records[-1].max_tokens == 77 and below.records[-1].max_tokens == 512
    spilled = call_spill.read_job(db, "run-1")
    assert [s.record for s in spilled] == [*result.records, *below.records]
    assert all(s.tags == tags for s in spilled)

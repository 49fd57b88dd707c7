"""Executors without Ray: refusals before anything is opened, and answers put back in batch order."""

from __future__ import annotations

import pickle

import pytest
from personahub.personas.errors import PersonahubError
from personahub.sim.executors import check_executor, in_batch_order
from personahub.sim.synthesize import SynthOptions


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
        SynthOptions(task="instruction", **kwargs)


def test_local_is_the_default_and_needs_no_ray() -> None:
    check_executor("local")
    assert SynthOptions(task="instruction").executor == "local"


def test_the_local_path_imports_no_ray() -> None:
    """Ray is imported only by sim/executor_ray.py, when a command asks for it."""
    import subprocess
    import sys

    code = ("import sys, personahub.sim.cli, personahub.sim.synthesize, personahub.sim.cli_dedup; "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"

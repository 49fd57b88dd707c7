"""A job function of the API is one written body: its blocking call and its await twin follow."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
from pathlib import Path

import pytest

import personahub
from personahub.core.errors import PersonahubError
from personahub.job_calls import async_twin, job_function


@job_function
def _where(label: str, *, times: int = 1) -> tuple[str, str]:
    """Name the thread the body ran in.

    Args:
        label: echoed back.
        times: how often the label is repeated.

    Returns:
        The label repeated and the thread's name.
    """
    if times < 0:
        raise PersonahubError("--times must be 0 or more")
    return label * times, threading.current_thread().name


_where_async = async_twin(_where)


def test_the_blocking_call_runs_here_and_the_twin_in_a_worker_thread() -> None:
    here = threading.current_thread().name
    assert _where("a", times=2) == ("aa", here)
    label, thread = asyncio.run(_where_async("b", times=3))
    assert label == "bbb" and thread != here


def test_under_a_running_loop_the_blocking_call_waits_for_a_worker_thread() -> None:
    async def inside() -> tuple[str, str]:
        return _where("c")

    label, thread = asyncio.run(inside())
    assert label == "c" and thread != threading.current_thread().name


def test_the_twin_has_the_signature_and_a_docstring_of_its_own() -> None:
    assert inspect.iscoroutinefunction(_where_async)
    assert not inspect.iscoroutinefunction(_where)
    assert inspect.signature(_where_async) == inspect.signature(_where)
    assert _where_async.__name__ == "_where_async"
    doc = inspect.getdoc(_where_async) or ""
    assert doc.startswith("_where for await") and "label, times: as for _where." in doc


def test_both_reword_errors_in_the_function_s_keywords() -> None:
    with pytest.raises(PersonahubError, match="^times must") as sync_error:
        _where("d", times=-1)
    with pytest.raises(PersonahubError, match="^times must") as async_error:
        asyncio.run(_where_async("d", times=-1))
    assert str(sync_error.value) == str(async_error.value)


def test_every_job_function_s_twin_is_derived_not_written() -> None:
    """Each exported ``X_async`` wraps ``X`` itself, and no API module writes an ``async def``
    job function by hand."""
    for name, module in personahub._JOBS.items():
        sync, twin = getattr(personahub, name), getattr(personahub, f"{name}_async")
        assert twin.__wrapped__.__wrapped__ is sync, name
        assert inspect.signature(twin) == inspect.signature(sync), name
        source = Path(importlib.import_module(module).__file__ or "").read_text()
        assert f"def {name}_async(" not in source, module

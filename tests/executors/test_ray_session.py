"""``ray_session``: which Ray a job's driver joins when it is not connected yet. Ray's own
default (``ray.init()`` with no address) attaches to the last cluster ``ray start`` began on
the machine; a job given no address must start its own instead."""

from __future__ import annotations

from typing import Any

import pytest

from tests.optional import need_ray


@pytest.fixture
def init_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record ``ray.init``'s keywords instead of starting Ray."""
    need_ray()
    from personahub.executors import ray_batches

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray_batches.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_batches.ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray_batches.ray, "shutdown", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls


@pytest.mark.parametrize(("given", "env", "expected"), [
    (None, None, "local"),
    ("auto", None, "auto"),
    ("head:6379", "other:6379", "head:6379"),
    (None, "other:6379", "other:6379"),
])
def test_ray_session_starts_its_own_ray_unless_an_address_is_given(
        init_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        given: str | None, env: str | None, expected: str) -> None:
    from personahub.executors.ray_batches import ray_session

    if env is not None:
        monkeypatch.setenv("RAY_ADDRESS", env)
    with ray_session(given):
        pass
    assert [call["address"] for call in init_calls] == [expected]

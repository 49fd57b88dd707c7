"""``--executor ray``'s checks that need no Ray: a worker rebuilds the model client from its
settings, so a client without them (a test double) is refused before Ray is started."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from personahub.core.errors import PersonahubError
from personahub.executors.ray_executor import RayExecutor


def test_a_client_without_settings_is_refused_before_ray_starts() -> None:
    executor = RayExecutor(address=None, workers=1)
    ctx: Any = SimpleNamespace(client=object())
    with pytest.raises(PersonahubError, match="--executor ray: the model client must be built from --llm"):
        executor.check(None, ctx)  # type: ignore[arg-type]
    executor.check(None, SimpleNamespace(client=None))  # type: ignore[arg-type]  # no model: nothing to check

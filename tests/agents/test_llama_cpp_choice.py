"""Which launcher serves llama.cpp's own server, and which variable makes a missing server fail.

A compiled ``llama-server`` is used where one is found, else the ``[local]`` extra's xllamacpp;
``PERSONAHUB_LLAMA_SERVER``, when set, must name a binary (no fallback hides a wrong path). The
real-model tests require llama.cpp's server with ``PERSONAHUB_REQUIRE_REAL_MODEL`` and
llama-cpp-python's only with ``PERSONAHUB_REQUIRE_LLAMA_CPP_PYTHON``. No server starts here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from personahub.core.errors import PersonahubError
from personahub.models import llamacpp
from tests import optional


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    """A machine with a GGUF, no llama-server on PATH or in the cache, and xllamacpp as set."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setenv("PERSONAHUB_GGUF", str(model))
    monkeypatch.delenv(llamacpp.LLAMA_SERVER_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    state: dict[str, object] = {"xllamacpp": True, "started": None}
    real_find_spec = llamacpp.importlib.util.find_spec
    monkeypatch.setattr(llamacpp.importlib.util, "find_spec", lambda name, *a: (
        object() if state["xllamacpp"] else None) if name == "xllamacpp" else real_find_spec(name, *a))

    def launcher(kind: str):  # records which launcher was asked, starts nothing
        @contextlib.contextmanager
        def start(**_: object) -> Iterator[llamacpp.LlamaServer]:
            state["started"] = kind
            yield llamacpp.LlamaServer("http://127.0.0.1:1/v1", llamacpp.MODEL_ALIAS, model, kind)
        return start

    monkeypatch.setattr(llamacpp, "local_llama_cpp_server", launcher("llama-server"))
    monkeypatch.setattr(llamacpp, "local_xllamacpp_server", launcher("xllamacpp"))
    return state


def compiled(tmp_path: Path) -> Path:
    binary = tmp_path / "bin" / "llama-server"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


def test_without_a_compiled_server_xllamacpp_serves(machine: dict[str, object]) -> None:
    assert llamacpp.missing_llama_cpp() is None
    with llamacpp.local_llama_cpp() as server:
        assert server.server == "xllamacpp" and server.llama_cpp
    assert machine["started"] == "xllamacpp"


def test_a_compiled_server_is_preferred(machine: dict[str, object], tmp_path: Path) -> None:
    compiled(tmp_path)
    with llamacpp.local_llama_cpp() as server:
        assert server.server == "llama-server" and server.llama_cpp
    assert machine["started"] == "llama-server"


def test_a_wrong_personahub_llama_server_is_said_not_replaced(
        machine: dict[str, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(llamacpp.LLAMA_SERVER_ENV, str(tmp_path / "nowhere"))
    reason = llamacpp.missing_llama_cpp()
    assert reason is not None and llamacpp.LLAMA_SERVER_ENV in reason
    with pytest.raises(PersonahubError, match=llamacpp.LLAMA_SERVER_ENV), llamacpp.local_llama_cpp():
        pass
    assert machine["started"] is None


def test_with_neither_launcher_the_reason_names_both(machine: dict[str, object]) -> None:
    machine["xllamacpp"] = False
    reason = llamacpp.missing_llama_cpp()
    assert reason is not None and "xllamacpp is not installed" in reason and "llama-server" in reason
    assert llamacpp.LlamaServer("u", "m", Path("l")).llama_cpp is False  # llama-cpp-python's


def test_requiring_the_real_model_does_not_require_llama_cpp_python(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp, "missing_extra", lambda: "llama-cpp-python is not installed")
    monkeypatch.setenv(optional.REQUIRE_REAL_MODEL, "1")
    monkeypatch.delenv(optional.REQUIRE_LLAMA_CPP_PYTHON, raising=False)
    with pytest.raises(pytest.skip.Exception, match="llama-cpp-python is not installed"):
        optional.need_llama_cpp_python()
    monkeypatch.setenv(optional.REQUIRE_LLAMA_CPP_PYTHON, "1")
    with pytest.raises(pytest.fail.Exception, match="PERSONAHUB_REQUIRE_LLAMA_CPP_PYTHON is set"):
        optional.need_llama_cpp_python()


def test_requiring_the_real_model_requires_llama_cpp(
        machine: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    machine["xllamacpp"] = False
    monkeypatch.delenv(optional.REQUIRE_REAL_MODEL, raising=False)
    with pytest.raises(pytest.skip.Exception):
        optional.need_llama_cpp()
    monkeypatch.setenv(optional.REQUIRE_REAL_MODEL, "1")
    with pytest.raises(pytest.fail.Exception, match="PERSONAHUB_REQUIRE_REAL_MODEL is set"):
        optional.need_llama_cpp()

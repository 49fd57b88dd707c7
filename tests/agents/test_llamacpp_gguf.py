"""Which GGUF file the llama.cpp launchers use: ``PERSONAHUB_GGUF`` when it names a file (the
launchers themselves run in the real_model tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from personahub.models.llamacpp import find_gguf


def test_personahub_gguf_names_the_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setenv("PERSONAHUB_GGUF", str(model))
    assert find_gguf() == model
    monkeypatch.setenv("PERSONAHUB_GGUF", str(tmp_path / "missing.gguf"))
    assert find_gguf() is None

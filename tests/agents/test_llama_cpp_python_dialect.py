"""The loopback server's ``llama-cpp-python`` dialect answers as llama-cpp-python's server does.

What a client can rely on (status, whether a refusal names ``response_format``, the finish reason,
whether the content is a JSON object with the schema's key, whether a tool was called) is compared
for each probe: against the shapes recorded from the real server in
``tests/golden/llama_cpp_python_shapes.json`` everywhere (CI builds no llama-cpp-python), and
against the live server where the ``[llamacpp]`` extra is installed, which also says when the
recording is stale. Re-record with ``python tests/agents/test_llama_cpp_python_dialect.py`` (needs
the ``[llamacpp]`` extra: ``bash .ci/build_llama_cpp_python.sh`` builds its wheel) and review the diff.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from personahub.models.fake_server.server import ServerOptions, running_server
from personahub.models.llamacpp import MODEL_ALIAS, MODEL_FILE, local_llama_server
from tests.optional import need_llama_cpp_python

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "llama_cpp_python_shapes.json"


def probes() -> list[tuple[str, dict[str, Any]]]:
    """Requests whose handling the llama-cpp-python dialect claims to copy from the real server."""
    # the line bounded, as personahub bounds every string, and greedy decoding: an unbounded
    # line at the server's default temperature ran past max_tokens now and then ('length')
    schema = {"type": "object", "properties": {"line": {"type": "string", "maxLength": 40}},
              "required": ["line"]}
    tool = {"type": "function", "function": {"name": "say", "parameters": schema}}
    base = {"model": MODEL_ALIAS, "temperature": 0,
            "messages": [{"role": "user", "content": "Greet a neighbour."}]}
    return [
        ("json_schema refused", {**base, "max_tokens": 32, "response_format": {
            "type": "json_schema", "json_schema": {"name": "X", "schema": schema}}}),
        ("json_object with schema", {**base, "max_tokens": 96,
                                     "response_format": {"type": "json_object", "schema": schema}}),
        ("named tool", {**base, "max_tokens": 96, "tools": [tool],
                        "tool_choice": {"type": "function", "function": {"name": "say"}}}),
        ("cut at max_tokens", {**base, "max_tokens": 2}),
    ]


def shape(response: httpx.Response) -> list[Any]:
    """Reduce an answer to what a client can rely on, as a JSON-ready list."""
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") \
        else {}
    if response.status_code != 200:
        return [response.status_code, "response_format" in json.dumps(body)]
    choice = body["choices"][0]
    content = choice["message"].get("content") or ""
    try:
        parsed = json.loads(content)
        keyed = isinstance(parsed, dict) and "line" in parsed
    except ValueError:
        keyed = False
    return [200, choice["finish_reason"], keyed, bool(choice["message"].get("tool_calls"))]


def shapes_of(base_url: str, timeout: float) -> dict[str, list[Any]]:
    """Send every probe to the server at ``base_url``; the shape of each answer, by probe."""
    return {name: shape(httpx.post(f"{base_url}/chat/completions", json=body, timeout=timeout))
            for name, body in probes()}


def recorded() -> dict[str, list[Any]]:
    """Read the real server's recorded shapes; fail in one line naming how to record them."""
    if not GOLDEN.is_file():
        root = GOLDEN.parents[1].parent
        pytest.fail(f"{GOLDEN.relative_to(root)} is not recorded: run python "
                    f"{Path(__file__).relative_to(root)} where llama-cpp-python's server is installed")
    return json.loads(GOLDEN.read_text(encoding="utf-8"))["shapes"]


@pytest.mark.parametrize("source", [
    pytest.param("recorded", marks=pytest.mark.slow),  # it starts the loopback server
    pytest.param("live", marks=pytest.mark.real_model),
])
def test_the_llama_cpp_python_dialect_answers_as_the_real_server(source: str) -> None:
    if source == "live":
        need_llama_cpp_python()
        with local_llama_server() as real:
            expected = shapes_of(real.base_url, timeout=120)
        assert expected == recorded(), (
            "llama-cpp-python's server answers otherwise than recorded: re-record with "
            f"python {Path(__file__).relative_to(GOLDEN.parents[1].parent)}")
    else:
        expected = recorded()
    assert [name for name, _ in probes()] == list(expected)  # every probe was recorded
    with running_server(ServerOptions(dialect="llama-cpp-python")) as emulated:
        assert shapes_of(emulated.base_url, timeout=30) == expected


def record() -> int:
    """Write the live server's shapes into the golden file (needs the ``[llamacpp]`` extra)."""
    with local_llama_server() as real:
        shapes = shapes_of(real.base_url, timeout=120)
    GOLDEN.write_text(json.dumps({
        "recorded": f"llama-cpp-python {version('llama-cpp-python')} serving {MODEL_FILE}, "
                    f"{date.today().isoformat()}",
        "shapes": shapes}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(record())

"""examples/quickstart.ipynb runs as Jupyter runs it: its code cells in order, in one namespace,
inside a running event loop (top-level ``await`` allowed), in a temporary folder, offline."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def code_cells(path: Path) -> list[str]:
    """The notebook's code cells (nbformat 4 is JSON: no need for nbformat to read it)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


async def run_cells(cells: list[str], namespace: dict[str, Any]) -> None:
    for number, source in enumerate(cells):
        code = compile(source, f"<cell {number}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)  # noqa: S307 - our own notebook's cells
        if inspect.iscoroutine(result):
            await result


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # load_dataset's cache, not the user's
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    asyncio.run(run_cells(code_cells(NOTEBOOK), namespace))
    shares = namespace["shares"]
    assert list(shares.index) == [1, 3]
    assert shares.sum(axis=1).round(6).tolist() == [1.0, 1.0]
    assert (tmp_path / "purchase_intent.png").stat().st_size > 1000
    assert len((tmp_path / "math.chat.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert namespace["job"].written == 5

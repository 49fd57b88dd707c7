"""The benchmarks under ``bench/`` still name code that exists: every ``personahub`` module and
name they import (at the top or inside a function) resolves, and every bench has an entry in
``bench/RESULTS.md``. A bench is not run by the tests (its figures are measured, never asserted),
so without this a moved module leaves a bench that fails only when someone next measures.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
BENCHES = sorted(BENCH.glob("bench_*.py"))


def project_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of each ``personahub`` import in ``path`` (name None: ``import M``)."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("personahub"):
            found.extend((node.lineno, node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, None) for alias in node.names
                         if alias.name.startswith("personahub"))
    return found


def resolves(module: str, name: str | None) -> bool:
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError:
        return False
    if name is None or hasattr(imported, name):
        return True
    try:  # a submodule: from personahub.models import client
        importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        return False
    return True


def test_there_are_benches() -> None:
    assert len(BENCHES) >= 20


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_a_bench_imports_only_what_exists(path: Path) -> None:
    missing = [f"{path.name}:{line}: {module}" + (f".{name}" if name else "")
               for line, module, name in project_imports(path) if not resolves(module, name)]
    assert not missing, f"the bench names code that is gone: {missing}"


def test_every_bench_has_a_figure_in_results() -> None:
    results = (BENCH / "RESULTS.md").read_text(encoding="utf-8")
    headed = set(re.findall(r"^## (bench_[a-z0-9_]+)\.py", results, flags=re.MULTILINE))
    assert {p.stem for p in BENCHES} - headed == set(), "add the bench's latest figure to RESULTS.md"


def test_the_check_sees_a_missing_name(tmp_path: Path) -> None:
    bench = tmp_path / "bench_x.py"
    bench.write_text("def f():\n    from personahub.models import client, llm\n"
                     "import personahub.core.nothing_here\n")
    found = project_imports(bench)
    assert {(m, n) for _, m, n in found if not resolves(m, n)} == {
        ("personahub.models", "llm"), ("personahub.core.nothing_here", None)}
    assert ("personahub.models", "client") in {(m, n) for _, m, n in found}

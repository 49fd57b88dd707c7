"""The seam stays a stack of small parts: no long function, no test for the offline engine's class."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LLM = ROOT / "personahub" / "models"
CONTRACTS = ROOT / "personahub" / "core" / "contracts.py"
SEAM_MODULES = sorted(
    [CONTRACTS, *(LLM / name for name in ("client.py", "settings.py", "attempts.py"))]
    + list(LLM.glob("endpoint_*.py")) + list(LLM.glob("seam_*.py")))
MAX_FUNCTION_LINES = 40


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def long_functions(source: str) -> list[str]:
    """Functions of ``source`` longer than ``MAX_FUNCTION_LINES`` lines (decorators excluded)."""
    return [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(ast.parse(source))
            if f.end_lineno is not None and f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]


def offline_class_checks(source: str) -> list[int]:
    """Lines of ``isinstance``/``issubclass`` calls whose class argument names an offline type."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("isinstance", "issubclass") and len(node.args) == 2
                and "offline" in ast.unparse(node.args[1]).lower()):
            lines.append(node.lineno)
    return lines


def test_the_seam_modules_are_found() -> None:
    names = {p.name for p in SEAM_MODULES}
    assert {"contracts.py", "client.py", "endpoint_offline.py", "endpoint_http.py", "seam_retry.py",
            "seam_cache.py", "seam_validate.py", "seam_failover.py", "seam_limits.py",
            "seam_accounting.py"} <= names


@pytest.mark.parametrize("path", SEAM_MODULES, ids=lambda p: p.name)
def test_no_seam_function_is_long_and_none_asks_for_the_offline_class(path: Path) -> None:
    source = path.read_text()
    assert long_functions(source) == []
    assert offline_class_checks(source) == []


def test_the_checks_catch_what_they_forbid() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(45))
    assert long_functions(f"def f():\n{body}\n") == ["f (46 lines)"]
    assert long_functions("def g():\n    return 1\n") == []
    assert offline_class_checks("if isinstance(m, OfflineChatModel):\n    pass\n") == [1]
    assert offline_class_checks("ok = isinstance(m, (int, offline.Engine))\n") == [1]
    assert offline_class_checks("ok = isinstance(m, int)\n") == []


def test_the_contracts_module_imports_little() -> None:
    tree = ast.parse(CONTRACTS.read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.startswith(("langchain", "openai", "httpx", "personahub")) for m in imported)

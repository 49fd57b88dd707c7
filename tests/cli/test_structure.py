"""The CLI is the outermost layer: its modules import without a circle (command modules import
only the shared ``cli.common``, ``cli.options``, ``cli.engine``, ``cli.job_running`` and
``cli.progress``; the
framework modules ``cli.base`` and ``cli.helpfmt`` are used by ``cli.app`` alone, and ``cli.app``
assembles them), and none of them holds SQL — database access goes
through the store, kernel and analysis modules."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "personahub" / "cli"
CLI_MODULES = sorted(p.stem for p in CLI.glob("*.py") if p.stem != "__init__")
ASSEMBLER, COMMON, PROGRESS = "app", "common", "progress"
OPTIONS, ENGINE, JOB_RUNNING = "options", "engine", "job_running"
SHARED = {COMMON, PROGRESS, OPTIONS, ENGINE, JOB_RUNNING}
FRAMEWORK = {"base", "helpfmt"}  # the app's conventions: command classes, help rendering
SQL_START = re.compile(r"^\s*(select|insert|update|delete|create|drop|alter)\s", re.IGNORECASE)


def imported_cli_modules(name: str) -> set[str]:
    """The ``cli`` modules that module ``name`` imports (at any depth in its code)."""
    tree = ast.parse((CLI / f"{name}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            last = target.rsplit(".", 1)[-1]
            if target.startswith("personahub.cli.") and last in CLI_MODULES:
                found.add(last)
    return found - {name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as the list of nodes along it, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt):], nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, [*path, nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"app": {"run", "common"}, "run": {"common"}}) is None


def test_the_cli_modules_are_the_expected_ones() -> None:
    assert {ASSEMBLER, COMMON, "run", "personas", "synth"} <= set(CLI_MODULES)


def test_cli_modules_import_without_a_circle() -> None:
    graph = {name: imported_cli_modules(name) for name in CLI_MODULES}
    assert find_cycle(graph) is None, graph
    assert graph[PROGRESS] == set() and graph[COMMON] <= {PROGRESS}
    assert graph[OPTIONS] <= {COMMON} and graph[ENGINE] <= {OPTIONS, COMMON}
    assert graph[JOB_RUNNING] <= {COMMON, PROGRESS}
    for name in FRAMEWORK:
        assert graph[name] <= SHARED | FRAMEWORK, (name, graph[name])
    for name in set(CLI_MODULES) - {ASSEMBLER, *SHARED, *FRAMEWORK}:  # command modules
        assert graph[name] <= SHARED, (name, graph[name])
    # it registers every command module (a shipped kind's through its row in
    # pipelines/labels.py), and builds the app from base's classes
    from personahub.pipelines.labels import SHIPPED

    by_table = {shipped.command.partition(":")[0] for shipped in SHIPPED.values()}
    assert all(module.startswith("personahub.cli.") for module in by_table), by_table
    registered = graph[ASSEMBLER] | {module.rsplit(".", 1)[-1] for module in by_table}
    assert registered - SHARED - FRAMEWORK == set(CLI_MODULES) - {ASSEMBLER, *SHARED, *FRAMEWORK}
    assert "base" in graph[ASSEMBLER] and "helpfmt" in graph["base"]


@pytest.mark.parametrize("name", CLI_MODULES)
def test_each_cli_module_imports_on_its_own(name: str) -> None:
    module = importlib.import_module(f"personahub.cli.{name}")
    assert module.__name__ == f"personahub.cli.{name}"


@pytest.mark.parametrize("name", CLI_MODULES)
def test_cli_modules_hold_no_sql(name: str) -> None:
    tree = ast.parse((CLI / f"{name}.py").read_text(encoding="utf-8"))
    executes = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("execute", "executemany", "sql", "query")]
    statements = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Constant)
                  and isinstance(node.value, str) and SQL_START.match(node.value)]
    assert not executes and not statements, f"personahub/cli/{name}.py: SQL at lines {executes + statements}"


def test_the_sql_detector_sees_sql() -> None:
    tree = ast.parse('con.execute("SELECT 1")\nx = "update t set a = 1"')
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.func.attr == "execute"]
    texts = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and SQL_START.match(n.value)]
    assert len(calls) == 1 and len(texts) == 2

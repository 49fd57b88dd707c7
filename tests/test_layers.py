"""Imports run one way (``docs/architecture.md``, "Layers"): a module imports only from
its own layer and the layers below it, never from one above. Every ``import`` counts, at the top
of a module or inside a function (a deferred import is still a dependency).

The layers, lowest first:

    personahub.core < personas < personahub.models < personahub.executors < personahub.tasks
        < agents < sim < analysis < pipelines
        < personahub (api, runtime, results, persona_jobs, ...) < personahub.cli

``import personahub`` for its ``__version__`` is not a layer's import (the package root imports
nothing eagerly). Nothing breaks the order; an upward import fails the test.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("core", "personas", "models", "executors", "tasks", "agents", "sim", "analysis", "pipelines",
         "package", "cli")
FOLDERS = {"personahub/core": "core", "personahub/models": "models", "personas": "personas",
           "personahub/executors": "executors", "personahub/tasks": "tasks", "agents": "agents",
           "sim": "sim", "analysis": "analysis", "pipelines": "pipelines", "personahub/cli": "cli"}

def layer_of_module(name: str) -> str | None:
    """The layer of an imported ``personahub...`` module (None: not the project's, or the
    package root)."""
    parts = name.split(".")
    if parts[0] != "personahub" or len(parts) == 1:
        return None
    if parts[1] in ORDER:
        return parts[1]
    return None if parts[1] == "scenarios" else "package"  # api, runtime, results, ...


def layer_of_file(path: Path) -> str:
    """The layer a source file is in."""
    rel = path.relative_to(ROOT).as_posix()
    if rel == "personahub/__main__.py":
        return "cli"  # ``python -m personahub``: the command line's entry point
    for folder, layer in FOLDERS.items():
        if rel.startswith(folder + "/"):
            return layer
    return "package"


@functools.cache
def parsed(path: Path) -> ast.Module:
    """A source file's syntax tree, parsed once per test process (the layer, SQL-owner and store
    tests all walk every module)."""
    return ast.parse(path.read_text(encoding="utf-8"))


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every absolute import of a file: (line, module)."""
    found = []
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def sources() -> list[Path]:
    """The project's modules, each once (not through the ``personahub/`` links)."""
    files = [p for p in (ROOT / "personahub").rglob("*.py")
             if not any(part.is_symlink() for part in [p, *p.parents] if part != ROOT)
             and ROOT / "personahub" in p.parents]
    for folder in ("personas", "agents", "sim", "analysis", "pipelines"):
        files += (ROOT / folder).rglob("*.py")
    return sorted(files)


@functools.cache
def upward_imports() -> dict[tuple[str, str], list[int]]:
    """(module, imported module) → lines, for each import of a higher layer."""
    found: dict[tuple[str, str], list[int]] = {}
    for path in sources():
        mine = ORDER.index(layer_of_file(path))
        for line, module in imports_of(path):
            theirs = layer_of_module(module)
            if theirs is not None and ORDER.index(theirs) > mine:
                found.setdefault((path.relative_to(ROOT).as_posix(), module), []).append(line)
    return found


@pytest.mark.slow
def test_no_module_imports_a_higher_layer() -> None:
    found = upward_imports()
    named = {f"{module}:{lines[0]} imports {target}" for (module, target), lines in found.items()}
    assert not named, f"imports of a higher layer (docs/architecture.md, Layers): {sorted(named)}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The AST walk finds deferred imports too, and the layers compare as documented."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from personahub.cli.app import app\n    import personahub.sim.runner\n")
    assert imports_of(module) == [(2, "personahub.cli.app"), (3, "personahub.sim.runner")]
    assert layer_of_module("personahub.cli.app") == "cli"
    assert layer_of_module("personahub.api") == "package" and layer_of_module("personahub") is None
    assert ORDER.index("personas") < ORDER.index("agents") < ORDER.index("pipelines")
    assert layer_of_file(ROOT / "personas" / "expand.py") == "personas"
    assert layer_of_file(ROOT / "personahub" / "core" / "kernel.py") == "core"
    assert layer_of_file(ROOT / "personahub" / "runtime.py") == "package"


# The rooms below the tasks room know no kinds or purposes: a call carries its own
# max_tokens, and ``purpose`` is a label they record, never read.
UNAWARE = ("personahub/core", "personahub/models", "personahub/executors")
# the purposes the old per-purpose limit tables named (the model layer's, then
# ``personahub.tasks.max_tokens``'s): each caller now states its own limit beside its purpose
PURPOSES = frozenset({"survey", "reflection", "decide", "interview", "expand", "text-to-persona",
                      "text_to_persona", "write_persona", "solve", "judge", "synth",
                      "equivalence"})
# The tasks room knows its own kinds (and survey, a task there) but no purpose of a room above it.
TASKS_ROOM = "personahub/tasks"
TASKS_OWN = frozenset({"survey"})
# the same words where they name something else: the offline engine reads prompt headings and
# JSON keys (its field-writing rules are in field_writers.py)
NOT_KINDS = frozenset({("personahub/models/offline_text.py", "conversation"),
                       ("personahub/models/field_writers.py", "instruction")})


OFFLINE_ENGINE = ("personahub.models.offline", "personahub.models.offline_text",
                  "personahub.models.endpoint_offline")
# the engine's own package, and the engine selection that builds it for a spec
ENGINE_FILES = ("personahub/models/offline.py", "personahub/models/offline_text.py",
                "personahub/models/endpoint_offline.py", "personahub/models/fake_server/")
ENGINE_SELECTION = ("personahub/models/endpoint_specs.py", "personahub/models/client.py")


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, with each ``from pkg import name`` as ``pkg`` and ``pkg.name``."""
    found = []
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def engine_reaches(files: list[Path], root: Path = ROOT) -> list[str]:
    """Return each import of the offline engine by a module that is not its own or the selection."""
    found = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel.startswith(ENGINE_FILES + ENGINE_SELECTION):
            continue
        found += [f"{rel}:{line} imports {module}" for line, module in imported_names(path)
                  if module in OFFLINE_ENGINE]
    return found


@pytest.mark.slow
def test_only_the_engine_selection_imports_the_offline_engine() -> None:
    """The real prompt budget, the memory and the task registry share text measures and field
    rules from neutral modules; the engine reads the kinds' writers through the lookup the
    runtime hands it, and nothing else imports the engine."""
    found = engine_reaches(sources())
    assert not found, f"imports of the offline engine outside its package and selection: {found}"


def test_the_engine_check_sees_a_reach(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from personahub.models.offline import approx_tokens\n"
                      "from personahub.models import offline_text\n"
                      "from personahub.models import client\n")
    assert engine_reaches([module], tmp_path) == [
        "m.py:1 imports personahub.models.offline", "m.py:2 imports personahub.models.offline_text"]


def string_constants(tree: ast.Module) -> list[tuple[int, str]]:
    """Every string constant of a module with its line, docstrings left out (a module's, a
    class's or a function's first statement)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def kind_literals(tree: ast.Module, names: frozenset[str]) -> list[tuple[int, str]]:
    """The string constants of ``tree`` that name a kind or a purpose: the whole string, or its
    head before ':' (``synth:math_problem``, ``text-to-persona:read``)."""
    return [(line, text) for line, text in string_constants(tree)
            if text in names or text.partition(":")[0] in names]


def kind_names() -> frozenset[str]:
    """The task registry's kind and task names and the old per-purpose limits' purposes."""
    from personahub.tasks.registry import emission_kinds, tasks

    return frozenset({*emission_kinds(), *(t.name for t in tasks()), *PURPOSES})


def test_no_room_below_the_tasks_names_a_kind_or_purpose() -> None:
    """No module of core, models or executors holds a kind's name or a purpose as a string
    (docstrings aside): the model layer is told each call's limit, it does not look it up. The
    tasks room holds no purpose of a room above it either (no per-purpose limit table)."""
    names = kind_names()
    found = [f"{path.relative_to(ROOT).as_posix()}:{line} {text!r}"
             for path in sources() if path.relative_to(ROOT).as_posix().startswith(UNAWARE)
             for line, text in kind_literals(parsed(path), names)
             if (path.relative_to(ROOT).as_posix(), text) not in NOT_KINDS]
    assert not found, f"kind or purpose literals below the tasks room: {found}"
    foreign = PURPOSES - TASKS_OWN
    found = [f"{path.relative_to(ROOT).as_posix()}:{line} {text!r}"
             for path in sources() if path.relative_to(ROOT).as_posix().startswith(TASKS_ROOM)
             for line, text in kind_literals(parsed(path), foreign)]
    assert not found, f"purposes of the rooms above in the tasks room: {found}"


# The rooms between the tasks and the pipelines name the purposes of their own calls (the label
# each call records) and the kinds of the rooms below them, never a job kind or purpose of a room
# above: the persona layer labels its expansion calls, the agent its decide step, the society
# its reflections, and none of them dispatches on what a pipeline is making.
OWN_PURPOSES = {"personas": frozenset({"expand", "expansion", "text-to-persona", "text_to_persona",
                                       "dedup", "write_persona"}),
                "agents": frozenset({"decide"}),
                "sim": frozenset({"reflection"})}
# the quality gate's `rejected` rows name where an item came from; synthesis is one source
NOT_PURPOSES = frozenset({("personas/quality.py", "synthesis")})


@pytest.mark.slow
def test_the_rooms_above_the_tasks_name_only_their_own_purposes() -> None:
    from personahub.pipelines.labels import SHIPPED

    every = PURPOSES | set(SHIPPED)
    below: frozenset[str] = TASKS_OWN
    found = []
    for room, own in OWN_PURPOSES.items():
        below |= own
        foreign = frozenset(every - below)
        found += [f"{path.relative_to(ROOT).as_posix()}:{line} {text!r}"
                  for path in sources() if path.relative_to(ROOT).as_posix().startswith(room + "/")
                  for line, text in kind_literals(parsed(path), foreign)
                  if (path.relative_to(ROOT).as_posix(), text) not in NOT_PURPOSES]
    assert not found, f"a job kind or purpose of a room above: {found}"
    assert ORDER.index("personas") < ORDER.index("agents") < ORDER.index("sim")


def test_the_kind_check_sees_a_purpose_literal_and_skips_docstrings() -> None:
    tree = ast.parse('"""About survey."""\ndef f():\n    """The judge."""\n'
                     '    return {"synth:math_problem": 1, "decide": 2, "text-to-persona:read": 3,'
                     ' "a survey": 4}\n')
    names = frozenset({"survey", "judge", "synth", "decide", "text-to-persona"})
    assert kind_literals(tree, names) == [(4, "synth:math_problem"), (4, "decide"),
                                          (4, "text-to-persona:read")]
    assert {"math_problem", "survey", "judge"} <= kind_names()


def module_name(path: Path) -> str:
    """The dotted name a source file is imported as (``personahub.`` + its path)."""
    rel = path.relative_to(ROOT).with_suffix("").as_posix()
    rel = rel.removeprefix("personahub/").removesuffix("/__init__")
    return "personahub" if rel in ("personahub", "__init__") else "personahub." + rel.replace("/", ".")


def import_graph() -> dict[str, set[str]]:
    """Module → the project's modules it imports (an ``from pkg import name`` counts as the module
    ``pkg.name`` where that is a module, else ``pkg``)."""
    names = {module_name(p) for p in sources()}
    graph: dict[str, set[str]] = {}
    for path in sources():
        me = module_name(path)
        targets: set[str] = set()
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in names else node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[me] = {t for t in targets if t in names and t != me and t != "personahub"}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.slow
def test_no_import_circle() -> None:
    """No two modules import each other, directly or round a longer circle, deferred imports
    included: a circle is a layer in disguise."""
    assert circles(import_graph()) == []


def test_the_circle_check_sees_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []

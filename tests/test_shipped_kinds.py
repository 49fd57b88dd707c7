"""A shipped job kind is named in one place, ``pipelines/labels.py`` (issue 43, item 3): the
registry registers exactly the kinds of that table from the modules it names, with the labels
it names; no other module registers a kernel spec of the package or lists the shipped kinds;
a kind's result handle is the ``Job`` subclass that names the kind, else ``Job``; and each
public job function's ``_async`` twin takes what the function takes.
"""

from __future__ import annotations

import ast
import inspect
import os
from pathlib import Path

import personahub
from personahub import results, runtime
from personahub.core import kernel
from personahub.pipelines.labels import SHIPPED

PACKAGE = Path(personahub.__file__).resolve().parent

#: a stored config with every key some label reads, so each label says something its own
CONFIG = {"scenario": {"name": "town"}, "task": "npc", "n": 3, "hops": 2, "fanout": 4,
          "corpus": "c.txt", "embedder": "hash", "job": "j1", "sample": 5, "run_id": "r1",
          "question": "Why?", "survey": "/x/w.csv", "population": "p", "marginals": "/x/m.csv",
          "solvers": ["offline", "offline?seed=2"], "models": ["offline"]}


def _modules() -> dict[str, ast.Module]:
    """Every module of the package (the linked root folders too), by its dotted name."""
    found = {}
    paths = [Path(folder, file) for folder, _, files in os.walk(PACKAGE, followlinks=True)
             for file in files if file.endswith(".py")]  # the folder links followed
    for path in sorted(paths):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("personahub", *parts)).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _registers_a_spec(tree: ast.Module) -> bool:
    """Whether a module calls the kernel's ``register`` (imported by name or as ``kernel.``)."""
    from_kernel = {alias.asname or alias.name for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.module == "personahub.core.kernel"
                   for alias in node.names if alias.name == "register"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in from_kernel:
                return True
            if (isinstance(func, ast.Attribute) and func.attr == "register"
                    and isinstance(func.value, ast.Name) and func.value.id == "kernel"):
                return True
    return False


def test_the_registry_registers_exactly_the_table() -> None:
    runtime.registered_kinds()  # imports the table's modules
    shipped = {kind: spec for kind, spec in kernel.registered().items()
               if type(spec).__module__.startswith("personahub.")}
    assert sorted(shipped) == sorted(SHIPPED)
    assert len(SHIPPED) == 10
    for kind, spec in shipped.items():
        assert type(spec).__module__ == SHIPPED[kind].module, kind
        assert runtime.registered_spec(kind) is spec


def test_each_spec_labels_as_the_table_says() -> None:
    said = {kind: shipped.label(CONFIG) for kind, shipped in SHIPPED.items()}
    assert len(set(said.values())) == len(said), said  # a swapped label would show
    for kind, words in said.items():
        spec = runtime.registered_spec(kind)
        assert spec is not None
        assert spec.label(CONFIG) == words, kind


def test_only_the_table_s_modules_register_a_spec() -> None:
    """A spec registered by a module the table does not name is a second place a kind lives."""
    registering = sorted(name for name, tree in _modules().items() if _registers_a_spec(tree))
    assert registering == sorted(s.module for s in SHIPPED.values())


def test_the_registry_and_the_listing_name_no_kind_of_their_own() -> None:
    """``runtime`` and ``any_job`` read the table: neither imports a spec module nor writes a
    shipped kind's name (a per-kind import list or handle map would)."""
    spec_modules = {s.module for s in SHIPPED.values()}
    for name in ("personahub.runtime", "personahub.any_job"):
        tree = _modules()[name]
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}
        assert not imported & spec_modules, name
        strings = {node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not strings & set(SHIPPED), name


def test_a_kind_s_handle_is_the_job_subclass_naming_it() -> None:
    own = {handle.kind: handle for handle in results.Job.__subclasses__()}  # type: ignore[attr-defined]
    assert len(own) == len(results.Job.__subclasses__())  # one handle per kind at most
    assert {k: h.__name__ for k, h in own.items()} == {
        "run": "Run", "judge": "Judged", "calibration": "Calibration"}
    for kind in SHIPPED:
        assert results.handle_class(kind) is own.get(kind, results.Job), kind
    assert results.handle_class("toy_word_count") is results.Job


def test_every_job_function_has_an_async_twin_of_its_shape() -> None:
    """The public names of a job come as a pair: ``f`` and ``f_async``, taking the same."""
    for name in personahub._JOBS:
        sync, twin = getattr(personahub, name), getattr(personahub, f"{name}_async")
        assert inspect.iscoroutinefunction(twin) and not inspect.iscoroutinefunction(sync), name
        assert inspect.signature(twin).parameters == inspect.signature(sync).parameters, name

"""A shipped job kind is named in one place, its row in ``pipelines/labels.py``: the
registry registers exactly the kinds of that table from the modules it names, with the labels
it names; no other module registers a kernel spec of the package or lists the shipped kinds;
a kind's result handle is the ``Job`` subclass that names the kind, else ``Job``; each kind's
command is registered at the table's path and its job functions are exported by ``personahub``
(neither the command line nor the package lists them by hand); and each public job function's
``_async`` twin takes what the function takes.
"""

from __future__ import annotations

import ast
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer

import personahub
from personahub import results, runtime
from personahub.cli import app as cli_app
from personahub.core import kernel
from personahub.pipelines.labels import SHIPPED, ShippedKind

PACKAGE = Path(personahub.__file__).resolve().parent

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
    """Each spec labels every row's sample as the table does (a swapped label would show)."""
    for kind in SHIPPED:
        spec = runtime.registered_spec(kind)
        assert spec is not None
        for shipped in SHIPPED.values():
            assert spec.label(shipped.sample) == SHIPPED[kind].label(shipped.sample), kind
    said = {kind: shipped.label(shipped.sample) for kind, shipped in SHIPPED.items()}
    assert len(set(said.values())) == len(said), said


@pytest.mark.slow
def test_only_the_table_s_modules_register_a_spec() -> None:
    """A spec registered by a module the table does not name is a second place a kind lives."""
    registering = sorted(name for name, tree in _modules().items() if _registers_a_spec(tree))
    assert registering == sorted(s.module for s in SHIPPED.values())


@pytest.mark.slow
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
    own = {handle.kind: handle for handle in results.Job.__subclasses__()}  # type: ignore[misc]
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


def _registered(typer_app: typer.Typer, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every command the app registers, by its path, with the function it registers."""
    found = {(*path, info.name or ""): info.callback for info in typer_app.registered_commands}
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None and group.name
        found |= _registered(group.typer_instance, (*path, group.name))
    return found


def missing_commands(table: Mapping[str, ShippedKind], typer_app: typer.Typer) -> list[str]:
    """The kinds whose command is not registered at their path (or is another function)."""
    registered = _registered(typer_app)
    return [kind for kind, shipped in table.items()
            if registered.get(shipped.command_path) is not cli_app.resolve(shipped.command)]


def missing_exports(table: Mapping[str, ShippedKind], package: Any) -> list[str]:
    """Each job function the table names that ``package`` does not export as that function,
    with its ``_async`` twin from the same module."""
    missing = []
    for shipped in table.values():
        for ref in shipped.api:
            module, _, name = ref.partition(":")
            for public in (name, f"{name}_async"):
                own = getattr(__import__(module, fromlist=[public]), public, None)
                if (own is None or public not in package.__all__ or public not in dir(package)
                        or getattr(package, public, None) is not own):
                    missing.append(f"{module}:{public}")
    return missing


def _row(kind: str, **changes: Any) -> dict[str, ShippedKind]:
    return {f"{kind}_copy": SHIPPED[kind].replace(**changes)}


def test_each_kind_s_command_is_registered_at_the_table_s_path() -> None:
    assert missing_commands(SHIPPED, cli_app.app) == []
    paths = {shipped.command_path for shipped in SHIPPED.values()}
    assert len(paths) == len(SHIPPED)  # one command per kind
    assert paths == set(_registered(cli_app.app)) - set(cli_app.OWN)  # the rest are not jobs
    assert len({shipped.command for shipped in SHIPPED.values()}) == len(SHIPPED)


def test_a_kind_without_its_command_is_detected() -> None:
    assert missing_commands(_row("dedup", command_path=("personas", "dedupe")), cli_app.app) == [
        "dedup_copy"]
    with pytest.raises(ImportError, match="shipped kind judge_copy: no command .*no_such_command"):
        cli_app.kind_commands(_row("judge", command="personahub.cli.judge:no_such_command"))
    with pytest.raises(ImportError, match="shipped kind judge_copy"):
        cli_app.kind_commands(_row("judge", command="personahub.cli.no_such_module:judge"))


def test_the_app_registers_commands_in_help_order_and_in_existing_groups() -> None:
    """A command the order does not name comes last in its group; one in no group is refused."""
    root, sub = typer.Typer(), typer.Typer()
    root.add_typer(sub, name="g")
    commands: dict[tuple[str, ...], Callable[..., Any]] = {
        ("c",): lambda: None, ("g", "y"): lambda: None, ("a",): lambda: None,
        ("b",): lambda: None, ("g", "x"): lambda: None}
    cli_app.register({(): root, ("g",): sub}, commands, {(): ("b", "a")})
    assert [info.name for info in root.registered_commands] == ["b", "a", "c"]
    assert [info.name for info in sub.registered_commands] == ["y", "x"]
    with pytest.raises(ValueError, match="no group 'h'"):
        cli_app.register({(): root}, {("h", "z"): lambda: None}, {})


def test_each_kind_s_job_functions_are_exported_with_their_twins() -> None:
    assert missing_exports(SHIPPED, personahub) == []
    named = [ref.partition(":")[2] for shipped in SHIPPED.values() for ref in shipped.api]
    assert len(named) == len(set(named)) == len(SHIPPED)  # each kind has one job function
    assert list(personahub._JOBS) == [*named, "resume"]  # the table's, then resume's


def test_a_kind_without_its_job_function_is_detected() -> None:
    fake = _row("interview", api=("personahub.interviews:no_such_job",))
    assert missing_exports(fake, personahub) == [
        "personahub.interviews:no_such_job", "personahub.interviews:no_such_job_async"]
    moved = _row("interview", api=("personahub.api:interview",))  # not where the table says
    assert missing_exports(moved, personahub) == [
        "personahub.api:interview", "personahub.api:interview_async"]


@pytest.mark.slow
def test_no_hand_list_of_the_kinds_commands_or_functions_is_left() -> None:
    """``cli/app.py`` names no kind's command function and ``personahub/__init__.py`` no kind's
    job function: both come from the table."""
    modules = _modules()
    commands = {shipped.command.partition(":")[2] for shipped in SHIPPED.values()}
    app_names = {node.attr for node in ast.walk(modules["personahub.cli.app"])
                 if isinstance(node, ast.Attribute)}
    app_names |= {alias.asname or alias.name for node in ast.walk(modules["personahub.cli.app"])
                  if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not app_names & commands, app_names & commands
    functions = {ref.partition(":")[2] for shipped in SHIPPED.values() for ref in shipped.api}
    strings = {node.value for node in ast.walk(modules["personahub"])
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not strings & {*functions, *(f"{f}_async" for f in functions)}


def test_each_spec_takes_its_names_from_its_row() -> None:
    """A spec names its kind in its class line; its noun, unit, id prefix and resume command
    are its SHIPPED row's, so a new job's id and a stop's message follow the table."""
    from personahub import runtime

    for kind, shipped in SHIPPED.items():
        spec = runtime.registered_spec(kind)
        assert spec is not None and spec.kind == kind
        assert (spec.noun, spec.unit) == (shipped.noun, shipped.unit), kind
        assert spec.id_prefix == shipped.id_prefix, kind
        hint = spec.resume_hint("J1", Path("x.duckdb"))
        expected = ("personahub resume J1" if shipped.resume_command is None
                    else f"{shipped.resume_command} --resume J1 --db x.duckdb")
        assert hint.startswith(expected), (kind, hint)
    assert SHIPPED["expansion"].resume_command == "personahub personas expand"
    assert SHIPPED["judge"].resume_command is None


DATABASE_PAGE = PACKAGE.parent / "docs" / "database.md"
KINDS_BEGIN = "<!-- kinds: generated from pipelines/labels.py SHIPPED -->\n"
KINDS_END = "<!-- end of kinds -->\n"


def kinds_table(table: Mapping[str, ShippedKind]) -> str:
    """The database page's table of kinds: each kind's command and tables, from its row."""
    lines = ["| kind | command | its tables (first: the one holding a job's rows under its id) |",
             "|---|---|---|"]
    lines += [f"| `{kind}` | `personahub {' '.join(row.command_path)}` | "
              f"{', '.join(f'`{t}`' for t in row.tables)} |" for kind, row in table.items()]
    return "".join(f"{line}\n" for line in lines)


def documented_kinds(page: str) -> str:
    """The page's table of kinds, between its markers."""
    return page[page.index(KINDS_BEGIN) + len(KINDS_BEGIN):page.index(KINDS_END)]


def test_the_database_page_lists_each_kind_with_its_tables() -> None:
    assert documented_kinds(DATABASE_PAGE.read_text(encoding="utf-8")) == kinds_table(SHIPPED), (
        "docs/database.md's table of kinds differs from the rows: run "
        "python tests/test_shipped_kinds.py and review the diff")


if __name__ == "__main__":  # rewrite the database page's table of kinds (review the diff)
    page = DATABASE_PAGE.read_text(encoding="utf-8")
    DATABASE_PAGE.write_text(page.replace(KINDS_BEGIN + documented_kinds(page),
                                          KINDS_BEGIN + kinds_table(SHIPPED)), encoding="utf-8")
    print(DATABASE_PAGE)

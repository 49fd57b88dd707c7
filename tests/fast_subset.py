"""What a bare ``pytest`` runs: the fast subset on two workers; ``pytest --all`` runs every test.

The README's install check is ``pip install -e '.[dev]' && pytest``: it must finish in minutes on
two cores and still exercise every module. So a bare run (no file, folder or test named, no
``-m``, no ``-k``) deselects the ``slow`` and ``real_model`` tests and, when pytest-xdist is
installed and no ``-n`` is given, spreads the rest over two worker processes. Anything the user
names runs as asked, in one process: ``pytest tests/sim/test_soak.py::test_x`` runs that test even
though it is slow, ``-m "..."`` is used as written, and ``--all`` lifts the default selection.

With ``PERSONAHUB_MODULE_CHECK=1`` (CI sets it for the README's command) the run also checks that
its tests exercised every module of ``personahub`` (the folders it links to included): a module
counts when a line inside one of its functions ran during the tests, or, for a module without
functions, when it was imported. The modules no test exercised are listed and the run fails.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "personahub"
FAST = "not slow and not real_model"
WORKERS = 2
CHECK_ENV = "PERSONAHUB_MODULE_CHECK"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all", action="store_true", dest="all_tests",
        help="run every test, the slow ones too, in one process (add -n 2 to split them). A bare "
             f"pytest runs the fast subset ({FAST}) on {WORKERS} workers.")


DEFAULT_RUN = pytest.StashKey[bool]()


def fast_subset_run(config: pytest.Config) -> bool:
    """Whether this run gets the default selection: nothing named, no ``-m``/``-k``, no ``--all``
    (decided once, before the selection is written into ``-m``)."""
    if DEFAULT_RUN not in config.stash:
        config.stash[DEFAULT_RUN] = not (
            config.getoption("all_tests") or config.option.markexpr or config.option.keyword
            or config.args_source == pytest.Config.ArgsSource.ARGS)
    return config.stash[DEFAULT_RUN]


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Choose the fast subset and two workers before xdist reads ``-n`` (xdist's workers parse the
    same command line and so make the same choice of tests)."""
    if not fast_subset_run(config):
        return
    config.option.markexpr = FAST
    if hasattr(config, "workerinput") or config.getoption("usepdb"):
        return
    if getattr(config.option, "numprocesses", "absent") is None:  # xdist is loaded, no -n given
        config.option.numprocesses = WORKERS


def pytest_report_header(config: pytest.Config) -> str | None:
    if not fast_subset_run(config):
        return None
    return (f"the fast subset (-m '{FAST}'); `pytest --all` runs every test, "
            "and a test named on the command line runs even if slow")


# -- the module check ---------------------------------------------------------------------------


def package_modules(package: Path = PACKAGE) -> list[Path]:
    """Every ``.py`` file of the package, through its symlinked folders, as real paths."""
    found = {Path(os.path.realpath(os.path.join(folder, name)))
             for folder, _, names in os.walk(package, followlinks=True)
             for name in names if name.endswith(".py")}
    return sorted(found)


@functools.cache
def function_lines(path: Path) -> frozenset[int]:
    """The line numbers of the statements inside the module's functions (a lambda's body shares
    its line with the statement that defines it, which runs at import: lambdas do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return frozenset(n.lineno for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                     for stmt in node.body for n in ast.walk(stmt)
                     if isinstance(n, ast.stmt) and n.lineno > node.lineno)


def exercised(executed: Mapping[str, Iterable[int]], imported: Iterable[str],
              modules: Iterable[Path]) -> set[str]:
    """The modules (real paths) that count as exercised: a line of one of their functions ran
    (``executed``: path -> line numbers), or they have no function and were imported or run
    (a scenario file runs through ``runpy``, never imported)."""
    imported = set(imported)
    done = set()
    for module in modules:
        lines = function_lines(module)
        ran = set(executed.get(str(module), ()))
        if lines & ran or (not lines and (ran or str(module) in imported)):
            done.add(str(module))
    return done


# Modules that only tests with an optional extra reach (their work runs on Ray): where the
# extra's package is not installed (the quick start's environment) those tests skip, and the check
# leaves the module out and says so.
EXTRA_ONLY = {
    "personahub.executors.ray_minhash": "ray",
    "personahub.sim.population_ray": "ray",
}


def excused(names: Iterable[str]) -> dict[str, str]:
    """Of ``names``, the EXTRA_ONLY modules whose package is not installed here: name -> why."""
    return {name: f"{EXTRA_ONLY[name]} is not installed" for name in names
            if name in EXTRA_ONLY and importlib.util.find_spec(EXTRA_ONLY[name]) is None}


def unexercised(exercised_paths: Iterable[str], modules: Iterable[Path]) -> list[str]:
    """The modules no test exercised, as dotted names (``personahub.sim.runner``)."""
    done = set(exercised_paths)
    names = {}
    for folder, _, files in os.walk(PACKAGE, followlinks=True):
        for name in files:
            if name.endswith(".py"):
                dotted = Path(folder, name).relative_to(ROOT).with_suffix("").parts
                names[os.path.realpath(os.path.join(folder, name))] = ".".join(dotted)
    return sorted(names.get(str(m), str(m)) for m in modules if str(m) not in done)


class ModuleCheck:
    """Measures (with coverage.py) what the tests of this process run, from the first test on;
    the process that reports (xdist's controller, or the only one) gathers and judges."""

    def __init__(self, config: pytest.Config) -> None:
        try:
            import coverage
        except ImportError:
            raise pytest.UsageError(f"{CHECK_ENV}=1 needs coverage: pip install -e '.[dev]'") from None
        self.config = config
        self.modules = package_modules()
        self.exercised: set[str] = set()
        self.missing: list[str] = []
        self.excused: dict[str, str] = {}
        folders = sorted({os.path.realpath(f) for f, _, _ in os.walk(PACKAGE, followlinks=True)})
        self.coverage = coverage.Coverage(data_file=None, config_file=False, source=folders)

    def distributed_controller(self) -> bool:
        return self.config.pluginmanager.has_plugin("dsession")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Iterator[None]:
        if self.distributed_controller():
            return (yield)
        self.coverage.start()
        try:
            return (yield)
        finally:
            self.coverage.stop()

    def measured(self) -> set[str]:
        data = self.coverage.get_data()
        executed = {path: data.lines(path) or () for path in data.measured_files()}
        imported = {os.path.realpath(path) for m in list(sys.modules.values())
                    if isinstance(path := getattr(m, "__file__", None), str)}
        return exercised(executed, imported, self.modules)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        self.exercised.update(getattr(node, "workeroutput", {}).get("module_check", ()))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            self.config.workeroutput["module_check"] = sorted(self.measured())  # type: ignore[attr-defined]
            return
        if not self.distributed_controller():
            self.exercised = self.measured()
        missing = unexercised(self.exercised, self.modules)
        self.excused = excused(missing)
        self.missing = [name for name in missing if name not in self.excused]
        if self.missing and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        if self.missing:
            terminalreporter.write_sep("=", f"{CHECK_ENV}: {len(self.missing)} module(s) no test of "
                                       "this run exercised", red=True)
            for name in self.missing:
                terminalreporter.write_line(name)
        else:
            terminalreporter.write_line(
                f"{CHECK_ENV}: the tests exercised all {len(self.modules) - len(self.excused)} "
                "modules of personahub that can run here")
        for name, why in sorted(self.excused.items()):
            terminalreporter.write_line(f"{CHECK_ENV}: not checked: {name} ({why})")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(CHECK_ENV) and not config.option.collectonly:
        config.pluginmanager.register(ModuleCheck(config), "personahub-module-check")

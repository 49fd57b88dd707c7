"""A bare ``pytest`` is the fast subset on two workers, ``--all`` runs every test, a named test runs
even if slow, ``-m`` is used as written; ``PERSONAHUB_MODULE_CHECK=1`` fails a run whose tests
left a module of personahub unexercised (tests/fast_subset.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fast_subset import (
    CHECK_ENV,
    EXTRA_ONLY,
    ROOT,
    exercised,
    function_lines,
    package_modules,
    unexercised,
)


def test_a_module_counts_when_a_line_of_one_of_its_functions_ran(tmp_path: Path) -> None:
    with_functions = tmp_path / "jobs.py"
    with_functions.write_text("X = 1\n\n\ndef run():\n    return X\n\n\nf = lambda: 2\n"
                              "def g(): return 3\n")
    constants = tmp_path / "kinds.py"
    constants.write_text("KINDS = ('post', 'reply')\n")
    modules = [with_functions, constants]
    assert function_lines(with_functions) == {5}  # run's body: lines 8 and 9 also run at import
    # imported only (its module-level lines ran): the module without functions counts
    assert exercised({str(with_functions): [1, 4, 8, 9]}, [str(with_functions), str(constants)],
                     modules) == {str(constants)}
    assert exercised({str(with_functions): [5]}, [], modules) == {str(with_functions)}
    assert exercised({}, [], modules) == set()
    # a module without functions run by runpy (a scenario file) is never in sys.modules
    assert exercised({str(constants): [1]}, [], modules) == {str(constants)}


def test_the_package_modules_include_the_linked_folders_and_name_themselves() -> None:
    modules = package_modules()
    assert all(m.is_file() and not m.is_symlink() for m in modules)
    names = unexercised([], modules)
    assert len(names) == len(modules)
    assert {"personahub.api", "personahub.__main__", "personahub.sim.runner",
            "personahub.models.fake_server.server"} <= set(names)
    assert unexercised([str(m) for m in modules], modules) == []
    for name, package in EXTRA_ONLY.items():  # the excused modules exist and use their package
        assert name in names
        source = (ROOT / Path(*name.split("."))).with_suffix(".py").read_text(encoding="utf-8")
        assert f"import {package}" in source


# A tiny project whose conftest takes tests/fast_subset.py's hooks, as tests/conftest.py does.
CONFTEST = """
from tests.fast_subset import (pytest_addoption, pytest_cmdline_main, pytest_configure,
                               pytest_report_header)
"""
TESTS = """
import pytest

def test_fast():
    pass

@pytest.mark.slow
def test_slow():
    pass

@pytest.mark.real_model
def test_model():
    pass
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.pytest.ini_options]
        testpaths = ["t"]
        markers = ["slow: slow", "real_model: a model", "extra: an extra"]
        """))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "conftest.py").write_text(CONFTEST)
    (tmp_path / "t" / "test_a.py").write_text(TESTS)
    return tmp_path


def pytest_in(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environment.pop(CHECK_ENV, None)
    environment["PYTHONPATH"] = str(ROOT)
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
                          cwd=project, env=environment, text=True, capture_output=True, timeout=300)


def ran(done: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.split("::")[-1] for line in done.stdout.splitlines() if line.startswith("PASSED")}


@pytest.mark.slow
def test_a_bare_pytest_runs_the_fast_subset_on_two_workers(project: Path) -> None:
    done = pytest_in(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(done) == {"test_fast"}
    assert "2 workers" in done.stdout
    assert "pytest --all" in done.stdout  # the header says what was left out and how to run it


@pytest.mark.slow
def test_all_named_tests_and_marks_run_as_asked(project: Path) -> None:
    assert ran(pytest_in(project, "--all")) == {"test_fast", "test_slow", "test_model"}
    assert ran(pytest_in(project, "t/test_a.py::test_slow")) == {"test_slow"}
    assert ran(pytest_in(project, "t/test_a.py")) == {"test_fast", "test_slow", "test_model"}
    assert ran(pytest_in(project, "-m", "slow")) == {"test_slow"}
    assert ran(pytest_in(project, "-k", "slow or model")) == {"test_slow", "test_model"}
    one_process = pytest_in(project, "--all")
    assert "workers" not in one_process.stdout


@pytest.mark.slow
def test_the_module_check_fails_a_run_that_left_modules_unexercised(project: Path) -> None:
    done = pytest_in(project, **{CHECK_ENV: "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert ran(done) == {"test_fast"}
    assert f"{CHECK_ENV}: " in done.stdout and "no test of this run exercised" in done.stdout
    assert "\npersonahub.sim.runner\n" in done.stdout

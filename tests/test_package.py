"""The installed package: one ``personahub`` namespace, nothing generic at top level."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import personahub
from personahub.tasks import synthesis_names

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("agents", "sim", "personas", "pipelines", "analysis", "scenarios")


def test_version_and_public_api_resolve() -> None:
    assert personahub.__version__ == version("personahub")
    for name in personahub.__all__:
        assert getattr(personahub, name) is not None, name
    with pytest.raises(AttributeError):
        personahub.no_such_name  # noqa: B018


@pytest.mark.slow
def test_importing_a_core_module_loads_no_pipeline() -> None:
    """The package root reads the labels table only when a public name is asked for: importing
    ``personahub.core.errors`` in a fresh interpreter loads nothing of the rooms above the core."""
    code = ("import sys, personahub.core.errors\n"
            "print(sorted(m for m in sys.modules if m.startswith(('personahub.pipelines', "
            "'personahub.sim', 'personahub.agents', 'personahub.api'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    code = ("import personahub\nfrom personahub import PersonahubError\n"
            "print(PersonahubError.__module__, 'synthesize_async' in personahub.__all__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["personahub.core.errors", "True"]


@pytest.mark.slow  # starts a Python process per folder
@pytest.mark.parametrize("folder", FOLDERS)
def test_root_folders_are_not_top_level_packages(folder: str) -> None:
    """From the repository root (on sys.path) a bare ``import agents`` must not load this project."""
    done = subprocess.run([sys.executable, "-c", f"import {folder}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert f"ModuleNotFoundError: No module named '{folder}'" in done.stderr


@pytest.mark.slow  # starts a Python process
def test_python_m_personahub_version() -> None:
    done = subprocess.run([sys.executable, "-m", "personahub", "--version"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"personahub {version('personahub')}"


@pytest.mark.slow
def test_wheel_installs_only_personahub(tmp_path: Path) -> None:
    """A regular (non-editable) build holds one top-level package and its data files."""
    source = tmp_path / "source"  # setuptools writes build/ beside the sources: build from a copy
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", "*.duckdb*", ".*_cache", ".typecheck"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("personahub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"personahub"}
    for data in ("personahub/core/schema.sql", "personahub/analysis/views.sql",
                 "personahub/personas/data/seed_personas.jsonl", "personahub/cli/app.py",
                 "personahub/scenarios/riverside_town.py", "personahub/tasks/registry.py",
                 *(f"personahub/analysis/view/{f}" for f in ("index.html", "view.js", "view.css")),
                 *(f"personahub/tasks/demos/{task}.jsonl" for task in synthesis_names())):
        assert data in names, data
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    probe = ("import personahub.core.store as s, personahub.analysis.views as v;"
             "from personahub.pipelines.synthesis_inputs import load_examples as e;"
             "print(len(s.schema_sql()) > 0 and len(e('builtin:tool_spec')) > 0, s.__file__)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True " + str(site))


def test_each_root_folder_is_where_its_import_path_says() -> None:
    """personahub/<folder> is a relative link to the root folder, so a module is found at the
    path its import name says (mypy, an IDE, grep), and pyproject maps no folder elsewhere."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "package-dir" not in setuptools
    for folder in FOLDERS:
        linked = ROOT / "personahub" / folder
        assert linked.is_symlink() and linked.readlink() == Path("..") / folder, folder
        assert (linked / "__init__.py").resolve() == ROOT / folder / "__init__.py"
    links = {p.name for p in (ROOT / "personahub").iterdir() if p.is_symlink()}
    assert links == set(FOLDERS)


def test_the_licence_pyproject_names_ships() -> None:
    import tomllib

    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert declared == "Apache-2.0"
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence

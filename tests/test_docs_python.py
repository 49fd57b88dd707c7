"""Every Python example of README.md and docs/*.md runs, offline, as a reader would paste it.

A page's ``python`` blocks run in order in one fresh interpreter (a later block uses the names
an earlier one set, as in one notebook), in a temporary folder holding what a clean clone holds
(tests/doc_commands.py), with this checkout's ``personahub``; a block with a top-level
``await`` runs as a notebook cell would. Before a page's blocks come what the page takes the
reader to have done (``BEFORE``: a database, a population, a survey file). The example ids a
page shows stand for the folder's own (``REPLACED``). Only the blocks in ``SKIPPED`` are left
out, each with its reason; a line that needs an optional extra not installed here is left out
and said (``EXTRAS``). tests/test_docs_run.py does the same for the pages' shell commands.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.doc_commands import ROOT, clean_clone
from tests.pipelines.calibrate_fixtures import FOUR_COUNTS, FOUR_QUESTIONS, write_survey


def python_blocks(page: Path) -> list[str]:
    """The page's fenced ``python`` blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text("utf-8"), re.S | re.M)


PAGES = [page for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
         if python_blocks(page)]

# the id of the population hub.duckdb holds (drawn in BEFORE)
POPULATION = ("import personahub\n"
              "with personahub.connect('hub.duckdb', read_only=True) as con:\n"
              "    POPULATION = con.execute(\"select any_value(attributes->>'population') "
              "from personas\").fetchone()[0]\n")
DRAW = ("import subprocess\n"
        "subprocess.run(['personahub', 'personas', 'sample-population', '--marginals',\n"
        "                'examples/population_marginals.csv', '--n', '400', '--db', 'hub.duckdb'],\n"
        "               check=True, capture_output=True)\n")

RUN_HUB = ("import subprocess\n"
           "subprocess.run(['personahub', 'run', 'scenarios/product_launch.py', '--steps', '1',\n"
           "                '--db', 'hub.duckdb'], check=True, capture_output=True)\n")

# What a page takes the reader to have done before its blocks (Python, run first).
BEFORE: dict[str, list[str]] = {
    # the loop over stopped jobs reads hub.duckdb, a database with jobs in it
    "docs/api.md": [RUN_HUB],
    # a population to calibrate, and survey.csv (FILES) on its groups
    "docs/calibration.md": [DRAW, POPULATION],
}

# Example ids a page shows, and the Python expression standing for the folder's own.
REPLACED: dict[str, dict[str, str]] = {
    "docs/calibration.md": {'"pop-1a2b3c4d5e"': "POPULATION"},
}

# Files a page's blocks read that the reader is taken to have, made in the page's folder.
FILES: dict[str, dict[str, Callable[[Path], object]]] = {
    # survey.csv on the population's groups, with the four questions --elicit logprobs needs
    "docs/calibration.md": {"survey.csv": lambda path: write_survey(path, FOUR_QUESTIONS,
                                                                    FOUR_COUNTS)},
}

# Folders of this checkout a page's blocks read (a clone has them; the clean copy has not).
FOLDERS: dict[str, list[str]] = {"docs/calibration.md": ["tests/analysis/fixtures/opinionqa_wave"]}

# Blocks left out (keyed by their first line), each with why.
SKIPPED: dict[str, dict[str, str]] = {
    "docs/api.md": {
        "from personahub.analysis.export_hf import push_to_hub":
            "uploads to the Hugging Face Hub (the network and a token)",
    },
    "docs/architecture.md": {
        "@dataclass(frozen=True, kw_only=True)":
            "a sketch of a job spec, its method bodies elided (`...`); tests/core/test_toy_job.py "
            "runs the whole one",
    },
}

# A line needing an optional extra: left out (and said) where the extra is not installed.
EXTRAS: dict[str, tuple[str, str]] = {'fmt="hf"': ("datasets", "the [hf] extra")}


def _first_line(block: str) -> str:
    return block.splitlines()[0].strip()


def test_the_skip_list_names_blocks_the_pages_have() -> None:
    """Every entry of the tables above names a page with Python blocks, a block it has, or an
    example id one of its blocks shows."""
    pages = {str(page.relative_to(ROOT)) for page in PAGES}
    assert {"README.md", "docs/api.md", "docs/calibration.md", "docs/scenarios.md"} <= pages
    assert set(SKIPPED) | set(BEFORE) | set(REPLACED) | set(FILES) | set(FOLDERS) <= pages
    for page in pages:
        blocks = python_blocks(ROOT / page)
        firsts = [_first_line(b) for b in blocks]
        assert set(SKIPPED.get(page, {})) <= set(firsts), page
        for example in REPLACED.get(page, {}):
            assert any(example in b for b in blocks), (page, example)


def _steps(page: str) -> tuple[list[str], list[str]]:
    """The code to run, in order, and what was left out (and why)."""
    code, left_out = list(BEFORE.get(page, [])), []
    for block in python_blocks(ROOT / page):
        why = SKIPPED.get(page, {}).get(_first_line(block))
        if why:
            left_out.append(f"{_first_line(block)}: {why}")
            continue
        for example, stand_in in REPLACED.get(page, {}).items():
            block = block.replace(example, stand_in)
        kept = []
        for line in block.splitlines():
            needs = [extra for marker, extra in EXTRAS.items() if marker in line
                     and importlib.util.find_spec(extra[0]) is None]
            if needs:
                left_out.append(f"{line.strip()}: needs {needs[0][1]}")
                continue
            kept.append(line)
        code.append("\n".join(kept) + "\n")
    return code, left_out


# Runs each step in one namespace; a step with a top-level await is awaited, as in a notebook.
DRIVER = """
import ast, asyncio, inspect, json, sys
steps = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__docs__"}
for number, code in enumerate(steps):
    print(f"--- step {number}", flush=True)
    compiled = compile(code, f"<step {number}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)
"""


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_python_example_runs(page: Path, tmp_path: Path) -> None:
    name = str(page.relative_to(ROOT))
    code, left_out = _steps(name)
    if len(code) == len(BEFORE.get(name, [])):
        pytest.skip(f"{name}: every block is left out ({'; '.join(left_out)})")
    work, env = clean_clone(tmp_path)
    for folder in FOLDERS.get(name, []):
        shutil.copytree(ROOT / folder, work / folder)
    for file, make in FILES.get(name, {}).items():
        make(work / file)
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps(code), encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", DRIVER, str(steps)], cwd=work, env=env,
                          text=True, capture_output=True, timeout=900)
    assert done.returncode == 0, (
        f"{name}: a Python example failed in {work} (left out: {left_out}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")

"""Every ``personahub`` command in README's shell blocks runs as written, offline, on a copy of
what a clean clone holds (issue 12: "Every README command runs as written on a clean clone").

The commands run in README order in one temporary folder (they build on each other: the quick
start's run fills ``personahub.duckdb``, synthesis jobs read its personas, exports read the
jobs), through bash, with ``personahub`` on PATH running this checkout. Only the commands in
``NEEDS_A_MODEL`` are skipped, each with its reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COPIED = ("scenarios", "examples", "analysis/queries", "personas/data")

# Skipped commands (as the test extracts them) and why: nothing else may be skipped.
NEEDS_A_MODEL = {
    'personahub run scenarios/first_real_run.py --concurrency 2 --llm '
    '"http://127.0.0.1:8812/v1?model=smollm2-135m"':
        "needs the llama-cpp-python server of the block above it (a model over HTTP)",
}


def _logical_lines(block: str) -> list[str]:
    """The block's commands, backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in block.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1].rstrip() + " "
            continue
        lines.append((pending + raw.strip()).strip())
        pending = ""
    return [line for line in lines if line]


def _statements(text: str) -> list[str]:
    """Shell statements of the README's ``bash`` blocks that run ``personahub`` (the part of an
    ``A && B`` line from ``personahub`` on; ``X=$(personahub ...)`` assignments included)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        # a quoted string spanning lines (SQL in $(...)) is one statement
        joined = re.sub(r"\n\s+(?=[^\n]*\"\s*\|)", " ", block)
        for line in _logical_lines(joined):
            for part in line.split(" && "):
                part = part.strip()
                if part.startswith("personahub ") or re.match(r"^\w+=\$\(personahub ", part):
                    found.append(part)
    return found


def readme_commands() -> list[str]:
    """The statements, runs of spaces squeezed outside comments (bash ignores them anyway)."""
    return [" ".join(c.split()) if "#" not in c else c for c in _statements(README.read_text())]


def needs_something_outside(command: str) -> bool:
    """A command naming a model other than the offline engine, or a cluster to join."""
    llm = re.search(r"--llm[ =](\S+)", command)
    return bool(llm and llm.group(1).strip("'\"") != "offline") or "--ray-address" in command


def test_the_skip_list_names_exactly_the_readme_commands_that_need_a_model() -> None:
    commands = readme_commands()
    assert len(commands) >= 12
    for command in NEEDS_A_MODEL:
        assert command in commands, command
    assert {c for c in commands if needs_something_outside(c)} == set(NEEDS_A_MODEL)


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path: Path) -> None:
    work = tmp_path / "clone"
    for folder in COPIED:
        shutil.copytree(ROOT / folder, work / folder)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "personahub"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m personahub "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAHUB_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OPENAI_API_KEY="")
    script = ["set -e"]
    ran = []
    for command in readme_commands():
        if command in NEEDS_A_MODEL:
            continue
        if "--embedder local" in command and not _has_local_embedder():
            continue  # the [embed] extra (a local model, no network) is not installed
        if _needs_a_missing_extra(command):
            continue  # the [hf] or [ray] extra is not installed
        script.append(f"echo '>>> {command.replace(chr(39), '')}' >&2\n{command}")
        ran.append(command)
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, text=True,
                          capture_output=True, timeout=900)
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{done.stdout[-2000:]}"
    assert (work / "math.jsonl").stat().st_size > 0 and (work / "report").is_dir()
    skipped_extras = sum(1 for c in readme_commands() if c not in NEEDS_A_MODEL and (
                         ("--embedder local" in c and not _has_local_embedder())
                         or _needs_a_missing_extra(c)))
    assert len(ran) == len(readme_commands()) - len(NEEDS_A_MODEL) - skipped_extras


def _needs_a_missing_extra(command: str) -> bool:
    """A README command of an optional extra ([hf]'s datasets, [ray]) that is not installed."""
    return (("--format hf" in command and not _has_module("datasets"))
            or ("--executor ray" in command and not _has_module("ray")))


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _has_local_embedder() -> bool:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True

"""Every ``personahub`` command in README's shell blocks runs as written, offline, on a copy of
what a clean clone holds ("Every README command runs as written on a clean clone").

The commands run in README order in one temporary folder (they build on each other: the quick
start's run fills ``personahub.duckdb``, synthesis jobs read its personas, exports read the
jobs), through bash, with ``personahub`` on PATH running this checkout. Only the commands in
``NEEDS_A_MODEL`` are skipped, each with its reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.doc_commands import ROOT, clean_clone, missing_here, needs_something_outside, page_commands

README = ROOT / "README.md"

# Skipped commands (as the test extracts them) and why: nothing else may be skipped.
NEEDS_A_MODEL = {
    'personahub run scenarios/first_real_run.py --concurrency 2 --llm '
    '"http://127.0.0.1:8812/v1?model=smollm2-135m"':
        "needs the xllamacpp server of the block above it (a model over HTTP)",
}


def readme_commands() -> list[str]:
    """README's statements, runs of spaces squeezed outside comments (bash ignores them anyway)."""
    return page_commands(README)


def test_the_skip_list_names_exactly_the_readme_commands_that_need_a_model() -> None:
    commands = readme_commands()
    assert len(commands) >= 12
    for command in NEEDS_A_MODEL:
        assert command in commands, command
    assert needs_something_outside(commands) == set(NEEDS_A_MODEL)


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path: Path) -> None:
    work, env = clean_clone(tmp_path)
    script = ["set -e"]
    ran = []
    for command in readme_commands():
        if command in NEEDS_A_MODEL:
            continue
        if missing_here(command):
            continue  # the [embed], [hf] or [ray] extra is not installed
        script.append(f"echo '>>> {command.replace(chr(39), '')}' >&2\n{command}")
        ran.append(command)
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, text=True,
                          capture_output=True, timeout=900)
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{done.stdout[-2000:]}"
    assert (work / "math.jsonl").stat().st_size > 0 and (work / "report").is_dir()
    skipped_extras = sum(1 for c in readme_commands() if c not in NEEDS_A_MODEL and missing_here(c))
    assert len(ran) == len(readme_commands()) - len(NEEDS_A_MODEL) - skipped_extras

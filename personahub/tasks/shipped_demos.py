"""Demonstrations shipped with the package, one JSONL file per synthesis task.

Few-shot prompting uses these unless given ``--examples FILE``. A job records them as
``builtin:<task>``, so a resume or cache replay reads the same ones. Each line holds a persona,
the text the prompt shows, and the structured content (tests validate it against the task).
"""

from __future__ import annotations

from importlib import resources

from personahub.core.errors import PersonahubError

BUILTIN_PREFIX = "builtin:"


def builtin_name(task: str) -> str:
    """How a job's configuration names a task's shipped demonstrations."""
    return f"{BUILTIN_PREFIX}{task}"


def is_builtin(examples: str) -> bool:
    """Whether an ``--examples`` value names shipped demonstrations rather than a file."""
    return examples.startswith(BUILTIN_PREFIX)


def shipped_tasks() -> tuple[str, ...]:
    """Return the tasks that have shipped demonstrations, sorted."""
    folder = resources.files("personahub.tasks").joinpath("demos")
    return tuple(sorted(entry.name.removesuffix(".jsonl") for entry in folder.iterdir()
                        if entry.name.endswith(".jsonl")))


def builtin_text(examples: str) -> str:
    """Return the JSONL text of a task's shipped demonstrations; an error names the tasks that have some."""
    task = examples.removeprefix(BUILTIN_PREFIX)
    entry = resources.files("personahub.tasks").joinpath("demos", f"{task}.jsonl")
    if not task or "/" in task or not entry.is_file():
        raise PersonahubError(f"--examples {examples}: no shipped demonstrations for {task!r}; "
                              f"shipped: {', '.join(shipped_tasks())}")
    return entry.read_text(encoding="utf-8")

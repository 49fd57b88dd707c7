"""The task registry: every output kind, looked up by its one name.

Simulation, synthesis and export all ask here, so a kind registered once is usable everywhere;
the offline engine reads the kinds' writers for their own field names here (offline_writer, which
the runtime hands it).
"""

from __future__ import annotations

from personahub.core.errors import UsageError
from personahub.models.field_writers import Writer, check_writer
from personahub.tasks.base import Task


class UnknownTaskError(UsageError, KeyError):
    """No task of that name: a usage error, as the user gave it, and a KeyError for callers."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_TASKS: dict[str, Task] = {}  # by task name, in registration order
_EMISSIONS: dict[str, Task] = {}  # the tasks agents emit in runs, by name
_WRITERS: dict[str, Writer] = {}  # offline writers kinds added, by lower-case field name
_WRITERS_ADDED: dict[str, list[str]] = {}  # the field names each task added
_addressed: frozenset[str] = frozenset()  # kinds said to a neighbour (asked per agent and step)


def register(task: Task) -> Task:
    """Add a task under a new name; returns it."""
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    added = [name for name, writer in task.offline_writers.items()
             if check_writer(name, writer, offline_writer)]
    _WRITERS.update({name.lower(): task.offline_writers[name] for name in added})
    _TASKS[task.name] = task
    _WRITERS_ADDED[task.name] = added
    if task.emission is not None:
        _EMISSIONS[task.name] = task
    _update_addressed()
    return task


def unregister(name: str) -> None:
    """Remove a task and the offline writers it added (tests register toy kinds and clean up)."""
    _TASKS.pop(name)
    _EMISSIONS.pop(name, None)
    _update_addressed()
    for field_name in _WRITERS_ADDED.pop(name, []):
        _WRITERS.pop(field_name.lower(), None)


def offline_writer(field_name: str) -> Writer | None:
    """Return the writer a registered kind declared for a field name, or None."""
    return _WRITERS.get(field_name.lower())


def get(name: str) -> Task:
    """Return the task called ``name``."""
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known: {', '.join(_TASKS)}") from None


def emission_task(kind: str) -> Task:
    """Return the task agents emit as ``kind`` in scenario runs."""
    try:
        return _EMISSIONS[kind]
    except KeyError:
        raise UnknownTaskError(f"unknown emission kind {kind!r}; known: "
                               f"{', '.join(_EMISSIONS)}") from None


def synthesis_task(name: str) -> Task:
    """Return the task a synthesis job of that name makes."""
    task = _TASKS.get(name)
    if task is None or task.synthesis is None:
        raise UnknownTaskError(f"task {name!r}: choose one of {', '.join(synthesis_names())}")
    return task


def stored_task(kind: str, *, emission: bool) -> Task | None:
    """Return the task of a stored item (an emission's kind or a synthesis item's task), if known."""
    return (_EMISSIONS if emission else _TASKS).get(kind)


def tasks() -> tuple[Task, ...]:
    """Every registered task, in registration order."""
    return tuple(_TASKS.values())


def emission_kinds() -> tuple[str, ...]:
    """Emission kinds, in registration order."""
    return tuple(_EMISSIONS)


def addressed_kinds() -> frozenset[str]:
    """Emission kinds said to a graph neighbour."""
    return _addressed


def _update_addressed() -> None:
    global _addressed
    _addressed = frozenset(k for k, t in _EMISSIONS.items() if t.emission and t.emission.addressed)


def synthesis_names() -> tuple[str, ...]:
    """Synthesis task names, in registration order."""
    return tuple(name for name, task in _TASKS.items() if task.synthesis is not None)

"""Look elicitation methods up by name: `--elicit`'s parsing, its check and its help read this table.

A spec is NAME or NAME:ARG. A name holding a colon is looked up whole first
("distribution:panel"), then by its head with the rest as ARG ("few-shot:2"). Registration order
is the order the usage line and the help list the methods in.
"""

from __future__ import annotations

from collections.abc import Iterable

from personahub.core.errors import UsageError
from personahub.pipelines.elicit.base import ElicitMethod

__all__ = ["check_elicit", "described", "find", "job_order", "methods", "parse", "parse_all",
           "register", "stated_row", "unregister", "usage"]

_METHODS: dict[str, type[ElicitMethod]] = {}  # by NAME, in registration order


def register(method: type[ElicitMethod]) -> type[ElicitMethod]:
    """Add a method class under its NAME; returns it.

    Raises:
        ValueError: the name is taken.
    """
    if method.NAME in _METHODS:
        raise ValueError(f"elicitation method {method.NAME!r} is already registered")
    _METHODS[method.NAME] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (tests register toy methods and clean up)."""
    _METHODS.pop(name)


def methods() -> tuple[type[ElicitMethod], ...]:
    """Return every registered method class, in registration order."""
    return tuple(_METHODS.values())


def usage() -> str:
    """Return the usage line naming every method ("use sample, ... or few-shot:K (K ...)")."""
    syntaxes = [m.SYNTAX for m in _METHODS.values()]
    notes = "; ".join(m.ARG_NOTE for m in _METHODS.values() if m.ARG_NOTE)
    listed = ", ".join(syntaxes[:-1]) + f" or {syntaxes[-1]}" if len(syntaxes) > 1 else syntaxes[0]
    return f"use {listed}" + (f" ({notes})" if notes else "")


def described() -> str:
    """Return every method with its help, for --elicit's help ("sample (...), distribution (...)")."""
    return ", ".join(f"{m.SYNTAX} ({m.HELP})" for m in _METHODS.values())


def find(spec: str) -> ElicitMethod | None:
    """Return the method a spec names, or None when it names none (a steering, "archetypes:K")."""
    text = str(spec).strip()
    method, arg = _METHODS.get(text), None
    if method is None:
        head, colon, tail = text.partition(":")
        method, arg = _METHODS.get(head), (tail if colon else None)
    if method is None:
        return None
    try:
        return method.parse(arg)
    except ValueError:
        return None


def parse(spec: str) -> ElicitMethod:
    """Return the method a spec names.

    Raises:
        UsageError: no method of that name, or a bad ARG (one line naming --elicit and the usage).
    """
    method = find(spec)
    if method is None:
        raise UsageError(f"--elicit {str(spec).strip()!r}: {usage()}")
    return method


def parse_all(specs: Iterable[str]) -> tuple[ElicitMethod, ...]:
    """Return the methods of several specs, in the order given (checked as check_elicit does)."""
    return tuple(parse(spec) for spec in check_elicit(specs))


def job_order(chosen: Iterable[ElicitMethod]) -> tuple[ElicitMethod, ...]:
    """Order a job's methods as it asks and scores them: those asking each panel persona first
    (the baselines scored with the first row need a panel's size), then the others as given.
    """
    return tuple(sorted(chosen, key=lambda m: not m.sampled))


def check_elicit(specs: Iterable[str]) -> tuple[str, ...]:
    """Return the --elicit methods' labels in the order given.

    Raises:
        UsageError: none is given, or one is unknown or given twice.
    """
    chosen = tuple(parse(spec).label for spec in specs)
    if not chosen:
        raise UsageError(f"--elicit: give one or more methods: {usage()}")
    if len(set(chosen)) != len(chosen):
        raise UsageError("--elicit: a method is given twice")
    return chosen


def stated_row(label: str) -> bool:
    """Tell whether a stored row is a registered method's that answers once per question x group
    (no panel to size or redraw).
    """
    method = find(label)
    return method is not None and not method.from_panel

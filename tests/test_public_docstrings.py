"""The public API a newcomer reads: every function and class that ``personahub`` exports from the
API modules has a docstring in Mesa's manner, ``Args:`` naming each parameter and ``Returns:``
when it returns a value."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable

import pytest

import personahub

# the modules of the public API whose exports this test holds to Args/Returns
API_MODULES = {"personahub.api", "personahub.any_job", "personahub.interviews",
               "personahub.experiments", "personahub.results", "personahub.personas.store"}
SECTION = re.compile(r"^\s*(Args|Returns|Raises|Yields|Examples?|Notes?):\s*$", re.M)


def _public(kind: Callable[[object], bool]) -> list[str]:
    return sorted(name for name, module in personahub._PUBLIC.items()
                  if module in API_MODULES and kind(getattr(importlib.import_module(module), name)))


def _section(doc: str, name: str) -> str | None:
    """The text of section ``name`` (up to the next section), None when it is absent."""
    found = re.search(rf"^\s*{name}:\s*$", doc, re.M)
    if found is None:
        return None
    rest = doc[found.end():]
    after = SECTION.search(rest)
    return rest[:after.start()] if after else rest


def _problems(function: Callable[..., object], skip_first: bool = False) -> list[str]:
    """What the function's docstring lacks: a summary, Args naming each parameter, Returns."""
    doc = inspect.getdoc(function) or ""
    if not doc.strip():
        return ["no docstring"]
    problems = []
    if not doc.splitlines()[0].strip():
        problems.append("no summary line")
    params = list(inspect.signature(function).parameters)[1 if skip_first else 0:]
    args = _section(doc, "Args")
    if params and args is None:
        problems.append("no Args:")
    elif params and args is not None:
        words = set(re.findall(r"\w+", args))
        problems += [f"Args: does not name {p}" for p in params if p not in words]
    returns = inspect.signature(function).return_annotation
    if returns not in (None, "None", inspect.Signature.empty) and _section(doc, "Returns") is None:
        problems.append("no Returns:")
    return problems


FUNCTIONS = _public(inspect.isfunction)
CLASSES = _public(inspect.isclass)


def test_the_public_api_is_found() -> None:
    # the lists below are not empty by accident (a renamed module would empty them)
    assert {"run_scenario", "synthesize", "resume", "interview", "experiment"} <= set(FUNCTIONS)
    assert {"Run", "Job", "Judged", "Calibration", "FewerItems"} <= set(CLASSES)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_public_function_has_args_and_returns(name: str) -> None:
    function = getattr(personahub, name)
    assert _problems(function) == [], f"personahub.{name}"


@pytest.mark.parametrize("name", CLASSES)
def test_public_class_and_its_methods_have_docstrings(name: str) -> None:
    cls = getattr(personahub, name)
    assert (inspect.getdoc(cls) or "").strip(), f"personahub.{name} has no docstring"
    problems = {}
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, property):
            if not (value.__doc__ or "").strip():
                problems[attr] = ["no docstring"]
        elif inspect.isfunction(value) and (found := _problems(value, skip_first=True)):
            problems[attr] = found
    assert problems == {}, f"personahub.{name}"


def test_the_check_catches_a_missing_section() -> None:
    def bare(x: int) -> int:
        """Doubles x."""
        return 2 * x

    def documented(x: int) -> int:
        """Doubles x.

        Args:
            x: a number.

        Returns:
            Twice x.
        """
        return 2 * x

    assert _problems(bare) == ["no Args:", "no Returns:"]
    assert _problems(documented) == []

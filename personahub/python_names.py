"""Errors raised to Python name Python arguments and calls, not the command's flags and lines.

The checks shared with the CLI word their errors for a command (``--out x: already exists; add
--force``). speaks_python rewrites each flag in such a message as the caller's keyword
(``--allow-fewer`` -> ``allow_fewer=True``) and each command it names that Python has a call
for as that call (``resume with personahub run --resume ID --db D`` -> ``resume with
personahub.resume('ID', db='D')``); any other quoted command line is left as it is.
"""

from __future__ import annotations

import functools
import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from personahub.core.engine_options import RENAMED_FIELDS
from personahub.core.errors import PersonahubError

F = TypeVar("F", bound=Callable[..., Any])

#: the database an API function opens when given no db (the store's default, without DuckDB)
DEFAULT_DB = "personahub.duckdb"


#: options that hold a list of conditions, given in Python as one string or a list of them
CONDITION_LISTS = ("carve",)


def as_conditions(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the options with each condition list as a tuple: ``carve="age>30"`` is one condition,
    not five, and a list is taken as it is."""
    given = dict(options)
    for name in CONDITION_LISTS:
        value = given.get(name)
        if isinstance(value, str):
            given[name] = (value,)
        elif isinstance(value, list):
            given[name] = tuple(value)
    return given


def refuse_unknown(what: str, given: Mapping[str, object], known: set[str]) -> None:
    """Refuse keyword options a job function does not take, naming those it does."""
    unknown = sorted(set(given) - known)
    if unknown:
        raise PersonahubError(f"{what}: unknown option(s) {', '.join(unknown)}; "
                              f"choose from {', '.join(sorted(known))}")

#: flags that take no value: said as keyword=True (and --no-X as X=False)
SWITCHES = frozenset({
    "force", "overwrite", "include-ungated", "include-duplicates", "allow-fewer", "fresh",
    "skip-bad", "solve", "equal", "wide", "with-attributes", "drop-duplicates", "with-assistant",
    "structured", "offer-refusal", "provider-batch"})
#: flags whose keyword has another name everywhere in the API
RENAMES: Mapping[str, str] = {"format": "fmt"}

_FLAG = re.compile(r"--(?P<name>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)"
                   r"(?P<value> (?:'[^']*'|\"[^\"]*\"|[^\s:;,()]+)(?=[:;,)]|$)"
                   r"| -?[0-9][0-9.]*\b| [A-Z][A-Z_]+\b| [^\s:;,()]*/[^\s:;,()]*)?")
_COMMAND = re.compile(r"personahub [^;()]*")
_VALUE = r"[^\s;,()]+"
#: a resume hint: ``personahub resume ID`` or ``personahub KIND... --resume ID``, maybe ``--db DB``
_RESUME = re.compile(rf"personahub (?:resume (?P<own>{_VALUE})|(?:[a-z][a-z-]* )+?--resume "
                     rf"(?P<flag>{_VALUE}))(?: --db (?P<db>{_VALUE}))?")
#: other commands a message names, and the call that does the same from Python
CALLS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:personahub )?personas sample-population"), "personahub.write_population(...)"),
    (re.compile(r"the same personahub experiment command"), "the same personahub.experiment(...) call"),
    (re.compile(r"personahub jobs lists them"), "personahub.jobs(db=...) lists them"),
)


def _resume_call(match: re.Match[str]) -> str:
    job_id, db = match["own"] or match["flag"], match["db"]
    return f"personahub.resume({job_id!r}" + (f", db={db!r})" if db else ")")


def python_calls(message: str) -> str:
    """Return the message with each command it names that has a Python call said as that call: a
    resume hint as ``personahub.resume('ID', db='DB')``, ``personas sample-population`` as
    ``personahub.write_population(...)``."""
    message = _RESUME.sub(_resume_call, message)
    for command, call in CALLS:
        message = command.sub(call, message)
    return message


def python_message(message: str, renames: Mapping[str, str] | None = None) -> str:
    """Return the message in Python's words: each command it names that has a Python call said as
    that call, and each flag outside a quoted command line said as its keyword."""
    names = {**RENAMES, **(renames or {})}
    message = python_calls(message)

    def keyword(match: re.Match[str]) -> str:
        flag, value = match["name"], match["value"]
        negated = flag.startswith("no-") and flag[3:] in SWITCHES
        base = flag[3:] if negated else flag
        name = names.get(base, base.replace("-", "_"))
        if base in SWITCHES or negated:
            return f"{name}={not negated}" + (value or "")
        return f"{name}={value.lstrip()}" if value else name

    parts, last = [], 0
    for command in _COMMAND.finditer(message):
        parts += [_FLAG.sub(keyword, message[last:command.start()]), command.group()]
        last = command.end()
    text = "".join(parts) + _FLAG.sub(keyword, message[last:])
    # a message already naming both forms says it once
    return re.sub(r"(\w+=True), or \1 from Python,?", r"\1", text)


def _reword(exc: BaseException, renames: Mapping[str, str] | None) -> None:
    """Say the error's message in Python's words (a bare interrupt has none)."""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (python_message(exc.args[0], renames), *exc.args[1:])


def former_keywords(what: str, kwargs: dict[str, object]) -> dict[str, object]:
    """Return keyword arguments with the engine options' former names (``batch``) replaced by
    today's (``provider_batch``), each with a DeprecationWarning.

    Raises:
        PersonahubError: a keyword given under both names.
    """
    for old, new in RENAMED_FIELDS.items():
        if old in kwargs:
            if new in kwargs:
                raise PersonahubError(f"{what}: {old} is the old name of {new}; give {new} only")
            warnings.warn(f"{what}: the keyword {old} is deprecated; it is called {new} now",
                          DeprecationWarning, stacklevel=3)
            kwargs[new] = kwargs.pop(old)
    return kwargs


def speaks_python(renames: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Decorate an API function so its errors name its keywords and its engine options' former
    keywords still work (former_keywords); renames maps a flag to a keyword where they differ."""
    def wrap(function: F) -> F:
        what = getattr(function, "__name__", "personahub")
        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def run_async(*args: object, **kwargs: object) -> object:
                try:
                    former_keywords(what, kwargs)
                    return await function(*args, **kwargs)
                except (PersonahubError, KeyboardInterrupt) as exc:  # a job's Stopped too
                    _reword(exc, renames)
                    raise
            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: object, **kwargs: object) -> object:
            try:
                former_keywords(what, kwargs)
                return function(*args, **kwargs)
            except (PersonahubError, KeyboardInterrupt) as exc:  # a job's Stopped too
                _reword(exc, renames)
                raise
        return run  # type: ignore[return-value]
    return wrap


@overload
def as_id(value: None) -> None: ...
@overload
def as_id(value: str | int) -> str: ...
def as_id(value: str | int | None) -> str | None:
    """Return an id given as a number, as the text ids are stored as; None and text pass through."""
    return str(value) if isinstance(value, int) else value

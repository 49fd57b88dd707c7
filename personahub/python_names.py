"""Errors raised to Python name Python arguments, not the command's flags.

The checks the CLI and the API share (``core.outputs.check_output``, the job configs, the
kernel) word their errors for a command: ``--out x: already exists; add --force``. A caller of
``job.export(path)`` has no ``--out`` and no ``--force``; it has ``path`` and
``overwrite=True``. ``speaks_python`` wraps a public API function (sync or async) so that a
``PersonahubError`` leaving it names the caller's keywords: each ``--flag`` becomes its keyword
(``--allow-fewer`` -> ``allow_fewer=True``, ``--db X`` -> ``db=X``, ``--no-cache`` ->
``cache=False``), with the function's own renames (``--out`` -> ``path``). A command line quoted
in a message (``personahub synthesize --resume ID --db DB``) is left as it is: it is one to type.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from personahub.core.errors import PersonahubError

F = TypeVar("F", bound=Callable[..., Any])

#: the database every API function opens when given no ``db`` (``core.store.DEFAULT_DB``,
#: without importing DuckDB)
DEFAULT_DB = "personahub.duckdb"


def refuse_unknown(what: str, given: Mapping[str, Any], known: set[str]) -> None:
    """Refuse keyword options a job function does not take, naming those it does."""
    unknown = sorted(set(given) - known)
    if unknown:
        raise PersonahubError(f"{what}: unknown option(s) {', '.join(unknown)}; "
                              f"choose from {', '.join(sorted(known))}")

#: flags that take no value: said as ``keyword=True`` (``--no-X``: ``X=False``)
SWITCHES = frozenset({
    "force", "overwrite", "include-ungated", "include-duplicates", "allow-fewer", "fresh",
    "skip-bad", "solve", "equal", "wide", "with-attributes", "drop-duplicates", "with-assistant",
    "structured", "offer-refusal", "batch"})
#: flags whose keyword has another name everywhere in the API
RENAMES: Mapping[str, str] = {"format": "fmt"}

_FLAG = re.compile(r"--(?P<name>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)"
                   r"(?P<value> (?:'[^']*'|\"[^\"]*\"|[^\s:;,()]+)(?=[:;,)]|$)"
                   r"| -?[0-9][0-9.]*\b| [A-Z][A-Z_]+\b| [^\s:;,()]*/[^\s:;,()]*)?")
_COMMAND = re.compile(r"personahub [^;()]*")


def python_message(message: str, renames: Mapping[str, str] | None = None) -> str:
    """``message`` with each ``--flag`` outside a quoted command line said as its keyword."""
    names = {**RENAMES, **(renames or {})}

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
    # a line written for both ("--x, or x=True from Python") says it once
    return re.sub(r"(\w+=True), or \1 from Python,?", r"\1", text)


def _reword(exc: PersonahubError, renames: Mapping[str, str] | None) -> None:
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (python_message(exc.args[0], renames), *exc.args[1:])


def speaks_python(renames: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Decorate an API function (or an ``async`` one) so the ``PersonahubError`` it raises
    names its keywords (``renames``: flag -> keyword where they differ, ``{"out": "path"}``)."""
    def wrap(function: F) -> F:
        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await function(*args, **kwargs)
                except PersonahubError as exc:
                    _reword(exc, renames)
                    raise
            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except PersonahubError as exc:
                _reword(exc, renames)
                raise
        return run  # type: ignore[return-value]
    return wrap


@overload
def as_id(value: None) -> None: ...
@overload
def as_id(value: str | int) -> str: ...
def as_id(value: str | int | None) -> str | None:
    """An id given as a number (``agent=1``, ``resume=12``) as the text every id is stored as;
    None and text pass through."""
    return str(value) if isinstance(value, int) else value

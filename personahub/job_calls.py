"""Job functions of the Python API: one written body gives the blocking call and its await twin.

A job function runs its body here, or in a worker thread when the caller's thread runs an event
loop (Jupyter), and its errors name the function's keywords rather than the command's flags.
Its await twin runs the same body in a worker thread; its signature and docstring follow from
the job function's, so a kind's API is one function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Mapping
from typing import ParamSpec, TypeVar, overload

from personahub.blocking_call import call_blocking, call_in_thread
from personahub.python_names import speaks_python

P = ParamSpec("P")
R = TypeVar("R")

_BODY = "_job_body"  # the attribute a job function keeps its body under, for its twin
_RENAMES = "_job_renames"  # and the flags its errors say under another keyword


@overload
def job_function(body: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def job_function(*, renames: Mapping[str, str]) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def job_function(body: Callable[P, R] | None = None, /, *,
                 renames: Mapping[str, str] | None = None) -> object:
    """Return the blocking job function over body: its name, signature and docstring are body's.

    Used bare (``@job_function``) or with the flags its errors name under another keyword
    (``@job_function(renames={"id": "experiment_id"})``).

    Args:
        body: the function that runs the job and returns its handle.
        renames: flag -> keyword, where the job's messages name a flag the function calls
            otherwise.

    Returns:
        The function to export (or, given only renames, the decorator that makes it).
    """
    if body is None:
        return functools.partial(_blocking, renames=renames)
    return _blocking(body, renames=renames)


def _blocking(body: Callable[P, R], renames: Mapping[str, str] | None) -> Callable[P, R]:
    @functools.wraps(body)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return call_blocking(functools.partial(body, *args, **kwargs))

    setattr(call, _BODY, body)
    setattr(call, _RENAMES, renames)
    return speaks_python(renames)(call)


def async_twin(function: Callable[P, R]) -> Callable[P, Coroutine[object, object, R]]:
    """Return the await twin of a job function: the same body, run in a worker thread.

    Args:
        function: a function made by job_function.

    Returns:
        A coroutine function named ``<name>_async`` with function's signature.
    """
    body: Callable[P, R] = getattr(function, _BODY)
    renames: Mapping[str, str] | None = getattr(function, _RENAMES, None)

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return await call_in_thread(functools.partial(body, *args, **kwargs))

    functools.update_wrapper(call, function)
    name = f"{function.__name__}_async"
    call.__name__, call.__qualname__ = name, name
    call.__doc__ = _twin_doc(function)
    delattr(call, _BODY)  # copied over by update_wrapper; a twin has no twin
    return speaks_python(renames)(call)


def _twin_doc(function: Callable[..., object]) -> str:
    """Return the twin's docstring: what it is, and its parameters as the job function's."""
    names = ", ".join(("**" if p.kind is p.VAR_KEYWORD else "") + p.name
                      for p in inspect.signature(function).parameters.values())
    return (f"{function.__name__} for await: the job runs in a worker thread.\n\n"
            f"Args:\n    {names}: as for {function.__name__}.\n\n"
            f"Returns:\n    What {function.__name__} returns.\n")

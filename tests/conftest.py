"""Shared fixtures: persona files, scenario files and a loopback OpenAI-compatible server."""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer.testing

from personahub.models.fake_server.server import RunningServer, ServerOptions, start_server

# A bare ``pytest``: the fast subset on two workers; ``--all``; the module check (tests/fast_subset.py)
from tests.fast_subset import (  # noqa: F401
    pytest_addoption,
    pytest_cmdline_main,
    pytest_configure,
    pytest_report_header,
)
from tests.optional import need_ray

# The CLI driven in-process builds its click command tree once, not at every invoke: typer's
# CliRunner rebuilds it from the app's functions each time (about 50 ms, type hints evaluated
# for every command), and the suite invokes the CLI thousands of times. A process running
# ``personahub`` builds it once too.
typer.testing._get_command = functools.lru_cache(maxsize=None)(typer.testing._get_command)

# Without a terminal a job prints a progress line every 5 s; on a loaded machine a bad input's
# command can outlive that before its one-line error. The tests check the error and the line a job
# prints where it ends, not the timed ones (a test that wants them sets the variable itself).
os.environ.setdefault("PERSONAHUB_PROGRESS_EVERY", "3600")

@pytest.fixture(autouse=True)
def _ctrl_c_as_at_a_terminal() -> Iterator[None]:
    """Give each test Ctrl-C's default handler, whatever started pytest.

    A background job of a shell script starts with SIGINT ignored (bash does so without job
    control), and so do the xdist workers it spawns: the tests of Ctrl-C then saw no interrupt
    and failed or passed by which test had run before them in that worker.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


ROLES = ["nurse", "baker", "ferry pilot", "librarian", "welder", "beekeeper", "coder", "farmer",
         "pharmacist", "teacher", "plumber", "florist", "barista", "mechanic", "translator"]
PLACES = ["Lisbon", "Accra", "Osaka", "Leeds", "Quito", "Tartu", "Perth", "Cork", "Pune", "Oslo"]
HOBBIES = ["chess", "birdwatching", "sourdough", "cycling", "poetry", "robotics", "gardening",
           "jazz", "hiking", "pottery", "astronomy"]


def persona_texts(n: int) -> list[str]:
    """``n`` distinct, varied persona descriptions made up by the test suite."""
    return [
        f"A {ROLES[i % len(ROLES)]} from {PLACES[(i * 3) % len(PLACES)]} aged {20 + i % 50} "
        f"who loves {HOBBIES[(i * 7) % len(HOBBIES)]} and {HOBBIES[(i * 5 + 1) % len(HOBBIES)]}."
        for i in range(n)
    ]


@pytest.fixture
def persona_file(tmp_path: Path) -> Callable[[int], Path]:
    """Write a Persona Hub style ``{"persona": ...}`` JSONL file with ``n`` personas."""

    def write(n: int = 30) -> Path:
        path = tmp_path / f"personas_{n}.jsonl"
        path.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(n)))
        return path

    return write


@pytest.fixture
def scenario_file(tmp_path: Path, persona_file: Callable[[int], Path]) -> Callable[..., Path]:
    """Write a small scenario script; keyword arguments become Scenario fields."""

    def write(n_personas: int = 30, body: str | None = None, **fields: object) -> Path:
        people = persona_file(n_personas)
        defaults = {"name": "'test_town'", "personas": f"PersonaSource(path={str(people)!r})",
                    "graph": "GraphGrowth(hops=1, fanout=1, acquaintances=4)", "steps": "3",
                    "world": "'A small river town with a ferry and a market.'", "seed": "11"}
        defaults.update({k: repr(v) if not isinstance(v, str) else v for k, v in fields.items()})
        args = ",\n    ".join(f"{k}={v}" for k, v in defaults.items())
        text = body or (
            "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario\n\n"
            f"SCENARIO = Scenario(\n    {args},\n)\n"
        )
        path = tmp_path / "scenario_test.py"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def server() -> Iterator[Callable[..., RunningServer]]:
    """Start loopback servers on demand; all are stopped after the test."""
    started: list[RunningServer] = []

    def start(**options: object) -> RunningServer:
        handle = start_server(ServerOptions(**options))  # type: ignore[arg-type]
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()



# A test needs an optional extra when it, or a fixture it uses, calls one of tests/optional.py's
# need_* functions; such tests get the ``extra`` mark, so that CI's second step (with the extras
# installed and PERSONAHUB_REQUIRE_* set) runs exactly them: ``pytest -m "extra or real_model"``.
_NEEDS_EXTRA = re.compile(r"\bneed_(?:ray|hf|local_model|browser)\(")


@functools.cache
def _file_mentions_need(filename: str) -> bool:
    """Whether a source file calls a need_* helper anywhere (most do not: their functions need
    no closer look, and ``inspect.getsource`` costs about a millisecond a function)."""
    try:
        return bool(_NEEDS_EXTRA.search(Path(filename).read_text(encoding="utf-8")))
    except OSError:
        return True  # unreadable here: let inspect decide


@functools.cache
def _calls_need(func: Callable[..., object]) -> bool:
    code = getattr(func, "__code__", None)
    if code is not None and not _file_mentions_need(code.co_filename):
        return False
    try:
        return bool(_NEEDS_EXTRA.search(inspect.getsource(func)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        info = getattr(item, "_fixtureinfo", None)
        fixtures = [d.func for defs in (info.name2fixturedefs.values() if info else ())
                    for d in defs]
        if any(_calls_need(f) for f in ([function] if function else []) + fixtures):
            item.add_marker(pytest.mark.extra)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray (2 CPUs) for a module's tests, shut down after them (the [ray] extra:
    ``need_ray`` marks the tests that use it ``extra``)."""
    need_ray()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()

"""``--help`` reads well and is reviewed when it changes.

Every command's help is compared, exactly, with its golden file under ``tests/cli/help/`` at a
100-column terminal: a change to a docstring, an option or the renderer shows up as a diff to
review. Rewrite the files with ``python tests/cli/test_help.py`` and read the diff. The commands
come from the app object, so a new command needs its golden file (the test says which).

Beside the snapshots: every command follows the app's conventions (``personahub.cli.base``), no
help shows a ``<bool>``/``<str>`` type, RST marks or hard-wrapped source lines, choices show as
``[a|b|c]``, and short flags never clash.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

if __name__ == "__main__":  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from personahub.cli import helpfmt
from personahub.cli.app import app
from personahub.cli.base import SHORT_FLAGS, PersonahubCommand, PersonahubGroup

HELP_DIR = Path(__file__).resolve().parent / "help"
WIDTH = "100"


def commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every shown command and group of the app with its path (the root's is ``()``)."""
    command = command if command is not None else typer.main.get_command(app)
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not getattr(sub, "hidden", False):  # an old name kept as a hidden alias
            yield from commands(sub, (*path, name))


def golden_path(path: tuple[str, ...]) -> Path:
    return HELP_DIR / ("_".join(("personahub", *path)) + ".txt")


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": WIDTH})
    assert result.exit_code == 0, result.output
    return result.stdout


PATHS = [path for path, _ in commands()]


@pytest.fixture(autouse=True)
def _width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", WIDTH)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "personahub")
def test_help_matches_its_golden_file(path: tuple[str, ...]) -> None:
    golden = golden_path(path)
    assert golden.exists(), f"no {golden.name}: run python tests/cli/test_help.py and review it"
    assert help_text(path) == golden.read_text(encoding="utf-8"), \
        f"`personahub {' '.join(path)} --help` changed: python tests/cli/test_help.py, review the diff"


def test_every_golden_file_is_a_command() -> None:
    assert {p.name for p in HELP_DIR.glob("*.txt")} == {golden_path(p).name for p in PATHS}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "personahub")
def test_help_reads_well(path: tuple[str, ...]) -> None:
    text = help_text(path)
    assert "<bool>" not in text and "<str>" not in text and "<int" not in text
    assert "``" not in text and not re.search(r"\S::$", text, re.M)
    assert all(len(line) <= int(WIDTH) or " " not in line.strip() for line in text.splitlines())
    assert "-h, --help" in text and "-q, --quiet" in text and "-v, --verbose" in text
    usage = text.splitlines()[0]
    assert usage.startswith("Usage: personahub") and "[OPTIONS]" in usage


def test_every_command_follows_the_conventions() -> None:
    for path, command in commands():
        kind = PersonahubGroup if hasattr(command, "commands") else PersonahubCommand
        assert isinstance(command, kind), f"`personahub {' '.join(path)}` is a {type(command)}"


def test_short_flags_never_clash_and_mean_one_thing() -> None:
    for path, command in commands():
        names = [o for p in command.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]]
        assert len(names) == len(set(names)), (path, sorted(names))
        for param in command.params:
            for long_name, short in SHORT_FLAGS.items():
                if short in param.opts:
                    assert long_name in param.opts, (path, param.opts)
    _, synthesize = next(c for c in commands() if c[0] == ("synthesize",))
    assert {"-n", "-d", "-o", "-s"} <= {o for p in synthesize.params for o in p.opts}


def test_choices_show_as_a_bracketed_list() -> None:
    run = help_text(("run",))
    assert "--cache [off|record|replay]" in run
    assert "--executor [local|ray]" in run
    assert "--structured [auto|json_schema|json_object|tools|prompt]" in run
    assert "--view " in run and "--view <" not in run  # a flag: no value label
    assert "-d, --db PATH" in run and "--steps N" in run


def test_hard_wrapped_docstrings_are_reflowed() -> None:
    # report's docstring breaks its first sentence after "duplicates,": the help joins it
    assert "failures, duplicates, graph" in re.sub(r"\s+", " ", help_text(()))
    sql = help_text(("sql",))
    assert "``" not in sql and "analysis/views.sql" in sql
    assert "\n      personahub sql \"select task" in sql  # the example block kept as written


# --- the renderer on its own ------------------------------------------------------------------

def test_reflow_joins_paragraph_lines_and_keeps_lists_and_examples() -> None:
    text = """First line of the summary
    goes on here.

    A paragraph hard-wrapped
    in the source, with ``code`` and a literal block::

        personahub run x.py
          --steps 2

    Kinds:
    - one item that is long enough
      to continue on a second line
    - two
    """
    got = helpfmt.reflow(text, 100)
    assert got.split("\n\n")[0] == "First line of the summary goes on here."
    assert "A paragraph hard-wrapped in the source, with code and a literal block:" in got
    assert "    personahub run x.py\n      --steps 2" in got
    assert "Kinds:\n- one item that is long enough to continue on a second line\n- two" in got


def test_plain_removes_rst_marks() -> None:
    assert helpfmt.plain("use ``--db`` here::") == "use --db here:"
    assert helpfmt.plain("see below ::") == "see below"
    assert helpfmt.plain("a\n::\nb") == "a\n\nb"


def test_long_labels_put_their_help_on_the_next_line() -> None:
    rows = [("--short", "help of short"), ("--" + "x" * 40, "help of long")]
    lines = helpfmt.two_columns(rows, 80).splitlines()
    assert lines[0] == "  --short  help of short"
    assert lines[1] == "  --" + "x" * 40 and lines[2] == "           help of long"


def test_bounds_leave_out_type_sized_limits() -> None:
    class Param:
        min, max = 0, 2**63 - 1

    assert helpfmt.bounds(Param()) == "x>=0"
    Param.max = 2
    assert helpfmt.bounds(Param()) == "0<=x<=2"


if __name__ == "__main__":  # rewrite the golden files (review the diff before committing)
    os.environ["COLUMNS"] = WIDTH
    HELP_DIR.mkdir(exist_ok=True)
    for stale in HELP_DIR.glob("*.txt"):
        stale.unlink()
    for command_path in PATHS:
        golden_path(command_path).write_text(help_text(command_path), encoding="utf-8")
        print(golden_path(command_path))

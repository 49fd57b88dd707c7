"""A usage error exits 2 with one ``error:`` line, for every command.

The table is built from the app object, so a new command or option is covered with no edit
here: for every command and group, an unknown flag (and, for a group, an unknown command); for
every option that takes a value, the option given without one; for a choice, a value not among
its choices; for a number, a word and each bound overstepped; for a command with arguments, no
argument at all (required ones, and those only ``--resume`` may replace). Each case must exit 2,
print one line on stderr starting ``error:`` and naming the command's help, print nothing on
stdout, and leave no file behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from personahub.cli import helpfmt
from personahub.cli.app import app

Case = tuple[str, list[str]]


def commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    command = command if command is not None else typer.main.get_command(app)
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not getattr(sub, "hidden", False):  # an old name: its command is checked under the new
            yield from commands(sub, (*path, name))


def _long(param: Any) -> str:
    return next(o for o in param.opts if o.startswith("--"))


def _number_cases(path: list[str], param: Any) -> Iterator[Case]:
    flag = _long(param)
    yield f"{flag} not a number", [*path, flag, "many"]
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None:
        yield f"{flag} below {low}", [*path, f"{flag}={low - 1}"]
    if high is not None and high < helpfmt.UNBOUNDED:
        yield f"{flag} above {high}", [*path, f"{flag}={high + 1}"]


def cases() -> Iterator[Case]:
    for path_tuple, command in commands():
        path = list(path_tuple)
        name = " ".join(path) or "personahub"
        yield f"{name}: unknown flag", [*path, "--no-such-flag"]
        if hasattr(command, "commands"):
            yield f"{name}: unknown command", [*path, "no-such-command"]
            continue
        if any(p.param_type_name == "argument" for p in command.params):
            yield f"{name}: no argument", path
        for param in command.params:
            if param.param_type_name != "option" or getattr(param, "is_flag", False):
                continue
            flag = _long(param)
            yield f"{name}: {flag} without a value", [*path, flag]
            if helpfmt.choices(param) is not None:
                yield f"{name}: {flag} not a choice", [*path, flag, "no-such-choice"]
            if helpfmt.value_label(param) in ("N", "X", "N|auto"):
                yield from ((f"{name}: {what}", args) for what, args in _number_cases(path, param))
    # checks made by callbacks or the command, not by the declared type
    yield "run: --max-failed-share above 1", ["run", "x.py", "--max-failed-share", "2"]
    yield "sql: --allow-files with --allow-writes", ["sql", "--allow-files", "--allow-writes",
                                                     "out", "select 1"]
    yield "sql: --scalar with --format", ["sql", "--scalar", "--format", "csv", "select 1"]
    yield "sql: --no-header with json", ["sql", "--no-header", "--format", "json", "select 1"]
    yield "-q with -v", ["-q", "sql", "-v", "select 1"]
    yield "synthesize: no task", ["synthesize", "--n", "3"]


CASES = list(cases())


def test_the_table_covers_every_command_and_kind_of_mistake() -> None:
    names = [name for name, _ in CASES]
    every_command = {" ".join(p) or "personahub" for p, _ in commands()}
    assert {n.split(":")[0] for n in names} >= every_command
    for kind in ("unknown flag", "unknown command", "without a value", "not a choice",
                 "not a number", "below", "above", "no argument"):
        assert any(kind in n for n in names), kind
    assert len(CASES) > 300


@pytest.mark.parametrize(("name", "args"), CASES, ids=[name for name, _ in CASES])
def test_a_usage_error_exits_2_with_one_error_line(name: str, args: list[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERSONAHUB_DB", raising=False)
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (name, result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), (name, result.stderr)
    assert result.stdout == "", (name, result.stdout)
    assert not list(tmp_path.iterdir()), (name, list(tmp_path.iterdir()))  # nothing written


def test_the_error_names_the_option_and_where_help_is() -> None:
    result = CliRunner().invoke(app, ["run", "x.py", "--cache", "bogus"])
    line = result.stderr.strip()
    assert result.exit_code == 2
    assert line == "error: --cache 'bogus': use one of off, record, replay (see personahub run --help)"
    steps = CliRunner().invoke(app, ["run", "x.py", "--steps", "0"]).stderr.strip()
    assert steps.startswith("error: Invalid value for '--steps': ") and "Value error" not in steps
    missing = CliRunner().invoke(app, ["personas", "sample", "--db"]).stderr.strip()
    assert missing.endswith("(see personahub personas sample --help)"), missing


def test_declared_choices_are_the_librarys() -> None:
    """Choices are declared as Literal types (so help shows them and click checks them): they
    must stay the lists the code below the CLI accepts."""
    from personahub.analysis.export import EXPORT_FORMATS
    from personahub.cli.interview import FORMATS as INTERVIEW_FORMATS
    from personahub.executors import EXECUTORS
    from personahub.models.cache import CACHE_MODES
    from personahub.models.fake_server.dialects import DIALECTS
    from personahub.models.structured import STRUCTURED_SETTINGS
    from personahub.personas.embedding import ANN_BACKENDS
    from personahub.personas.importers import FORMATS as IMPORT_FORMATS
    from personahub.personas.text_to_persona import SPLITS
    from personahub.tasks.prompting import PROMPTING_MODES

    expected = {
        ("run", "--cache"): CACHE_MODES, ("run", "--structured"): STRUCTURED_SETTINGS,
        ("run", "--executor"): EXECUTORS, ("serve", "--dialect"): DIALECTS,
        ("synthesize", "--prompting"): PROMPTING_MODES,
        ("export", "--format"): (*EXPORT_FORMATS, "hf"),
        ("interview", "--format"): INTERVIEW_FORMATS,
        ("personas dedup", "--ann"): ("auto", *ANN_BACKENDS),
        ("personas import", "--format"): tuple(IMPORT_FORMATS),
        ("personas from-text", "--split"): SPLITS,
    }
    found = {(" ".join(path), _long(param)): helpfmt.choices(param)
             for path, command in commands() for param in command.params
             if param.param_type_name == "option" and helpfmt.choices(param) is not None}
    for key, values in expected.items():
        assert found[key] == tuple(values), key

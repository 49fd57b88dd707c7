"""The output options (``--preview``, ``--json``) and ``--carve`` are declared once:
``cli/options.py``. A job command takes ``--json`` (and ``--preview``) from ``@output_options``,
as one ``shown: Shown`` value, never by listing them itself; synthesize and calibrate take the
one ``CarveOption``. The commands that are no job kind's are listed by their own modules
(``COMMANDS``), and ``cli/app.py`` gathers them.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import pytest
from typer.models import OptionInfo
from typer.testing import CliRunner

from personahub.analysis.preview import DEFAULT_PREVIEW
from personahub.cli import app as cli_app
from personahub.cli import common
from personahub.cli import options as cli_options
from personahub.cli.base import PersonahubTyper
from tests.cli.test_engine_options import commands


def info_of(annotation: Any) -> OptionInfo | None:
    """The typer option an ``Annotated`` parameter type carries (None: none)."""
    found = [m for m in typing.get_args(annotation)[1:] if isinstance(m, OptionInfo)]
    return found[0] if found else None


SHARED = {id(info_of(cli_options.JsonOption)): "--json", id(info_of(cli_options.PreviewOption)): "--preview"}


def listed_by_hand(name: str, callback: Callable[..., Any]) -> list[str]:
    """The output options the command function, as written (under its decorators), declares
    itself: the shared ones, or an option of its own calling ``json_mode``."""
    hints = typing.get_type_hints(inspect.unwrap(callback), include_extras=True)
    found = []
    for param, hint in hints.items():
        info = info_of(hint)
        if info is not None and (id(info) in SHARED or info.callback is common.json_mode):
            found.append(f"{name}: {param} is listed by hand")
    return found


def test_every_job_command_takes_the_output_options_from_output_options() -> None:
    found = [p for name, cb in commands() for p in listed_by_hand(name, cb)]
    assert found == []
    shown = {name: [p for p in ("preview", "as_json")
                    if inspect.signature(cb).parameters.get(p) is not None
                    and id(info_of(inspect.signature(cb).parameters[p].annotation)) in SHARED]
             for name, cb in commands()}
    assert {n for n, ps in shown.items() if ps == ["preview", "as_json"]} == {
        "run", "synthesize", "personas expand", "personas from-text"}
    assert {n for n, ps in shown.items() if ps == ["as_json"]} == {
        "calibrate", "judge", "interview", "resume", "personas dedup",
        "personas sample-population"}


def test_a_command_listing_an_output_option_itself_is_refused() -> None:
    def own_json(as_json: cli_options.JsonOption = False, *,  # type: ignore[valid-type]
                 shown: cli_options.Shown) -> None:
        """A command listing --json beside ``@output_options``."""

    def own_preview(preview: cli_options.PreviewOption = 3, *,  # type: ignore[valid-type]
                    shown: cli_options.Shown) -> None:
        """A command listing --preview beside ``@output_options(preview=True)``."""

    def no_place(as_json: bool = False) -> None:
        """A command with nowhere to take the options."""

    with pytest.raises(TypeError, match="own_json lists --json itself"):
        cli_options.output_options()(own_json)
    with pytest.raises(TypeError, match="own_preview lists --preview itself"):
        cli_options.output_options(preview=True)(own_preview)
    with pytest.raises(TypeError, match="declare a keyword-only 'shown: Shown' parameter"):
        cli_options.output_options()(no_place)
    # and the scan above finds such a command
    assert listed_by_hand("own", own_json) == ["own: as_json is listed by hand"]


def test_output_options_hand_the_command_one_shown() -> None:
    demo = PersonahubTyper()
    seen: list[cli_options.Shown] = []

    @demo.command()
    @cli_options.output_options(preview=True)
    def job(n: int = 1, *, shown: cli_options.Shown) -> None:
        """A job with a preview and a JSON result."""
        seen.append(shown)

    assert list(inspect.signature(job).parameters) == ["n", "preview", "as_json"]
    runner = CliRunner()
    assert runner.invoke(demo, []).exit_code == 0
    assert runner.invoke(demo, ["--preview", "5", "--json"]).exit_code == 0
    common.reset_cli_state()  # --json moved results to stderr
    assert seen == [cli_options.Shown(DEFAULT_PREVIEW, False), cli_options.Shown(5, True)]
    assert runner.invoke(demo, ["--preview", "-1"]).exit_code == 2  # the shared bounds


def test_synthesize_and_calibrate_take_the_one_carve_option() -> None:
    shared = id(info_of(cli_options.CarveOption))
    taking = {name for name, cb in commands()
              if "carve" in inspect.signature(cb).parameters
              and id(info_of(typing.get_type_hints(cb, include_extras=True)["carve"])) == shared}
    assert taking == {"synthesize", "calibrate"}


def test_the_app_gathers_each_modules_commands() -> None:
    listed = {path for module in cli_app.OWN_MODULES for path in module.COMMANDS}
    assert set(cli_app.OWN) == listed and len(listed) == sum(
        len(module.COMMANDS) for module in cli_app.OWN_MODULES)
    one, other = types.ModuleType("one"), types.ModuleType("other")
    one.COMMANDS = {("x",): print}  # type: ignore[attr-defined]
    other.COMMANDS = {("x",): len}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="other lists a command another module does"):
        cli_app.own_commands([one, other])

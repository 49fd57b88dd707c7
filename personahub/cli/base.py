"""What every personahub command gets without declaring it: the short flags, -q and -v,
-h, help rendered by helpfmt, usage errors that name their command, and (with -v) the
resolved settings printed before the command runs.

app.py builds the app from PersonahubTyper, so every registered command gets all of this.
Command modules do not import this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from personahub.cli import helpfmt
from personahub.cli.common import click_exceptions, detail, request_verbosity, reset_cli_state, verbosity

if TYPE_CHECKING:  # typer >= 0.22 runs on its own copy of click
    from typer._click.core import Context, HelpFormatter, Parameter

T = TypeVar("T")

# One meaning per short flag across the app: a command with the long option gets the short one
# (unless it already uses that letter for something else). -h, -q and -v are on
# every command; -f (sql --file), -k, -w are declared where they are used.
SHORT_FLAGS: dict[str, str] = {
    "--db": "-d",
    "--out": "-o",
    "--n": "-n",
    "--seed": "-s",
    "--run": "-r",
    "--job": "-j",
}
# What help shows after these options when their declaration names no metavar.
VALUE_NAMES: dict[str, str] = {"--run": "RUN_ID", "--job": "JOB_ID", "--llm": "SPEC"}
HELP_NAMES = ["-h", "--help"]
CONTEXT_SETTINGS: dict[str, list[str]] = {"help_option_names": HELP_NAMES}
# Parameter names whose values are never printed by -v (model specs are redacted instead).
SECRET_WORDS = ("key", "token", "secret", "password")


def conventional_names(params: list[Parameter]) -> None:
    """Give each option named in SHORT_FLAGS its short flag, where the letter is free, and
    each one in VALUE_NAMES its value's name unless it declares one."""
    taken = {opt for p in params for opt in [*p.opts, *getattr(p, "secondary_opts", [])]}
    taken.update(HELP_NAMES)
    for param in params:
        if param.param_type_name != "option":
            continue
        for long_name, short in SHORT_FLAGS.items():
            if long_name in param.opts and short not in taken:
                param.opts.append(short)  # after the long name: errors still say '--db' first
                taken.add(short)
        for long_name, value_name in VALUE_NAMES.items():
            if long_name in param.opts and param.metavar is None:
                param.metavar = value_name


def _quiet(value: bool) -> bool:
    if value:
        request_verbosity(-1)
    return value


def _verbose(value: bool) -> bool:
    if value:
        request_verbosity(1)
    return value


def verbosity_params() -> list[Parameter]:
    """-q/--quiet and -v/--verbose as parameters (built through Typer's own declaration,
    whatever click copy it uses), not passed to the command's function."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def _probe(
        quiet: Annotated[bool, typer.Option(
            "-q", "--quiet", callback=_quiet, expose_value=False, is_eager=True,
            help="Quiet: results (stdout) and errors only; no banner, progress, hints or "
                 "warnings.")] = False,
        verbose: Annotated[bool, typer.Option(
            "-v", "--verbose", callback=_verbose, expose_value=False, is_eager=True,
            help="Verbose: also the resolved settings, the model's, and a progress line per "
                 "batch or step.")
        ] = False,
    ) -> None:  # pragma: no cover - never called: only its parameters are used
        """Parameters only."""

    return list(typer.main.get_command(probe).params)


def _long_name(param: Parameter) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.name or "?")


def _shown(name: str, value: object) -> str:
    """Return a setting as -v prints it: secrets hidden, URLs (model specs) redacted."""
    if any(word in name for word in SECRET_WORDS):
        return "***"
    if isinstance(value, str) and "://" in value:
        from personahub.models.endpoint_specs import redact_spec

        return redact_spec(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def show_settings(ctx: Context) -> None:
    """With -v: every parameter's value and where it came from (given, env, default)."""
    detail(f"settings of {ctx.command_path}:")
    for param in ctx.command.params:
        if not param.expose_value or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        source = ctx.get_parameter_source(param.name)
        origin = source.name.lower() if source is not None else "default"
        if origin == "environment":
            origin = f"env {param.envvar}"
        elif origin == "commandline":
            origin = "given"
        if value is None and origin == "default":
            continue
        label = _long_name(param) if param.param_type_name == "option" else param.name.upper()
        detail(f"  {label} = {_shown(param.name or '', value)}  ({origin})")


_NOT_A_CHOICE = re.compile(r"(?:Value error, )?'(?P<value>.*)' is not one of (?P<choices>.*?)\.?")


def usage_message(exc: click_exceptions.ClickException) -> str:
    """Return a usage error's text for the error: line.

    A bad choice reads like the commands' own checks (--cache 'bogus': use one of off,
    record, replay); other errors keep click's words, minus pydantic's "Value error, "."""
    param = getattr(exc, "param", None)
    match = _NOT_A_CHOICE.fullmatch(str(getattr(exc, "message", "")))
    if match and param is not None and param.param_type_name == "option":
        choices = ", ".join(c.strip().strip("'") for c in match.group("choices").split(","))
        return f"{_long_name(param)} '{match.group('value')}': use one of {choices}"
    return str(exc.format_message()).rstrip(".").replace("Value error, ", "")


def _located(parse: Callable[[], T], ctx: Context) -> T:
    """Run click's parsing; a usage error raised without its context (a missing option value)
    gets this command's, so the message names personahub CMD --help."""
    try:
        return parse()
    except click_exceptions.UsageError as exc:
        if exc.ctx is None:
            exc.ctx = ctx
        raise


class _Conventions:
    """What a command and a group of the app share: conventional option names, the verbosity
    flags, normal chatter at each entry, and usage errors that name where they are."""

    params: list[Parameter]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        conventional_names(self.params)
        self.params.extend(verbosity_params())

    def main(self, *args: Any, **kwargs: Any) -> Any:
        reset_cli_state()  # the entry point: each invocation starts at normal chatter
        return super().main(*args, **kwargs)  # type: ignore[misc]

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        return _located(partial(super().parse_args, ctx, args), ctx)  # type: ignore[misc]


class PersonahubCommand(_Conventions, TyperCommand):
    """A leaf command with the app's conventions (see the module docstring)."""

    def invoke(self, ctx: Context) -> object:
        if verbosity() > 0:
            show_settings(ctx)
        return super().invoke(ctx)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        formatter.write(helpfmt.render(
            command_path=ctx.command_path, help_text=self.help, params=self.get_params(ctx),
            subcommands=None, width=helpfmt.width_now()))


class PersonahubGroup(_Conventions, TyperGroup):
    """A command group with the app's conventions; its help lists its commands."""

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        subcommands = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                subcommands.append((name, command.help))
        formatter.write(helpfmt.render(
            command_path=ctx.command_path, help_text=self.help, params=self.get_params(ctx),
            subcommands=subcommands, width=helpfmt.width_now()))


class PersonahubTyper(typer.Typer):
    """typer.Typer whose commands and groups are PersonahubCommand/PersonahubGroup
    unless a cls is given, with -h as well as --help."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", PersonahubGroup)
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        kwargs.setdefault("add_completion", False)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", PersonahubCommand)
        return super().command(*args, **kwargs)

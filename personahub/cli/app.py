"""The personahub command line: this module assembles the app from the command modules.

Every command follows the app's conventions (personahub/cli/base.py): -h, -q/-v, the shared
short flags, and help rendered by helpfmt. Commands that call a model take --llm SPEC
(default: PERSONAHUB_LLM or offline).

Errors print one error: line on stderr and exit non-zero; nothing is half-written. Usage
errors (unknown flag or command, missing or bad value) exit 2. Ctrl-C and SIGTERM print one
line naming the interrupted job and how to resume it, and exit 130 and 143. A job names
itself on stderr when it starts.

Layout: the CLI is the outermost layer, and no command module imports another or this one.
base, helpfmt, common, options, job_running and progress hold what commands share; the
other modules hold commands. A shipped job kind's command is registered from its row in
pipelines/labels.py; every other command module lists its own in COMMANDS, gathered here
as OWN. HELP_ORDER sets the order --help lists them in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from types import ModuleType
from typing import Annotated, Any

import typer

from personahub.cli import (
    batch as cli_batch,
)
from personahub.cli import (
    calibrate as cli_calibrate,
)
from personahub.cli import (
    doctor as cli_doctor,
)
from personahub.cli import (
    experiment as cli_experiment,
)
from personahub.cli import (
    hub as cli_hub,
)
from personahub.cli import (
    jobs as cli_jobs,
)
from personahub.cli import (
    serve as cli_serve,
)
from personahub.cli import (
    show as cli_show,
)
from personahub.cli import (
    sql as cli_sql,
)
from personahub.cli import (
    synth as cli_synth,
)
from personahub.cli import (
    view as cli_view,
)
from personahub.cli.base import PersonahubGroup, PersonahubTyper, usage_message
from personahub.cli.batch import old_batch_group_note
from personahub.cli.common import click_exceptions, error_line
from personahub.cli.run import print_summary
from personahub.pipelines.labels import SHIPPED, ShippedKind

__all__ = ["app", "print_summary"]


class OneLineGroup(PersonahubGroup):
    """The root command: a usage error prints one error: line pointing at --help, instead
    of click's usage block."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: object) -> object:
        extra["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:  # typer has printed the help already
            if exc.format_message().strip():
                exc.show()
            sys.exit(exc.exit_code)
        except click_exceptions.UsageError as exc:
            where = exc.ctx.command_path.split()[1:] if exc.ctx is not None else []
            message = usage_message(exc)
            error_line(f"{message} (see {' '.join(['personahub', *where])} --help)")
            sys.exit(exc.exit_code)
        except click_exceptions.ClickException as exc:
            error_line(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort as exc:  # click's own Abort in older typer
            # click turns an escaped EOFError into Abort: name the cause, e.g. a truncated
            # compressed file
            cause = exc.__cause__ or exc.__context__
            error_line("aborted" if cause is None or isinstance(cause, KeyboardInterrupt)
                       else f"aborted: unexpected end of data ({type(cause).__name__}: {cause})")
            sys.exit(1)
        # non-standalone main returns the exit code of a typer.Exit, else the command's result
        sys.exit(code if isinstance(code, int) else 0)


app = PersonahubTyper(
    cls=OneLineGroup,
    name="personahub",
    help="Persona-driven synthetic data and virtual-society simulation (offline by default).",
    no_args_is_help=True,
)


def _print_version(value: bool) -> None:
    if value:
        from personahub import __version__

        print(f"personahub {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the installed version and exit.")] = False) -> None:
    """Persona-driven synthetic data and virtual-society simulation (offline by default)."""


#: the modules of the commands that belong to no shipped kind (each lists them in COMMANDS)
OWN_MODULES: tuple[ModuleType, ...] = (
    cli_experiment, cli_sql, cli_serve, cli_synth, cli_calibrate, cli_view, cli_doctor, cli_jobs,
    cli_show, cli_hub, cli_batch)


def own_commands(modules: Sequence[ModuleType]) -> dict[tuple[str, ...], Callable[..., object]]:
    """Return the commands modules list as their COMMANDS, by path.

    Args:
        modules: Command modules.

    Returns:
        Command path -> the command's function.

    Raises:
        ValueError: Two modules list the same path.
    """
    found: dict[tuple[str, ...], Callable[..., object]] = {}
    for module in modules:
        listed: Mapping[tuple[str, ...], Callable[..., object]] = module.COMMANDS
        if listed.keys() & found.keys():
            raise ValueError(f"{module.__name__} lists a command another module does: "
                             f"{sorted(listed.keys() & found.keys())}")
        found.update(listed)
    return found


#: the commands that belong to no shipped kind, by path
OWN = own_commands(OWN_MODULES)

#: each group's commands in the order --help lists them; a command not named here (a new
#: shipped kind's) comes last in its group
HELP_ORDER: dict[tuple[str, ...], tuple[str, ...]] = {
    (): ("run", "experiment", "sql", "serve", "synthesize", "export", "report", "diversity",
         "judge", "evaluate", "calibrate", "calibrations", "view", "interview", "doctor", "jobs",
         "runs", "resume", "show"),
    ("personas",): ("import", "expand", "from-text", "sample", "sample-population", "stats",
                    "export-graph", "dedup"),
}


def resolve(ref: str) -> Any:
    """Import the object named by "module:name".

    The kinds table names commands and job functions as strings: pipelines may not import
    the CLI or the API."""
    module, _, name = ref.partition(":")
    return getattr(import_module(module), name)


def kind_commands(table: Mapping[str, ShippedKind]) -> dict[tuple[str, ...], Callable[..., object]]:
    """Each shipped kind's command by its path, resolved from the table.

    Args:
        table: Kind -> its row (pipelines.labels.SHIPPED).

    Returns:
        Command path -> the command's function.

    Raises:
        ImportError: A row's command is missing (naming the kind), so a kind without its
            command fails every use of the command line, not only the kind's.
    """
    found: dict[tuple[str, ...], Callable[..., object]] = {}
    for kind, shipped in table.items():
        try:
            found[shipped.command_path] = resolve(shipped.command)
        except (ImportError, AttributeError) as exc:
            raise ImportError(f"shipped kind {kind}: no command {shipped.command} ({exc})") from exc
    return found


def register(groups: Mapping[tuple[str, ...], typer.Typer],
             commands: Mapping[tuple[str, ...], Callable[..., object]],
             order: Mapping[tuple[str, ...], tuple[str, ...]]) -> None:
    """Register each command in its group, in each group's `order` (unlisted ones last).

    Args:
        groups: Group path -> its app (() the root).
        commands: Command path (its group's, then its name) -> its function.
        order: Group path -> its command names in help order.

    Raises:
        ValueError: A command's group does not exist.
    """
    def rank(path: tuple[str, ...]) -> int:
        names = order.get(path[:-1], ())
        return names.index(path[-1]) if path[-1] in names else len(names)

    for path in sorted(commands, key=rank):
        group = groups.get(path[:-1])
        if group is None:
            raise ValueError(f"command {' '.join(path)}: no group {' '.join(path[:-1])!r}")
        group.command(path[-1])(commands[path])


personas_app = PersonahubTyper(help="Import, expand and inspect the persona hub.",
                               no_args_is_help=True)
app.add_typer(personas_app, name="personas")
batch_app = PersonahubTyper(help="Batch files run elsewhere (--provider-batch-file): import their results.",
                            no_args_is_help=True)
app.add_typer(batch_app, name="provider-batch")
old_batch_app = PersonahubTyper(help="The old name of provider-batch.", no_args_is_help=True,
                                callback=old_batch_group_note)
app.add_typer(old_batch_app, name="batch", hidden=True)

_KINDS = kind_commands(SHIPPED)
if _KINDS.keys() & OWN.keys():  # one would hide the other
    raise ValueError(f"a shipped kind's command is one of the app's own: {_KINDS.keys() & OWN.keys()}")
register({(): app, ("personas",): personas_app, ("provider-batch",): batch_app,
          ("batch",): old_batch_app}, {**OWN, **_KINDS},
         HELP_ORDER)

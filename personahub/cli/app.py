"""The ``personahub`` command line: this module assembles the app from the command modules.

Every command that calls a model takes ``--llm SPEC`` (default: ``PERSONAHUB_LLM`` or
``offline``). Errors print as one line on stderr with a non-zero exit; nothing is half-written.
Ctrl-C and SIGTERM print one line too (the interrupted job and how to resume it) and exit 130
and 143; a job names itself on stderr when it starts.

Every command follows the app's conventions (``personahub/cli/base.py``): ``-h``, ``-q``/``-v``,
the short flags, help rendered by ``helpfmt``. Every usage error (unknown flag or command,
missing or bad value, a bad choice) exits 2 with one ``error:`` line.

Layout (the CLI is the outermost layer; no command module imports another, nor this one), all
in ``personahub/cli/``: ``base`` and ``helpfmt`` (the conventions above), ``common`` (options,
consoles, errors, client, progress, the JSON result), ``run``, ``experiment``,
``sql``, ``serve``, ``view``, ``synth`` (synthesize, export, report, diversity), ``interview``,
``judge``, ``evaluate``, ``batch`` (batch import), ``calibrate`` (calibrate, calibrations), ``doctor``,
``jobs`` (jobs, runs, resume),
``show`` (one item, emission or persona), ``hub`` (personas import, sample, stats,
export-graph), ``population`` (personas sample-population), ``dedup`` (personas dedup) and
``personas`` (personas expand, from-text).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from personahub.cli import (
    batch as cli_batch,
)
from personahub.cli import (
    calibrate as cli_calibrate,
)
from personahub.cli import (
    dedup as cli_dedup,
)
from personahub.cli import (
    doctor as cli_doctor,
)
from personahub.cli import (
    evaluate as cli_evaluate,
)
from personahub.cli import (
    experiment as cli_experiment,
)
from personahub.cli import (
    hub as cli_hub,
)
from personahub.cli import (
    interview as cli_interview,
)
from personahub.cli import (
    jobs as cli_jobs,
)
from personahub.cli import (
    judge as cli_judge,
)
from personahub.cli import (
    personas as cli_personas,
)
from personahub.cli import (
    population as cli_population,
)
from personahub.cli import (
    run as cli_run,
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
from personahub.cli.common import click_exceptions, error_line
from personahub.cli.run import print_summary

__all__ = ["app", "print_summary"]


class OneLineGroup(PersonahubGroup):
    """The root command: a usage error (bad flag or value, missing argument, unknown command)
    is one ``error:`` line naming where help is, not click's usage block; help is unchanged."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
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
            # click turns an EOFError that escaped a command into Abort: name the cause (a
            # truncated compressed file said only "aborted")
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


# Commands in the order ``--help`` lists them.
app.command()(cli_run.run)
app.command()(cli_experiment.experiment)
app.command()(cli_sql.sql)
app.command()(cli_serve.serve)
app.command()(cli_synth.synthesize)
app.command("export")(cli_synth.export_cmd)
app.command()(cli_synth.report)
app.command()(cli_synth.diversity)
app.command()(cli_judge.judge)
app.command()(cli_evaluate.evaluate)
app.command()(cli_calibrate.calibrate)
app.command()(cli_calibrate.calibrations)
app.command()(cli_view.view)
app.command()(cli_interview.interview)
app.command()(cli_doctor.doctor)
app.command()(cli_jobs.jobs)
app.command()(cli_jobs.runs)
app.command()(cli_jobs.resume)
app.command()(cli_show.show)

personas_app = PersonahubTyper(help="Import, expand and inspect the persona hub.",
                               no_args_is_help=True)
app.add_typer(personas_app, name="personas")
personas_app.command("import")(cli_hub.personas_import)
personas_app.command("expand")(cli_personas.personas_expand)
personas_app.command("from-text")(cli_personas.personas_from_text)
personas_app.command("sample")(cli_hub.personas_sample)
personas_app.command("sample-population")(cli_population.personas_sample_population)
personas_app.command("stats")(cli_hub.personas_stats)
personas_app.command("export-graph")(cli_hub.personas_export_graph)
personas_app.command("dedup")(cli_dedup.personas_dedup)

batch_app = PersonahubTyper(help="Batch files run elsewhere (--batch-file): import their results.",
                            no_args_is_help=True)
app.add_typer(batch_app, name="batch")
batch_app.command("import")(cli_batch.batch_import)

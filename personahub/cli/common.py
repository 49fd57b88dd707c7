"""What every CLI command module shares: the consoles and how chatty they are (-q / -v), one-line
errors and exits, the job an invocation announced, and the one JSON object of --json.

The engine options live in cli/engine.py, the other options commands share in cli/options.py,
and what a job command shows while its job runs in cli/job_running.py. Command modules import
these four (and cli/progress.py) and nothing of each other; cli/app.py assembles them into the personahub app.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import duckdb
import typer
from rich.console import Console
from rich.text import Text

from personahub.core.dbcheck import damage_reason, is_damage
from personahub.core.diskfull import full_disk_text, is_disk_full
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.interrupts import Stopped, exit_code, signal_name, sigterm_as_interrupt

try:  # typer >= 0.22 ships its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

# Markup and emoji codes are off on every console: messages and table cells hold user data
# (a path with [/], a label like expand:link) that must print verbatim. Styling goes through
# say as styled Text pieces.
# console: chatter on stderr (banners, progress, hints), silenced by -q.
# errors: the error: line and interrupt lines, on stderr even under -q.
# out: results on stdout (tables, exported data), moved to stderr under --json.
console = Console(stderr=True, markup=False, emoji=False)
errors = Console(stderr=True, markup=False, emoji=False)
out = Console(markup=False, emoji=False)
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass
class Chattiness:
    """How much this invocation prints: -1 quiet (-q), 0 normal, 1 verbose (-v)."""

    level: int = 0
    asked: int = 0  # what -q/-v asked in this invocation (0: neither yet)
    as_json: bool = False  # --json given: a job that stops still prints its object
    job: tuple[str, str, Path] | None = None  # (id key, id, db) of the job this invocation started


_chat = Chattiness()


def reset_cli_state() -> None:
    """Back to normal chatter and results on stdout (each invocation starts here: tests run many
    in one process)."""
    _chat.level = _chat.asked = 0
    _chat.as_json, _chat.job = False, None
    console.quiet = False
    out.stderr = False


def request_verbosity(level: int) -> None:
    """-q (-1) or -v (1), on the root command or the command itself; both at once is a
    usage error."""
    if _chat.asked and _chat.asked != level:
        raise typer.BadParameter("-q and -v cannot be combined")
    _chat.asked = _chat.level = level
    console.quiet = level < 0


def verbosity() -> int:
    """-1 under -q, 1 under -v, else 0."""
    return _chat.level


def detail(*parts: str | tuple[str, str]) -> None:
    """Print a line only -v shows (settings, per-batch progress), on stderr."""
    if _chat.level > 0:
        say(*parts)


#: how wide a table printed to a pipe or a file may grow (its rows' natural width, up to this)
PIPED_TABLE_WIDTH = 10_000


def print_whole(table: Any) -> None:
    """Print a rich table on stdout: fitted to a terminal, where cells wrap; piped into a file or
    a pager, as wide as its rows, every value whole (no "st…" cut to the terminal's width)."""
    if out.is_terminal:
        out.print(table)
        return
    from rich.measure import Measurement

    wide = Measurement.get(out, out.options.update_width(PIPED_TABLE_WIDTH), table).maximum
    Console(file=out.file, width=max(wide, 20), markup=False, emoji=False, highlight=False,
            color_system=None).print(table)


def say(*parts: str | tuple[str, str], to: Console | None = None) -> None:
    """Print one line from plain strings and (text, style) pairs, every character verbatim
    (no markup, no highlighting, not wrapped); on stderr unless to names another console."""
    (to or console).print(Text.assemble(*parts), highlight=False, soft_wrap=True)


def error_line(message: str) -> None:
    """Print error: MESSAGE as one line on stderr (never wrapped, markup not interpreted,
    shown under -q too)."""
    first = " ".join(str(message).split()) or "unknown error"
    say(("error:", "bold red"), " ", first, to=errors)


def renamed_flag(value: T | None, old_value: T | None, *, old: str, new: str) -> T | None:
    """Return the value of a flag given under its new or its old (hidden) name.

    The old name still works and says, in one line on stderr, what it is called now; both at once
    is a usage error.

    Args:
        value: What the new flag got.
        old_value: What the old flag got.
        old: The old flag, e.g. ``--kind``.
        new: The new flag, e.g. ``--task``.

    Returns:
        The value given, or None.
    """
    if old_value is None:
        return value
    if value is not None:
        raise UsageError(f"{old} is the old name of {new}: give {new} only")
    say(("note:", "yellow"), f" {old} is deprecated; it is called {new} now", to=errors)
    return old_value


def one_line_errors(func: F) -> F:
    """Report PersonahubError, Ctrl-C and SIGTERM as one line and a non-zero exit.

    A UsageError exits 2, like a flag click refuses. A damaged database file and a full disk
    are one line too, whichever command meets them (exit 1). SIGTERM acts as an interrupt, so the
    run or job it stops is marked interrupted as after Ctrl-C, but exits 143, not 130.
    sys.exit and other BaseExceptions from scenario code also become one line naming the
    scenario's file and line, so scenario code cannot end the program silently.
    """

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            with sigterm_as_interrupt():
                return func(*args, **kwargs)
        except PersonahubError as exc:
            error_line(str(exc))
            _stopped_json(func.__name__)
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
        except KeyboardInterrupt as exc:
            line = str(exc) if isinstance(exc, Stopped) else f"interrupted by {signal_name(exc)}"
            say((line, "bold red"), to=errors)
            _stopped_json(func.__name__)
            raise typer.Exit(exit_code(exc)) from None
        except Exception as exc:
            if isinstance(exc, duckdb.Error) and is_damage(exc):
                error_line(f"--db {kwargs.get('db', '?')}: the database file is damaged "
                           f"({damage_reason(exc)}); restore it from a backup or give another --db")
            elif is_disk_full(exc):
                error_line(full_disk_text(exc))
                _stopped_json(func.__name__)
            else:
                raise  # a bug: its traceback is what to report
            raise typer.Exit(1) from None
        except BaseException as exc:  # sys.exit or a BaseException subclass
            from personahub.sim.scenario import raised_text, scenario_frame

            where = scenario_frame(exc)
            if where is None:  # ours (rich exits quietly on a closed pipe, for one)
                raise
            error_line(f"{where}: scenario code {raised_text(exc)}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _stopped_json(function: str) -> None:
    """Under --json, print the object of a job that started and then failed or was
    interrupted (the exit code stays the error's)."""
    if not _chat.as_json or _chat.job is None:
        return
    id_key, job_id, db = _chat.job
    command = function.replace("personas_", "personas ").replace("_", "-")
    try:
        emit_job_json(command, db, job_id=job_id, id_key=id_key)
    except PersonahubError:  # the database cannot be read back: the error line said why
        pass


def serve_until_stopped(stop: Callable[[], None]) -> None:
    """Keep this process's server up until Ctrl-C or SIGTERM, then call `stop`."""
    import time

    try:
        while True:
            time.sleep(3600)
    finally:
        stop()


_ID_KEYS = {"run": "run_id", "judge": "judge_id", "expansion": "expansion_id",
            "interview": "batch_id"}


def job_id_key(kind: str) -> str:
    """Return the key --json names a job's id by (run_id for a run, job_id by default)."""
    return _ID_KEYS.get(kind, "job_id")


def note_job(what: str, key: str, db: Path) -> None:
    """Remember the job this invocation runs (started or resumed): if it stops, --json
    still prints its object, with the status the job was left in."""
    _chat.job = (job_id_key(what), key, Path(db))


def given_on_command_line(ctx: typer.Context, names: Iterable[str]) -> list[str]:
    """Return the `names` the user set on the command line or in the environment, as --flags.

    A resume refuses those its job already fixes. Sources compare by name because typer
    may run on its own copy of click."""
    chosen = []
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            chosen.append("--" + name.replace("_", "-"))
    return chosen


def json_mode(on: bool) -> bool:
    """Act as the --json callback: keep stdout for the result object by sending `out` to stderr.

    reset_cli_state undoes it."""
    if on:
        out.stderr = True
        _chat.as_json = True
    return on


def emit_json(command: str, *, status: str, ids: Mapping[str, str | None],
              counts: Mapping[str, int | float | None] | None = None,
              paths: Mapping[str, str | Path | None] | None = None, **more: object) -> None:
    """Print a command's result as one JSON object on one line of stdout, for scripts, e.g.

        {"command": "synthesize", "status": "finished", "job_id": "...", "counts": {"written": 50},
         "paths": {"db": "hub.duckdb", "out": "math.jsonl"}}

    ids become top-level keys (job_id, run_id); status is the job's stored status
    (finished, failed, interrupted...); paths skip None values; `more` adds
    command-specific keys. A job command calls this last when shown.json is set. It is also
    called when a started job fails: the object says so and the exit stays non-zero.
    """
    record: dict[str, object] = {"command": command, "status": status, **ids,
                              "counts": dict(counts or {}),
                              "paths": {k: str(v) for k, v in (paths or {}).items() if v is not None}}
    record.update(more)
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


def emit_job_json(command: str, db: Path, *, job_id: str | None, kind: str | None = None,
                  id_key: str = "job_id", counts: Mapping[str, int | float | None] | None = None,
                  paths: Mapping[str, str | Path | None] | None = None, **more: object) -> None:
    """emit_json for a job the command just ran, with its stored status and the db path.

    With `kind` and no job_id, the newest job of that kind is reported."""
    from personahub.core.jobs_store import find_job, list_jobs
    from personahub.core.store import connect

    status = "finished"
    if Path(db).exists():
        con = connect(db, read_only=True)
        try:
            row = find_job(con, job_id) if job_id else next(iter(list_jobs(con, kind=kind)), None) \
                if kind else None
        finally:
            con.close()
        if row is not None:
            job_id, status = row.job_id, row.status
    emit_json(command, status=status, ids={id_key: job_id}, counts=counts,
              paths={"db": db, **(paths or {})}, **more)


def missing_argument(ctx: typer.Context, name: str) -> NoReturn:
    """Raise click's own "Missing argument" error for an argument optional only with
    --resume, so the message and exit code match a required argument."""
    param = next(p for p in ctx.command.params if p.name == name)
    raise click_exceptions.MissingParameter(ctx=ctx, param=cast(Any, param))  # typer's click copy


def run_counts(summary: Any) -> dict[str, int]:
    """Return a run's counts for --json."""
    return {"agents": summary.agents, "steps": summary.steps,
            "emissions": sum(summary.emissions_by_kind.values()), "messages": summary.messages,
            "survey_answers": summary.answers, "duplicates": summary.duplicates,
            "failed_actions": summary.failed_actions, "llm_calls": sum(summary.calls.values())}


def summary_counts(summary: object) -> dict[str, int]:
    """Return the whole-number fields of a spec's summary (a dataclass), for --json."""
    import dataclasses

    if not dataclasses.is_dataclass(summary):
        return {}
    values = {f.name: getattr(summary, f.name) for f in dataclasses.fields(summary)}
    return {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}

"""What every CLI command module shares: the consoles and how chatty they are (``-q``/``-v``), the
option types, the generation flags, one-line error handling, the model client and its banner, the
progress display, job announcements, and the one-object JSON result of ``--json``.

Command modules (``personahub/cli/*.py``) import this module and nothing of each other;
``personahub/cli/app.py`` assembles them into the ``personahub`` app. Nothing here imports a command module.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    NamedTuple,
    NoReturn,
    Protocol,
    TypeVar,
    cast,
)

import duckdb
import typer
from rich.console import Console
from rich.progress import Progress
from rich.text import Text

from personahub.analysis.preview import DEFAULT_PREVIEW
from personahub.core.dbcheck import first_line
from personahub.core.engine_options import (
    BATCH,
    BATCH_PANEL,
    ENGINE_OPTIONS,
    EXECUTOR_PANEL,
    MODEL_PANEL,
    SAMPLING,
    default,
)
from personahub.core.errors import AwaitingResults, PersonahubError, StillAwaiting, UsageError
from personahub.core.interrupts import Stopped, exit_code, signal_name, sigterm_as_interrupt
from personahub.core.store import is_damage

try:  # typer >= 0.22 ships its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

if TYPE_CHECKING:  # LangChain takes seconds to import: only commands that call a model load it
    from personahub.core.contracts import StructuredCaller
    from personahub.models.adaptive_limit import Concurrency as _ConcurrencyValue
else:  # typer reads annotations at run time and takes no Union: the parser gives the value
    _ConcurrencyValue = Any

# Markup is off on every console: messages, file names, hints and table cells hold user and data
# text (``pip install 'personahub[embed]'``, a path with ``[/]``) that must print verbatim. Our own
# emphasis goes through ``say`` as styled ``Text`` pieces, never through markup.
# ``console``: chatter on stderr (banners, progress, summaries, hints), silenced by ``-q``;
# ``errors``: the one ``error:`` line and interrupt lines, on stderr whatever ``-q`` says;
# ``out``: results on stdout (tables, exported data), moved to stderr under ``--json``.
# Emoji codes are off too: a label such as ``expand:link`` or a persona's ``:smile:`` is data, not
# an emoji (issue 44).
console = Console(stderr=True, markup=False, emoji=False)
errors = Console(stderr=True, markup=False, emoji=False)
out = Console(markup=False, emoji=False)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Chattiness:
    """How much this invocation prints: -1 quiet (``-q``), 0 normal, 1 verbose (``-v``)."""

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
    """``-q`` (-1) or ``-v`` (1), on the root command or the command itself; both at once is a
    usage error."""
    if _chat.asked and _chat.asked != level:
        raise typer.BadParameter("-q and -v cannot be combined")
    _chat.asked = _chat.level = level
    console.quiet = level < 0


def verbosity() -> int:
    """-1 under ``-q``, 1 under ``-v``, else 0."""
    return _chat.level


def detail(*parts: str | tuple[str, str]) -> None:
    """A line only ``-v`` shows (settings, per-batch progress), on stderr."""
    if _chat.level > 0:
        say(*parts)


class CountsCalls(Protocol):
    """What a progress display reads of a model client: its running call counts."""

    @property
    def stats(self) -> Any: ...

# The choices, as the layers below list them (tests/cli/test_usage_errors.py compares them):
CacheMode = Literal["off", "record", "replay"]  # personahub/models/cache.py
StructuredSetting = Literal["auto", "json_schema", "json_object", "tools", "prompt"]  # llm/structured
ExecutorName = Literal["local", "ray"]  # personahub/executors


def engine_option(field: str, **more: Any) -> Any:
    """The typer option of engine option ``field``: flag, help, panel, bounds and environment
    variable as ``core.engine_options`` declares them (``more``: typer's parser or
    callback). Every command taking the option uses this one object (tests/cli/
    test_engine_options.py checks it), so none can declare it differently."""
    option = ENGINE_OPTIONS[field]
    bounds: dict[str, Any] = {k: v for k, v in (("min", option.low), ("max", option.high))
                              if v is not None}
    return typer.Option(option.flag, help=option.help, rich_help_panel=option.panel,
                        envvar=option.envvar, metavar=option.metavar, **bounds, **more)


DbOption = Annotated[Path, typer.Option("--db", envvar="PERSONAHUB_DB",
                                        help="DuckDB database file.")]
# The offline engine ignores --concurrency on purpose: it answers in this process, with no server
# or connection pool to protect, so a limit would only queue calls; with --offline-latency it
# stands for a model whose every call waits that long at once (timed tests rely on that).


def parse_concurrency(value: Any) -> Any:
    """``--concurrency``: a number >= 1, or ``auto`` (a usage error else)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) < 1:
        raise typer.BadParameter(f"{value!r} is not a number >= 1 nor 'auto'")
    return int(text)


def _failed_share(value: float | None) -> float | None:
    """``--max-failed-share`` in (0, 1], else a usage error (exit 2) naming the flag."""
    if value is not None and not 0 < value <= 1:
        raise typer.BadParameter(f"must be > 0 and <= 1, got {value:g}")
    return value


# What typer parses each engine option's value into (typer reads these types at run time), and
# the parser or callback of those that need one.
_VALUE_TYPES: dict[str, Any] = {
    "llm": str | None, "concurrency": _ConcurrencyValue, "timeout_s": float,
    "offline_latency_s": float, "cache": CacheMode, "rps": float | None,
    "structured": StructuredSetting, "max_tokens": int | None, "temperature": float | None,
    "top_p": float | None, "max_failed_share": float | None, "executor": ExecutorName,
    "ray_address": str | None, "ray_workers": int | None, "batch": bool, "batch_window": str,
    "batch_fallback": Literal["batch", "online"], "batch_file": Path | None,
    "batch_poll_s": float}
_PARSING: dict[str, dict[str, Any]] = {"concurrency": {"parser": parse_concurrency},
                                       "max_failed_share": {"callback": _failed_share}}

#: each engine option's command parameter type, ``Annotated[type, typer.Option(...)]``, by
#: config field: built once, and every command taking the option gets this very object
#: (through ``engine_options``)
ENGINE_PARAMS: Mapping[str, Any] = MappingProxyType({
    field: Annotated[_VALUE_TYPES[field], engine_option(field, **_PARSING.get(field, {}))]
    for field in ENGINE_OPTIONS})

DEFAULT_ONLINE_SIZE = 64  # items per transaction online
DEFAULT_BATCH_SIZE = 1000  # requests per provider batch (and items per transaction) with --batch


def batch_size_option(per: str, online: int) -> Any:
    """The ``--batch-size`` option ``engine_options(batch_size=(per, online))`` gives a command,
    in the Batch panel.

    Args:
        per: what one transaction holds, capitalised (``"Items"``).
        online: the command's items per transaction online, stated in the help beside the
            provider batch's default.

    Returns:
        The typer option.
    """
    return typer.Option(min=1, rich_help_panel=BATCH_PANEL,
                        help=f"{per} per transaction (default {online}); with --batch also the "
                             f"most requests in one provider batch (default {DEFAULT_BATCH_SIZE}).")


#: ``--fresh`` of the job commands that find an unfinished job by its settings
FreshOption = Annotated[bool, typer.Option(
    help="Start a new job even if an unfinished one has the same settings (it is marked "
         "superseded).")]


def resume_option(metavar: str, keeps: str) -> Any:
    """The ``--resume`` option of a job command, declared once in one wording.

    Args:
        metavar: what the option takes (``JOB_ID``, or the id a kind finds its job by).
        keeps: what the resumed job keeps from its start, and anything else it does.

    Returns:
        The typer option, for ``Annotated[str | None, resume_option(...)] = None``.
    """
    return typer.Option("--resume", metavar=metavar,
                        help=f"Go on with the stopped job {metavar}; it keeps {keeps}.")


#: the panels of ``--help`` a command can take whole (``engine_options("model", ...)``)
ENGINE_GROUPS = {"model": MODEL_PANEL, "executor": EXECUTOR_PANEL, "batch": BATCH_PANEL}


def engine_fields(*taken: str) -> tuple[str, ...]:
    """The config fields of ``taken``: group names (``ENGINE_GROUPS``: every option of that
    panel, in declaration order) and field names, in the order given."""
    fields: list[str] = []
    for name in taken:
        if name in ENGINE_GROUPS:
            fields += [f for f, o in ENGINE_OPTIONS.items() if o.panel == ENGINE_GROUPS[name]]
        elif name in ENGINE_OPTIONS:
            fields.append(name)
        else:
            raise ValueError(f"{name!r} is no engine option nor group "
                             f"({', '.join([*ENGINE_GROUPS, *ENGINE_OPTIONS])})")
    return tuple(dict.fromkeys(fields))


@dataclass(frozen=True)
class Engine:
    """The engine options one invocation of a command was given, by config field
    (``engine.timeout_s``): what ``engine_options`` hands the command as one value, so that
    no command lists the options (or passes them on) one by one."""

    given: Mapping[str, Any]
    online_size: int = DEFAULT_ONLINE_SIZE

    def __getattr__(self, field: str) -> Any:
        given = self.__dict__.get("given", {})
        if field in given:
            return given[field]
        raise AttributeError(f"this command takes no engine option {field!r}")

    @property
    def flags(self) -> ModelFlags:
        """The generation flags (``ModelFlags``; the defaults of those the command does not
        take)."""
        return ModelFlags(**{k: self.given.get(k, default(k)) for k in SAMPLING})

    def settings(self, *, llm: bool = False) -> dict[str, Any]:
        """How the job runs, as job config keywords: every option given but the model, the
        generation flags and the batch options (``flags``, ``batching``); no
        ``max_failed_share`` when it was not given (the job's own, or the default). ``llm``:
        with the model spec too, resolved (``--llm``, ``PERSONAHUB_LLM`` or offline)."""
        settings = {k: v for k, v in self.given.items()
                    if k not in ("llm", *SAMPLING, *BATCH, "batch_size")
                    and not (k == "max_failed_share" and v is None)}
        if llm:
            from personahub.models.client import resolve_spec

            settings["llm"] = resolve_spec(self.given.get("llm"))
        return settings

    def batching(self, batch_size: int | None = None, *,
                 online_size: int | None = None) -> dict[str, Any]:
        """The batch options as job config keywords (``batch_engine``): the ``--batch-size``
        given (or ``batch_size``, a command's own), and the command's online size."""
        size = batch_size if batch_size is not None else self.given.get("batch_size")
        return batch_engine(self.given["batch"], size, self.given["batch_window"],
                            self.given["batch_fallback"], self.given.get("batch_file"),
                            self.given["batch_poll_s"],
                            online_size=self.online_size if online_size is None else online_size)


class Injected(NamedTuple):
    """One shared typer parameter a decorator puts in a command's signature: its flag (for the
    error naming it), the parameter typer reads, and the key its value is handed on by."""

    flag: str
    param: inspect.Parameter
    key: str


def inject_options(func: Callable[..., Any], place: str, kind: str, options: Sequence[Injected],
                   collect: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """The command ``func`` with the shared parameters ``options`` put in the signature typer
    reads where ``func`` declares the keyword-only parameter ``place: kind`` (in that order:
    ``--help``'s order), handed to ``func`` as that one parameter: ``collect`` of their values
    by key. What ``engine_options`` and ``output_options`` share.

    Raises:
        TypeError: ``func`` has no keyword-only ``place``, or lists one of ``options`` itself.
    """
    signature = inspect.signature(func, eval_str=True)
    own = signature.parameters
    spot = own.get(place)
    if spot is None or spot.kind is not inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(f"{func.__name__}: declare a keyword-only '{place}: {kind}' parameter")
    listed = [o.flag for o in options if o.param.name in own]
    if listed:
        raise TypeError(f"{func.__name__} lists {', '.join(listed)} itself")
    params = [q for p in own.values()
              for q in ([o.param.replace(kind=p.kind) for o in options] if p is spot else [p])]

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {o.key: kwargs.pop(o.param.name, o.param.default) for o in options}
        return func(*args, **{place: collect(given)}, **kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {**{p.name: p.annotation for p in params},
                               "return": signature.return_annotation}
    return command


def engine_options(*taken: str, without: tuple[str, ...] = (),
                   batch_size: tuple[str, int] | None = None
                   ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the engine options ``taken`` (``engine_fields``) as one value: the
    command declares a keyword-only ``engine: Engine`` parameter, and this decorator puts the
    shared typer parameter of each option in its place in the signature typer reads (their
    order is ``--help``'s order within each panel, and the panels' order), then hands the
    command the values given as ``engine``.

    Args:
        taken: group names (``model``, ``executor``, ``batch``) and config field names.
        without: config fields of those groups the command does not take.
        batch_size: ``(per, online)`` for a command whose transactions hold ``per`` things,
            ``online`` of them by default: it takes ``--batch-size`` too (``batch_size_option``),
            and ``Engine.batching()`` reads both.

    Returns:
        A decorator for the command function (below ``one_line_errors``).
    """
    options = [Injected(o.flag, inspect.Parameter(o.param, inspect.Parameter.KEYWORD_ONLY,
                                                  default=o.command_default,
                                                  annotation=ENGINE_PARAMS[o.field]), o.field)
               for field in engine_fields(*taken) if field not in without
               for o in [ENGINE_OPTIONS[field]]]
    online = DEFAULT_ONLINE_SIZE
    if batch_size is not None:
        per, online = batch_size
        size = Annotated[int | None, batch_size_option(per, online)]
        options.append(Injected("--batch-size", inspect.Parameter(
            "batch_size", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=size),
            "batch_size"))

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        return inject_options(func, "engine", "Engine", options,
                              lambda given: Engine(given, online_size=online))

    return decorate


def embedder_spec(value: str) -> str:
    """``--embedder`` (report, diversity): a spec some embedder answers to, else a usage error
    (exit 2) naming the flag, raised as the flag is parsed, before any database is opened. One
    check for every command and the library: ``personas.embedding.check_embedder_spec``."""
    from personahub.personas.embedding import check_embedder_spec

    try:
        check_embedder_spec(value)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def embedder_spec_or_none(value: str) -> str:
    """``personas dedup --embedder``: as ``embedder_spec``, or ``none`` (no stage 2)."""
    return value if value.strip().lower() in ("", "none") else embedder_spec(value)


LanguageOption = Annotated[str | None, typer.Option(
    help="Ask for personas in this language (en, fr, zh, ... or a name); the quality gate rejects "
         "answers in another script.")]


@dataclass(frozen=True)
class ModelFlags:
    """The generation flags every model-calling command takes."""

    structured: str = default("structured")
    max_tokens: int | None = default("max_tokens")
    temperature: float | None = default("temperature")
    top_p: float | None = default("top_p")

    def settings(self) -> dict[str, Any]:
        """As ``LLMSettings`` / job option keyword arguments."""
        return {"structured": self.structured, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "top_p": self.top_p}


def say(*parts: str | tuple[str, str], to: Console | None = None) -> None:
    """Print one line from plain strings and ``(text, style)`` pairs, every character verbatim
    (no markup, no highlighting, not wrapped); on stderr unless ``to`` names another console."""
    (to or console).print(Text.assemble(*parts), highlight=False, soft_wrap=True)


def error_line(message: str) -> None:
    """Print ``error: MESSAGE`` as one line on stderr (never wrapped, markup not interpreted,
    shown under ``-q`` too)."""
    first = " ".join(str(message).split()) or "unknown error"
    say(("error:", "bold red"), " ", first, to=errors)


def one_line_errors(func: F) -> F:
    """Report PersonahubError, Ctrl-C and SIGTERM as one line and a non-zero exit (2 for a
    UsageError: a flag or scenario value, as for a flag click refuses).

    SIGTERM is turned into an interrupt for the command's duration (``personahub.core.interrupts``), so a
    run or job it stops is marked ``interrupted`` as after Ctrl-C; the exit is 143, not 130.
    ``sys.exit`` and other BaseExceptions raised by scenario code become one line too, naming
    the scenario's file and line: they are not this program's way out, so they must not end it
    silently (loading and running a scenario already turn them into errors; this is the net).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with sigterm_as_interrupt():
                return func(*args, **kwargs)
        except PersonahubError as exc:
            error_line(str(exc))
            _stopped_json(func.__name__)
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
        except duckdb.Error as exc:
            if not is_damage(exc):
                raise
            error_line(f"--db {kwargs.get('db', '?')}: the database file is damaged "
                       f"({first_line(exc)})")
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            line = str(exc) if isinstance(exc, Stopped) else f"interrupted by {signal_name(exc)}"
            say((line, "bold red"), to=errors)
            _stopped_json(func.__name__)
            raise typer.Exit(exit_code(exc)) from None
        except Exception:
            raise  # a bug: its traceback is what to report
        except BaseException as exc:  # sys.exit or a BaseException subclass
            from personahub.sim.scenario import raised_text, scenario_frame

            where = scenario_frame(exc)
            if where is None:  # ours (rich exits quietly on a closed pipe, for one)
                raise
            error_line(f"{where}: scenario code {raised_text(exc)}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _stopped_json(function: str) -> None:
    """Under ``--json``, the object of a job that started and then stopped (failed,
    interrupted): the exit code stays the error's."""
    if not _chat.as_json or _chat.job is None:
        return
    id_key, job_id, db = _chat.job
    command = function.replace("personas_", "personas ").replace("_", "-")
    try:
        emit_job_json(command, db, job_id=job_id, id_key=id_key)
    except PersonahubError:  # the database cannot be read back: the error line said why
        pass


def banner(client: StructuredCaller) -> None:
    """Say which engine answers, plainly."""
    if client.is_offline:
        say("engine: ", ("offline", "bold"), " — deterministic offline engine; "
            "no language model is used.")
    else:
        say("engine: ", (client.label, "bold"), " (language model over HTTP)")


def unreachable(label: str) -> None:
    """Warn that one endpoint of several does not answer (the others are used)."""
    say(("warning:", "yellow"), f" endpoint {label} is unreachable; using the others")


def serve_until_stopped(stop: Callable[[], None]) -> None:
    """Keep a server of this process up until Ctrl-C or SIGTERM (``one_line_errors`` reports
    them), then ``stop`` it (``serve``, ``view``)."""
    import time

    try:
        while True:
            time.sleep(3600)
    finally:
        stop()


def job_progress(client: CountsCalls | None = None, *, counts: Any = None) -> Progress:
    """A progress display (with the client's call counts when it calls a model, or ``counts``:
    a ``progress.LateCounts`` for a client the job kernel builds later): nothing under ``-q``,
    a line per update (each batch or step) under ``-v``."""
    from personahub.cli.progress import JobProgress

    return JobProgress(console, counts if counts is not None
                       else client.stats if client is not None else None,
                       every_update=verbosity() > 0)


class JobHooks:
    """What a job command hands its job to hear from it: ``on_ready`` (the client is built: its
    call counts shown from now on, and its banner) and ``on_start`` (the job's id named as it
    starts or resumes, so ``--json`` can print it if the job stops).

    Args:
        noun: how the console names the job ("job", "interview", ...).
        db: the database the job writes.
        show_banner: print the client's banner when it is ready.
    """

    def __init__(self, noun: str, db: Path, *, show_banner: bool = True) -> None:
        from personahub.cli.progress import LateCounts

        self.noun, self.db, self.show_banner = noun, db, show_banner
        self.counts = LateCounts()

    def on_ready(self, client: Any) -> None:
        """Follow the client's call counts (None: a job that calls no model)."""
        if client is None:
            return
        self.counts.follow(client.stats)
        if self.show_banner:
            banner(client)

    def on_start(self, job_id: str, resumed: bool) -> None:
        """Name the job on stderr and remember it for ``--json``."""
        if resumed:
            say(f"resuming {self.noun} ", (job_id, "bold"), f" in {self.db}")
            note_job(self.noun, job_id, self.db)
        else:
            started(self.noun, job_id, self.db)

    def progress(self) -> Progress:
        """The progress display, with the client's counts once it is ready."""
        return job_progress(counts=self.counts)

    def run(self, spec: Any, config: Any, *, resume: str | None, fresh: bool, label: str,
            total: int | None = None) -> Any:
        """Run a job kind under one progress bar, and say so when a resumed job had nothing left.

        Args:
            spec: the kind's job spec.
            config: its config (or, on resume, the settings to check against the stored one).
            resume: the job id to go on with.
            fresh: start a new job even where one with these settings is unfinished.
            label: the bar's label.
            total: what the bar counts to (None: unknown).

        Returns:
            The kernel's result (``job_id``, ``summary``, ``ran``).
        """
        from personahub import runtime

        with self.progress() as bar, awaiting_results():
            handle = bar.add_task(label, total=total)
            result = runtime.run(spec, config, self.db, resume=resume, fresh=fresh,
                                 on_ready=self.on_ready, on_start=self.on_start, warn=unreachable,
                                 progress=batch_progress(bar, handle, label))
        if not result.ran:
            say(f"{self.noun} ", (result.job_id, "bold"), " already finished; nothing to resume")
        return result


_ID_KEYS = {"run": "run_id", "judge": "judge_id", "expansion": "expansion_id",
            "interview": "batch_id"}


def job_id_key(kind: str) -> str:
    """The key ``--json`` names a job's id by (``run_id`` for a run, ``job_id`` by default)."""
    return _ID_KEYS.get(kind, "job_id")


def started(what: str, key: str, db: Path) -> None:
    """Name a job on stderr as it starts: its id is what resumes it if it stops."""
    say(f"{what} ", (key, "bold"), f" started in {db}")
    note_job(what, key, db)


def note_job(what: str, key: str, db: Path) -> None:
    """Remember the job this invocation runs (started or resumed): if it stops, ``--json``
    still prints its object, with the status the job was left in."""
    _chat.job = (job_id_key(what), key, Path(db))


def given_on_command_line(ctx: typer.Context, names: Iterable[str]) -> list[str]:
    """Which of the parameters ``names`` the user gave (on the command line or in the
    environment), as ``--flag`` spellings: a resume refuses those its job already fixes.
    (Sources compare by name: typer may run on its own copy of click.)"""
    chosen = []
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            chosen.append("--" + name.replace("_", "-"))
    return chosen


def json_mode(on: bool) -> bool:
    """Under ``--json`` stdout holds only the result object: ``out`` writes to stderr (the
    ``--json`` option's callback; ``reset_cli_state`` puts it back)."""
    if on:
        out.stderr = True
        _chat.as_json = True
    return on


#: synthesize's and calibrate's --carve, declared once (``personas.carve`` parses each condition)
CarveOption = Annotated[list[str] | None, typer.Option(
    "--carve", help="Persona condition KEY OP VALUE as in personas sample -w (OP one of = != >= "
                    "<= > < ~), e.g. \"age>30\" or \"occupation~nurse\"; repeat to require "
                    "several; each narrows the personas drawn.")]


#: run's and experiment's --archetype-elicit, declared once (``RunConfig`` checks the value)
ArchetypeElicitOption = Annotated[str | None, typer.Option(
    "--archetype-elicit", metavar="HOW",
    help="How an archetype's answer distribution is elicited: 'stated' (its representative "
         "states the shares, one call) or 'sample:N' (N of its asked members answer; "
         "default: the scenario's, else stated).")]


JsonOption = Annotated[bool, typer.Option(
    "--json", callback=json_mode,
    help="When done, print one JSON object on stdout: ids, status, counts, paths (what the "
         "command prints there otherwise goes to stderr).")]


def emit_json(command: str, *, status: str, ids: Mapping[str, str | None],
              counts: Mapping[str, int | float | None] | None = None,
              paths: Mapping[str, str | Path | None] | None = None, **more: Any) -> None:
    """Print a command's result as one JSON object on one line of stdout, for scripts, e.g.

        {"command": "synthesize", "status": "finished", "job_id": "...", "counts": {"written": 50},
         "paths": {"db": "hub.duckdb", "out": "math.jsonl"}}

    ``ids`` become top-level keys (``job_id``, ``run_id``); ``status`` is the job's stored status
    (``finished``, ``failed``, ``interrupted``...); ``paths`` as given (None left out); ``more`` adds
    command-specific keys. A job command takes ``--json`` from ``output_options`` (its callback
    sends ``out`` to stderr) and calls this function last, when ``shown.json``; also
    when the job fails after it started: the object then says so, and the exit stays non-zero.
    """
    record: dict[str, Any] = {"command": command, "status": status, **ids,
                              "counts": dict(counts or {}),
                              "paths": {k: str(v) for k, v in (paths or {}).items() if v is not None}}
    record.update(more)
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


def emit_job_json(command: str, db: Path, *, job_id: str | None, kind: str | None = None,
                  id_key: str = "job_id", counts: Mapping[str, int | float | None] | None = None,
                  paths: Mapping[str, str | Path | None] | None = None, **more: Any) -> None:
    """``emit_json`` for a job the command just ran: its status as the ``jobs`` table stores it
    (with ``kind`` and no ``job_id``: the newest job of that kind), ``paths`` with ``db``."""
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
    """Click's own "Missing argument" usage error, for an argument that is optional only
    alongside ``--resume`` (same message and exit code as when it was required)."""
    param = next(p for p in ctx.command.params if p.name == name)
    raise click_exceptions.MissingParameter(ctx=ctx, param=cast(Any, param))  # typer's click copy


PreviewOption = Annotated[int, typer.Option(
    "--preview", min=0, metavar="N",
    help="At the end, a table of N sampled outputs per kind/task beside their persona (0: none; "
         "-q: none). personahub show ID prints one whole.")]

@dataclass(frozen=True)
class Shown:
    """How a command shows its result, as ``output_options`` hands it: ``preview``, the rows
    per kind of its end-of-job table (``--preview``; 0 for a command that takes none), and
    ``json``, whether ``--json`` was given."""

    preview: int = 0
    json: bool = False


#: the output options, in ``--help`` order: (flag, typer parameter, ``Shown`` field)
_OUTPUT_OPTIONS = {
    "preview": Injected("--preview", inspect.Parameter(
        "preview", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_PREVIEW,
        annotation=PreviewOption), "preview"),
    "json": Injected("--json", inspect.Parameter(
        "as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption), "json")}


def output_options(*, preview: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a job command ``--json`` (and ``--preview`` when ``preview``) as one value: the
    command declares a keyword-only ``shown: Shown`` parameter (before ``engine``), and this
    decorator puts the shared ``PreviewOption`` and ``JsonOption`` in its place in the signature
    typer reads, then hands the command their values as ``shown`` (``shown.preview``,
    ``shown.json``). A command listing either option itself is refused.

    Returns:
        A decorator for the command function (below ``engine_options``).
    """
    options = [_OUTPUT_OPTIONS["preview"]] if preview else []
    options.append(_OUTPUT_OPTIONS["json"])

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        return inject_options(func, "shown", "Shown", options, lambda given: Shown(**given))

    return decorate


PREVIEW_SOURCE_CHARS = 80  # a preview row's persona (or text) at most, on one line
PREVIEW_OUTPUT_CHARS = 240  # and its output


def print_preview(what: str, owner: str, per_kind: int, *, db: Path) -> None:
    """The end-of-job table of sampled rows (``analysis.preview``): ``what`` is job, run,
    corpus or expansion, ``owner`` its id, read over a read-only connection to ``db`` (the job
    has closed its own). On stderr with the other chatter (``-q`` leaves it out); nothing when
    ``per_kind`` is 0 or there is nothing to show."""
    if per_kind < 1 or verbosity() < 0 or not Path(db).exists():
        return
    from rich.table import Table

    from personahub.analysis import preview as previews
    from personahub.core.store import connect

    load = {"job": previews.job_preview, "run": previews.run_preview,
            "corpus": previews.corpus_preview, "expansion": previews.expansion_preview}[what]
    con = connect(db, read_only=True)
    try:
        preview = load(con, owner, per_kind)
    finally:
        con.close()
    if not preview.samples:
        return
    counts = ", ".join(f"{min(per_kind, n)} of {n} {kind}" for kind, n in preview.totals.items())
    kinds = len(preview.totals) > 1  # one kind: the title names it; else above each id
    table = Table(title=f"preview of {preview.title}: {counts}", title_justify="left",
                  show_lines=True)
    # an id is what show takes: never wrapped or cut (the text columns give way)
    table.add_column("kind / id" if kinds else "id", no_wrap=True)
    table.add_column(preview.source_label)
    table.add_column(preview.output_label)
    for sample in preview.samples:
        output = previews.clip(sample.output, PREVIEW_OUTPUT_CHARS)
        if sample.is_duplicate:
            output = f"(near-duplicate of {sample.duplicate_of}) {output}"
        table.add_row(f"{sample.kind}\n{sample.item_id}" if kinds else sample.item_id,
                      previews.clip(sample.source, PREVIEW_SOURCE_CHARS), output)
    console.print(table, highlight=False)
    say(f"  personahub show {preview.samples[0].item_id} --db {db}  "
        "prints one whole; --preview 0 leaves this table out")


def run_counts(summary: Any) -> dict[str, int]:
    """A run's counts for ``--json``."""
    return {"agents": summary.agents, "steps": summary.steps,
            "emissions": sum(summary.emissions_by_kind.values()), "messages": summary.messages,
            "survey_answers": summary.answers, "duplicates": summary.duplicates,
            "failed_actions": summary.failed_actions, "llm_calls": sum(summary.calls.values())}


def summary_counts(summary: Any) -> dict[str, int]:
    """The whole-number fields of a spec's summary (a dataclass), for ``--json``."""
    import dataclasses

    if not dataclasses.is_dataclass(summary):
        return {}
    values = {f.name: getattr(summary, f.name) for f in dataclasses.fields(summary)}
    return {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}


# --- --batch (pipelines/provider_batch_jobs.py; docs/batch.md) ------------------------------------


def batch_engine(batch: bool, batch_size: int | None, window: str, fallback: str,
                 batch_file: Path | None, poll_s: float, *,
                 online_size: int = DEFAULT_ONLINE_SIZE) -> dict[str, Any]:
    """The engine settings of the batch options (a job config's ``BatchFields``);
    ``online_size``: the command's own items per transaction online."""
    if not batch and batch_file is None:
        return {"batch_size": batch_size or online_size}
    return {"batch": batch, "batch_file": None if batch_file is None else str(batch_file),
            "batch_window": window, "batch_fallback": fallback, "batch_poll_s": poll_s,
            "batch_size": batch_size or DEFAULT_BATCH_SIZE}


def batch_progress(bar: Any, task: Any, label: str) -> Callable[[str, int, int | None], None]:
    """A progress hook that shows a batch's state (``batch ID in_progress 40/64``) beside the
    label, and the items done as the bar."""

    def hook(phase: str, done: int, total: int | None) -> None:
        if phase.startswith("batch "):
            bar.update(task, description=f"{label} · {phase}")
        else:
            bar.update(task, completed=done, total=total, description=label)

    return hook


#: the exit code of a resume whose job still waits for its batch file's results (docs/cli.md)
EXIT_AWAITING = 3


@contextmanager
def awaiting_results() -> Iterator[None]:
    """A job that wrote its batch file ends here: what to do next, exit 0. A job resumed while
    its batch file still waits for results did nothing: the same line, exit ``EXIT_AWAITING``
    (not an error, and not done: a script polling with ``personahub resume`` can tell)."""
    try:
        yield
    except AwaitingResults as exc:
        say(("awaiting results:", "yellow"), f" {exc}")
        raise typer.Exit(EXIT_AWAITING if isinstance(exc, StillAwaiting) else 0) from None

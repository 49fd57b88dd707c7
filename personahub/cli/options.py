"""Options several commands share, each declared once, and the decorators that add them.

engine_options hands a command its engine options as one Engine; output_options hands it
--json and --preview as one Shown."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import typer

from personahub.analysis.preview import DEFAULT_PREVIEW
from personahub.cli.common import json_mode
from personahub.core.engine_options import (
    BATCH,
    BATCH_PANEL,
    ENGINE_OPTIONS,
    EXECUTOR_PANEL,
    MODEL_PANEL,
    SAMPLING,
    default,
)
from personahub.core.errors import UsageError

if TYPE_CHECKING:  # LangChain takes seconds to import: only commands that call a model load it
    from personahub.models.adaptive_limit import Concurrency as _ConcurrencyValue
else:  # typer reads annotations at run time and takes no Union: the parser gives the value
    _ConcurrencyValue = Any


# The choices, as the layers below list them (tests/cli/test_usage_errors.py compares them):
CacheMode = Literal["off", "record", "replay"]  # personahub/models/cache.py


StructuredSetting = Literal["auto", "json_schema", "json_object", "tools", "prompt"]  # llm/structured


ExecutorName = Literal["local", "ray"]  # personahub/executors


def engine_option(field: str, **more: Any) -> Any:
    """The typer option for one engine config field, as core.engine_options declares it.

    `more` passes typer a parser or callback. Every command shares this one object, so no
    command can declare the option differently."""
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
    """--concurrency: a number >= 1, or auto (a usage error else)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) < 1:
        raise typer.BadParameter(f"{value!r} is not a number >= 1 nor 'auto'")
    return int(text)


def _failed_share(value: float | None) -> float | None:
    """--max-failed-share in (0, 1], else a usage error (exit 2) naming the flag."""
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


#: each engine option's command parameter type, Annotated[type, typer.Option(...)], by
#: config field: built once, and every command taking the option gets this very object
#: (through engine_options)
ENGINE_PARAMS: Mapping[str, Any] = MappingProxyType({
    field: Annotated[_VALUE_TYPES[field], engine_option(field, **_PARSING.get(field, {}))]
    for field in ENGINE_OPTIONS})


DEFAULT_ONLINE_SIZE = 64  # items per transaction online


DEFAULT_BATCH_SIZE = 1000  # requests per provider batch (and items per transaction) with --batch


def batch_size_option(per: str, online: int) -> Any:
    """The --batch-size option engine_options(batch_size=(per, online)) gives a command,
    in the Batch panel.

    Args:
        per: what one transaction holds, capitalised ("Items").
        online: the command's items per transaction online, stated in the help beside the
            provider batch's default.

    Returns:
        The typer option.
    """
    return typer.Option(min=1, rich_help_panel=BATCH_PANEL,
                        help=f"{per} per transaction (default {online}); with --batch also the "
                             f"most requests in one provider batch (default {DEFAULT_BATCH_SIZE}).")


#: --fresh of the job commands that find an unfinished job by its settings
FreshOption = Annotated[bool, typer.Option(
    help="Start a new job even if an unfinished one has the same settings (it is marked "
         "superseded).")]


def resume_option(metavar: str, keeps: str) -> Any:
    """The --resume option of a job command, declared once in one wording.

    Args:
        metavar: what the option takes (JOB_ID, or the id a kind finds its job by).
        keeps: what the resumed job keeps from its start, and anything else it does.

    Returns:
        The typer option, for Annotated[str | None, resume_option(...)] = None.
    """
    return typer.Option("--resume", metavar=metavar,
                        help=f"Go on with the stopped job {metavar}; it keeps {keeps}.")


#: the panels of --help a command can take whole (engine_options("model", ...))
ENGINE_GROUPS = {"model": MODEL_PANEL, "executor": EXECUTOR_PANEL, "batch": BATCH_PANEL}


def engine_fields(*taken: str) -> tuple[str, ...]:
    """Expand group names (ENGINE_GROUPS) and field names into config fields, in order."""
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
    """The engine options a command was given, read as attributes (engine.timeout_s).

    engine_options hands this to the command as one value, so no command lists the options
    one by one."""

    given: Mapping[str, Any]
    online_size: int = DEFAULT_ONLINE_SIZE

    def __getattr__(self, field: str) -> Any:
        given = self.__dict__.get("given", {})
        if field in given:
            return given[field]
        raise AttributeError(f"this command takes no engine option {field!r}")

    @property
    def flags(self) -> ModelFlags:
        """The generation flags, with defaults for those the command does not take."""
        return ModelFlags(**{k: self.given.get(k, default(k)) for k in SAMPLING})

    def settings(self, *, llm: bool = False) -> dict[str, Any]:
        """The options given, as job config keywords, minus the model, generation flags and
        batch options (see flags and batching) and an unset max_failed_share.

        With llm=True, the resolved model spec is added too (--llm, PERSONAHUB_LLM or
        offline)."""
        settings = {k: v for k, v in self.given.items()
                    if k not in ("llm", *SAMPLING, *BATCH, "batch_size")
                    and not (k == "max_failed_share" and v is None)}
        if llm:
            from personahub.models.client import resolve_spec

            settings["llm"] = resolve_spec(self.given.get("llm"))
        return settings

    def batching(self, batch_size: int | None = None) -> dict[str, Any]:
        """The batch options as job config keywords (batch_engine): the --batch-size
        given (or batch_size, a command's own), and the command's online size."""
        size = batch_size if batch_size is not None else self.given.get("batch_size")
        return batch_engine(self.given["batch"], size, self.given["batch_window"],
                            self.given["batch_fallback"], self.given.get("batch_file"),
                            self.given["batch_poll_s"], online_size=self.online_size)


class Injected(NamedTuple):
    """One shared typer parameter a decorator puts in a command's signature: its flag (for the
    error naming it), the parameter typer reads, and the key its value is handed on by."""

    flag: str
    param: inspect.Parameter
    key: str


def inject_options(func: Callable[..., Any], place: str, kind: str, options: Sequence[Injected],
                   collect: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """Wrap a command so typer sees shared options in place of one bundled parameter.

    The shared parameters go where `func` declares the keyword-only parameter `place`, in
    the given order (their --help order). At call time their values, by key, go through
    `collect`, and the result is passed as `place`. engine_options and output_options
    both use this.

    Raises:
        TypeError: func has no keyword-only `place`, or declares one of the options itself.
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
    """Give a command the chosen engine options, bundled as one Engine value.

    The command declares a keyword-only `engine: Engine` parameter; typer sees each shared
    option there instead, in --help order.

    Args:
        taken: group names (model, executor, batch) and config field names.
        without: config fields of those groups the command does not take.
        batch_size: (per, online) adds --batch-size (batch_size_option): `per` names
            what a transaction holds, `online` how many by default. Engine.batching()
            reads both.

    Returns:
        A decorator for the command function (below one_line_errors).
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
    """Check --embedder (report, diversity) as it is parsed, before any database opens.

    An unknown spec is a usage error (exit 2) naming the flag; the check itself is
    personas.embedding.check_embedder_spec, shared with the library."""
    from personahub.personas.embedding import check_embedder_spec

    try:
        check_embedder_spec(value)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def embedder_spec_or_none(value: str) -> str:
    """personas dedup --embedder: as embedder_spec, or "none" (skip stage 2)."""
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
        """As LLMSettings / job option keyword arguments."""
        return {"structured": self.structured, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "top_p": self.top_p}


#: synthesize's and calibrate's --carve, declared once (personas.carve parses each condition)
CarveOption = Annotated[list[str] | None, typer.Option(
    "--carve", help="Persona condition KEY OP VALUE as in personas sample -w (OP one of = != >= "
                    "<= > < ~), e.g. \"age>30\" or \"occupation~nurse\"; repeat to require "
                    "several; each narrows the personas drawn.")]


#: run's and experiment's --archetype-elicit, declared once (RunConfig checks the value)
ArchetypeElicitOption = Annotated[str | None, typer.Option(
    "--archetype-elicit", metavar="HOW",
    help="How an archetype's answer distribution is elicited: 'stated' (its representative "
         "states the shares, one call) or 'sample:N' (N of its asked members answer; "
         "default: the scenario's, else stated).")]


JsonOption = Annotated[bool, typer.Option(
    "--json", callback=json_mode,
    help="When done, print one JSON object on stdout: ids, status, counts, paths (what the "
         "command prints there otherwise goes to stderr).")]


PreviewOption = Annotated[int, typer.Option(
    "--preview", min=0, metavar="N",
    help="At the end, a table of N sampled outputs per kind/task beside their persona (0: none; "
         "-q: none). personahub show ID prints one whole.")]


@dataclass(frozen=True)
class Shown:
    """How a command shows its result, as output_options hands it.

    preview is the rows per kind in the end-of-job table (0 if the command takes no
    --preview); json says whether --json was given."""

    preview: int = 0
    json: bool = False


#: the output options, in --help order: (flag, typer parameter, Shown field)
_OUTPUT_OPTIONS = {
    "preview": Injected("--preview", inspect.Parameter(
        "preview", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_PREVIEW,
        annotation=PreviewOption), "preview"),
    "json": Injected("--json", inspect.Parameter(
        "as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption), "json")}


def output_options(*, preview: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a job command --json (and --preview if asked) bundled as one Shown value.

    The command declares a keyword-only `shown: Shown` parameter, before `engine`. A
    command that declares either option itself is refused.

    Returns:
        A decorator for the command function (below engine_options).
    """
    options = [_OUTPUT_OPTIONS["preview"]] if preview else []
    options.append(_OUTPUT_OPTIONS["json"])

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        return inject_options(func, "shown", "Shown", options, lambda given: Shown(**given))

    return decorate


def batch_engine(batch: bool, batch_size: int | None, window: str, fallback: str,
                 batch_file: Path | None, poll_s: float, *,
                 online_size: int = DEFAULT_ONLINE_SIZE) -> dict[str, Any]:
    """The batch options as engine settings (a job config's BatchFields).

    online_size is the command's own items per transaction when not batching."""
    if not batch and batch_file is None:
        return {"batch_size": batch_size or online_size}
    return {"batch": batch, "batch_file": None if batch_file is None else str(batch_file),
            "batch_window": window, "batch_fallback": fallback, "batch_poll_s": poll_s,
            "batch_size": batch_size or DEFAULT_BATCH_SIZE}

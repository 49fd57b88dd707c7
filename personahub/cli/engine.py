"""The engine options a model command takes (model, generation, executor, cache, rate, batch),
as typer options built from core.engine_options, and engine_options, which hands them to a
command as one Engine."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from personahub.cli.common import renamed_flag
from personahub.cli.options import Injected, inject_options
from personahub.core.engine_options import (
    BATCH,
    BATCH_PANEL,
    ENGINE_OPTIONS,
    EXECUTOR_PANEL,
    MODEL_PANEL,
    SAMPLING,
    EngineOption,
    default,
)
from personahub.core.errors import UsageError

if TYPE_CHECKING:  # LangChain takes seconds to import: only commands that call a model load it
    from personahub.models.adaptive_limit import Concurrency as _ConcurrencyValue
else:  # typer reads annotations at run time and takes no Union: the parser gives the value
    _ConcurrencyValue = object


# The choices, as the layers below list them (tests/cli/test_usage_errors.py compares them):
CacheMode = Literal["off", "record", "replay"]  # personahub/models/cache.py


StructuredSetting = Literal["auto", "json_schema", "json_object", "tools", "prompt"]  # llm/structured


ExecutorName = Literal["local", "ray"]  # personahub/executors


@dataclass(frozen=True)
class OptionCheck:
    """An engine option's own check as typer runs it: a value refused is a usage error (exit 2) naming
    the flag, in the words the API's refusal uses.

    --help reads the bounds from here (cli.helpfmt), so it shows what the check accepts.
    """

    option: EngineOption

    @property
    def low(self) -> float | None:
        return self.option.low

    @property
    def high(self) -> float | None:
        return self.option.high

    @property
    def above(self) -> float | None:
        return self.option.above

    def value(self, value: object) -> object:
        """Return the value the option's check gives, or raise typer's usage error.

        None (a flag not given where a command means the job's) passes."""
        if value is None:
            return None
        try:
            return self.option.check(value)
        except UsageError as exc:
            raise typer.BadParameter(str(exc).removeprefix(f"{self.option.flag} ")) from None


def engine_option(field: str, **more: Any) -> Any:
    """Build the typer option for one engine config field, as core.engine_options declares it.

    A checked option's values go through its check (OptionCheck): as typer's parser where the
    option parses text (--concurrency), else as its callback. `more` passes typer anything
    else. Every command shares this one object, so no command can declare the option
    differently."""
    option = ENGINE_OPTIONS[field]
    if option.checked:
        check = OptionCheck(option).value
        more = {("parser" if option.parse is not None else "callback"): check, **more}
    return typer.Option(option.flag, help=option.help, rich_help_panel=option.panel,
                        envvar=option.envvar, metavar=option.metavar, **more)


# What typer parses each engine option's value into (typer reads these types at run time).
_VALUE_TYPES: dict[str, object] = {
    "llm": str | None, "concurrency": _ConcurrencyValue, "timeout_s": float,
    "offline_latency_s": float, "cache": CacheMode, "rps": float | None,
    "structured": StructuredSetting, "max_tokens": int | None, "temperature": float | None,
    "top_p": float | None, "max_failed_share": float | None, "executor": ExecutorName,
    "ray_address": str | None, "ray_workers": int | None, "provider_batch": bool,
    "provider_batch_window": str, "provider_batch_fallback": Literal["batch", "online"],
    "provider_batch_file": Path | None, "provider_batch_poll_s": float}


#: the key a value given under an option's former flag is handed on by, before its field's name
OLD_KEY = "old:"


def old_flag_param(field: str) -> Injected:
    """Return the hidden parameter of an option's former flag (e.g. --batch for --provider-batch).

    It takes what the option takes, through the same check; Engine folds its value into the
    field's (fold_old_flags)."""
    option = ENGINE_OPTIONS[field]
    assert option.old_flag is not None
    more: dict[str, Any] = {}
    if option.checked:
        more["parser" if option.parse is not None else "callback"] = OptionCheck(option).value
    annotation: object = Annotated[_VALUE_TYPES[field] | None,  # type: ignore[operator]
                                   typer.Option(option.old_flag, hidden=True, **more)]
    return Injected(option.old_flag, inspect.Parameter(
        f"former_{option.param}", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=annotation), OLD_KEY + field)


def fold_old_flags(given: dict[str, Any]) -> dict[str, Any]:
    """Return the options given, a value under a former flag moved to its field (one deprecation
    line on stderr; the old and the new flag at once is a usage error)."""
    for key in [k for k in given if k.startswith(OLD_KEY)]:
        field = key.removeprefix(OLD_KEY)
        old_value = given.pop(key)
        option = ENGINE_OPTIONS[field]
        value = given[field]
        chosen = renamed_flag(None if value == option.command_default else value, old_value,
                              old=str(option.old_flag), new=option.flag)
        if chosen is not None:
            given[field] = chosen
    return given


#: each engine option's command parameter type, Annotated[type, typer.Option(...)], by
#: config field: built once, and every command taking the option gets this very object
#: (through engine_options)
ENGINE_PARAMS: Mapping[str, object] = MappingProxyType({
    field: Annotated[_VALUE_TYPES[field], engine_option(field)] for field in ENGINE_OPTIONS})


DEFAULT_ONLINE_SIZE = 64  # items per transaction online


DEFAULT_BATCH_SIZE = 1000  # requests per provider batch (and items per transaction) with --provider-batch


def batch_size_option(per: str, online: int) -> object:
    """Return the --batch-size option engine_options(batch_size=(per, online)) gives a command,
    in the Batch panel.

    Args:
        per: what one transaction holds, capitalised ("Items").
        online: the command's items per transaction online, stated in the help beside the
            provider batch's default.

    Returns:
        The typer option.
    """
    return typer.Option(min=1, rich_help_panel=BATCH_PANEL,
                        help=f"{per} per transaction (default {online}); with --provider-batch also the "
                             f"most requests in one provider batch (default {DEFAULT_BATCH_SIZE}).")


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
        """Return the options given, as job config keywords, minus the model, generation flags and
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
        """Return the batch options as job config keywords (batch_engine): the --batch-size
        given (or batch_size, a command's own), and the command's online size."""
        size = batch_size if batch_size is not None else self.given.get("batch_size")
        return batch_engine(self.given["provider_batch"], size,
                            self.given["provider_batch_window"],
                            self.given["provider_batch_fallback"],
                            self.given.get("provider_batch_file"),
                            self.given["provider_batch_poll_s"], online_size=self.online_size)


def engine_options(*taken: str, without: tuple[str, ...] = (),
                   batch_size: tuple[str, int] | None = None
                   ) -> Callable[[Callable[..., object]], Callable[..., object]]:
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
    options += [old_flag_param(o.key) for o in list(options)
                if ENGINE_OPTIONS[o.key].old_flag is not None]
    online = DEFAULT_ONLINE_SIZE
    if batch_size is not None:
        per, online = batch_size
        size = Annotated[int | None, batch_size_option(per, online)]
        options.append(Injected("--batch-size", inspect.Parameter(
            "batch_size", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=size),
            "batch_size"))

    def decorate(func: Callable[..., object]) -> Callable[..., object]:
        return inject_options(func, "engine", "Engine", options,
                              lambda given: Engine(fold_old_flags(given), online_size=online))

    return decorate


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


def batch_engine(batch: bool, batch_size: int | None, window: str, fallback: str,
                 batch_file: Path | None, poll_s: float, *,
                 online_size: int = DEFAULT_ONLINE_SIZE) -> dict[str, object]:
    """Return the batch options as engine settings (a job config's BatchFields).

    online_size is the command's own items per transaction when not batching."""
    if not batch and batch_file is None:
        return {"batch_size": batch_size or online_size}
    return {"provider_batch": batch,
            "provider_batch_file": None if batch_file is None else str(batch_file),
            "provider_batch_window": window, "provider_batch_fallback": fallback,
            "provider_batch_poll_s": poll_s, "batch_size": batch_size or DEFAULT_BATCH_SIZE}

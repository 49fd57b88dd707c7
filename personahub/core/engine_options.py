"""The engine options, declared once: how a job asks its model, where its calls run and how they are sent.

Configs, the CLI and the API all take them from here, checks included: each option's `check` is
the one test of a value given for it, run by the typer callback and by every config that has
the field, so the command line and the API refuse and accept the same values. Plain data: no
typer, no model client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from personahub.core.errors import UsageError
from personahub.core.failures import DEFAULT_MAX_FAILED_SHARE
from personahub.core.validate import MAX_TOKENS, check_int, check_number

MODEL_PANEL = "Model options"
EXECUTOR_PANEL = "Executor options"
BATCH_PANEL = "Transactions and provider batches"
T = TypeVar("T")
AUTO = "auto"  # --concurrency auto: the limit follows the server (models/adaptive_limit.py)


# The offline engine ignores --concurrency on purpose: it answers in this process, with no server
# or connection pool to protect, so a limit would only queue calls; with --offline-latency it
# stands for a model whose every call waits that long at once (timed tests rely on that).
def check_concurrency(value: object, setting: str = "--concurrency") -> int | str:
    """Return a concurrency given as a whole number >= 1 or 'auto' (any case, as text too).

    Raises:
        UsageError: anything else, in one line naming the setting.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{setting} must be a whole number >= 1 or '{AUTO}', got {value!r}")
    return value


@dataclass(frozen=True)
class EngineOption:
    """One engine option: config field, CLI flag, defaults, help text, panel and bounds. The CLI default is
    None where a command means the job's.

    The bounds are inclusive (`low`, `high`) or exclusive below (`above`); `integer` options take
    whole numbers, and `parse` turns a value given as text into the one a config keeps
    (--concurrency). `check` applies them.
    """

    field: str
    flag: str
    default: Any
    help: str
    panel: str = MODEL_PANEL
    cli_default: Any = ...  # ...: the same as default
    low: float | None = None
    high: float | None = None
    above: float | None = None
    integer: bool = False
    parse: Callable[[object, str], Any] | None = None
    envvar: str | None = None
    metavar: str | None = None
    old_flag: str | None = None  # the flag's former name: a hidden, deprecated alias

    def __post_init__(self) -> None:
        if self.above is not None and self.low is not None:
            raise ValueError(f"{self.flag}: give low or above, not both")

    @property
    def param(self) -> str:
        """The command function's parameter name."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def command_default(self) -> Any:
        return self.default if self.cli_default is ... else self.cli_default

    @property
    def checked(self) -> bool:
        """Whether `check` tests a value at all (bounds or a parser); other options are names or
        choices their own modules check."""
        return self.parse is not None or self.integer or any(
            bound is not None for bound in (self.low, self.high, self.above))

    def check(self, value: object) -> Any:
        """Return a value given for this option as a config keeps it, or refuse it.

        None passes where the option's default is None (the server's or the kind's own).

        Args:
            value: what a command line or an API caller gave.

        Returns:
            The value (--concurrency's parsed), numbers as given.

        Raises:
            UsageError: a value out of bounds, not finite or of the wrong type, in one line
                that starts with the flag.
        """
        if value is None and self.default is None:
            return None
        if self.parse is not None:
            return self.parse(value, self.flag)
        if self.integer:
            check_int(value, self.flag, low=None if self.low is None else int(self.low),
                      high=None if self.high is None else int(self.high))
        elif self.checked:
            check_number(value, self.flag, low=self.low, high=self.high, above=self.above)
        return value


# in --help order within their panel
_OPTIONS = (
    EngineOption(
        "llm", "--llm", "offline", cli_default=None,
        help="Model: 'offline' (default), 'openai:<model>', an OpenAI-compatible base URL "
             "(http://host:port/v1?model=NAME), or several URLs comma-separated. "
             "Env: PERSONAHUB_LLM."),
    EngineOption(
        "concurrency", "--concurrency", 16, metavar="N|auto", parse=check_concurrency,
        help="Model calls in flight at most, per HTTP endpoint set, or 'auto': start at 2, grow "
             "while the server keeps up, halve on 429/503, timeouts or queueing (at most 64). "
             "The offline engine answers in process and ignores it."),
    EngineOption(
        "timeout_s", "--timeout", 60.0, low=0.1,
        help="Seconds before a model request is abandoned (one far slower than the server's "
             "recent answers is cut sooner and sent again). A call still failing after 2 x this "
             "+ 30 s of retries, or no answer to any call for that long, stops the command, "
             "resumably."),
    EngineOption(
        "offline_latency_s", "--offline-latency", 0.0, low=0,
        envvar="PERSONAHUB_OFFLINE_LATENCY",
        help="Seconds the offline engine waits per call (to simulate a slow model)."),
    EngineOption(
        "cache", "--cache", "off",
        help="Model answer cache: off, record (answer hits from the cache, record misses) or "
             "replay (cache only: no model call; a miss is an error)."),
    EngineOption(
        "rps", "--rps", None, low=0.001,
        help="Model requests per second at most (all endpoints together)."),
    EngineOption(
        "structured", "--structured", "auto",
        help="How the JSON schema is asked for: auto (learn per endpoint from the first "
             "refusal), json_schema, json_object, tools or prompt."),
    EngineOption(
        "max_tokens", "--max-tokens", None, low=1, high=MAX_TOKENS, integer=True,
        help="Output tokens per model call at most (default: per output kind, 160-700)."),
    EngineOption(
        "temperature", "--temperature", None, low=0, high=2,
        help="Sampling temperature (default: the server's)."),
    EngineOption(
        "top_p", "--top-p", None, above=0, high=1,
        help="Nucleus sampling top_p (default: the server's)."),
    EngineOption(
        "max_failed_share", "--max-failed-share", DEFAULT_MAX_FAILED_SHARE, cli_default=None,
        above=0, high=1,
        help="Stop when more than this share of a step's (or batch's) actions fail for the "
             "model's answers (invalid JSON, cut off at max_tokens, rejected by a check) after "
             "their one fresh sample; steps of fewer than 5 actions never stop for that. "
             "Endpoint failures stop at once whatever it says. Default 0.8; a resume keeps the "
             "job's."),
    EngineOption(
        "executor", "--executor", "local", panel=EXECUTOR_PANEL,
        help="Where the model calls run: local (this process) or ray (Ray Data workers; the "
             "[ray] extra). The rows are the same either way."),
    EngineOption(
        "ray_address", "--ray-address", None, panel=EXECUTOR_PANEL, envvar="RAY_ADDRESS",
        help="Ray cluster to use with --executor ray (default: a local Ray started for the "
             "job)."),
    EngineOption(
        "ray_workers", "--ray-workers", None, panel=EXECUTOR_PANEL, low=1, integer=True,
        help="Ray workers asking the model, each with its own --concurrency and --rps "
             "(default: one per CPU of the cluster)."),
    EngineOption(
        "provider_batch", "--provider-batch", False, panel=BATCH_PANEL, old_flag="--batch",
        help="Send the model calls as provider batches (the OpenAI Batch API: about half the "
             "price, results within the window). A resume polls the batches it made; see "
             "docs/batch.md."),
    EngineOption(
        "provider_batch_window", "--provider-batch-window", "24h", panel=BATCH_PANEL,
        old_flag="--batch-window",
        help="The provider batches' completion window (the provider's: 24h)."),
    EngineOption(
        "provider_batch_fallback", "--provider-batch-fallback", "batch", panel=BATCH_PANEL,
        old_flag="--batch-fallback",
        help="Where a provider batch's failed or expired requests go again: a follow-up "
             "provider batch, or online."),
    EngineOption(
        "provider_batch_file", "--provider-batch-file", None, panel=BATCH_PANEL,
        old_flag="--batch-file",
        help="Write the requests to this JSONL file (OpenAI Batch API format) and stop, the job "
             "awaiting_results; run it elsewhere (e.g. vllm run-batch) and bring the results in "
             "with `personahub provider-batch import`."),
    EngineOption(
        "provider_batch_poll_s", "--provider-batch-poll", 5.0, panel=BATCH_PANEL, low=0.001,
        old_flag="--batch-poll",
        help="Seconds before the first poll of a provider batch (the waits grow to 60)."),
)

#: every engine option by its config field name, in declaration order
ENGINE_OPTIONS: MappingProxyType[str, EngineOption] = MappingProxyType(
    {option.field: option for option in _OPTIONS})

#: the same, by command parameter name
BY_PARAM: MappingProxyType[str, EngineOption] = MappingProxyType(
    {option.param: option for option in _OPTIONS})

#: the generation settings (part of what a job makes, not how it runs)
SAMPLING = ("structured", "max_tokens", "temperature", "top_p")
#: the provider batch options
BATCH = ("provider_batch", "provider_batch_file", "provider_batch_window",
         "provider_batch_fallback", "provider_batch_poll_s")

#: engine fields by their former names (before schema version 3): a stored job config or an API
#: keyword under the old name still means the field
RENAMED_FIELDS: MappingProxyType[str, str] = MappingProxyType({
    "batch": "provider_batch", "batch_file": "provider_batch_file",
    "batch_window": "provider_batch_window", "batch_fallback": "provider_batch_fallback",
    "batch_poll_s": "provider_batch_poll_s"})


def renamed_fields(stored: Mapping[str, T]) -> dict[str, T]:
    """Return a stored job config with the engine fields' former names replaced by today's.

    A name given both ways keeps today's value.
    """
    config = dict(stored)
    for old, new in RENAMED_FIELDS.items():
        if old in config:
            value = config.pop(old)
            config.setdefault(new, value)
    return config


def default(field: str) -> Any:
    return ENGINE_OPTIONS[field].default


def defaults(*fields: str) -> dict[str, Any]:
    """Return the config defaults of some engine options, by name."""
    return {field: ENGINE_OPTIONS[field].default for field in fields}


def check_fields(config: object, *fields: str) -> None:
    """Check a config's engine fields with their options' checks, keeping what a parser made.

    Args:
        config: a (frozen) dataclass with engine fields.
        fields: the fields to check; none: every field of the config the table declares.

    Raises:
        UsageError: the first value refused, in one line naming its flag.
    """
    names = fields or tuple(f.name for f in dataclasses.fields(config)  # type: ignore[arg-type]
                            if f.name in ENGINE_OPTIONS)
    for name in names:
        option = ENGINE_OPTIONS[name]
        value = option.check(getattr(config, name))
        if option.parse is not None:
            object.__setattr__(config, name, value)

"""Every engine option is declared once: ``core/engine_options.py``.

* each command taking an engine option takes the one shared typer option built from the
  declaration (``cli.engine.engine_option``) with the declared default, never its own, and
  gets it from ``@engine_options``: no command lists an engine option parameter by hand;
* each config dataclass defaults an engine field to the declared default;
* the command line and every config accept and refuse the same values of each option, those
  its ``--help`` range says, in the same words;
* no public API function declares an engine option as a parameter of its own (``llm`` aside,
  with the declared default or None: the model a job recorded);
* the CLI and the API build equal configs from equal inputs, for every job kind.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.models import OptionInfo
from typer.testing import CliRunner

import personahub
from personahub import any_job, api, interviews, runtime
from personahub.cli import engine as cli_engine
from personahub.cli import helpfmt
from personahub.cli.app import app
from personahub.core.engine_options import BY_PARAM, ENGINE_OPTIONS
from personahub.core.errors import UsageError

# Options named like an engine option that are another option: (command, parameter) -> why.
NOT_ENGINE = {
    ("doctor", "timeout"): "the probe's own timeout, not a job's model timeout",
    ("resume", "cache"): "None keeps the resumed job's own cache mode",
    ("resume", "executor"): "None keeps the resumed job's own executor",
}


def flag_of(info: OptionInfo) -> Any:
    """An option's first flag (typer takes ``Option("--x")`` in ``Annotated`` as its default)."""
    return info.param_decls[0] if info.param_decls else info.default


def shared_infos() -> dict[int, str]:
    """id of each shared engine ``OptionInfo`` in ``cli.engine`` -> its flag."""
    found = {}
    for value in cli_engine.ENGINE_PARAMS.values():
        assert typing.get_origin(value) is typing.Annotated
        for meta in typing.get_args(value)[1:]:
            if isinstance(meta, OptionInfo) and \
                    flag_of(meta) in {o.flag for o in ENGINE_OPTIONS.values()}:
                found[id(meta)] = flag_of(meta)
    assert len(found) == len(ENGINE_OPTIONS)
    return found


def commands(typer_app: typer.Typer = app,
             prefix: str = "") -> Iterator[tuple[str, Callable[..., Any]]]:
    """(command path, function) of every command of the app (typer's own records: click's
    callbacks are typer's wrappers)."""
    for info in typer_app.registered_commands:
        assert info.callback is not None
        name = info.name or info.callback.__name__.replace("_", "-")
        yield f"{prefix} {name}".strip(), info.callback
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None
        yield from commands(group.typer_instance, f"{prefix} {group.name}".strip())


def redeclared(name: str, callback: Callable[..., Any]) -> list[str]:
    """The engine options ``callback`` declares otherwise than the shared declaration says."""
    shared = shared_infos()
    hints = typing.get_type_hints(callback, include_extras=True)
    problems = []
    for param in inspect.signature(callback).parameters.values():
        option = BY_PARAM.get(param.name)
        if option is None or (name.split(" ")[-1], param.name) in NOT_ENGINE:
            continue
        infos = [m for m in typing.get_args(hints.get(param.name))[1:] if isinstance(m, OptionInfo)]
        if not infos or shared.get(id(infos[0])) != option.flag:
            problems.append(f"{name}: {option.flag} is declared in the command, not shared")
        elif param.default != option.command_default:
            problems.append(f"{name}: {option.flag} defaults to {param.default!r}, the "
                            f"declaration to {option.command_default!r}")
    return problems


def listed_by_hand(name: str, callback: Callable[..., Any]) -> list[str]:
    """The engine options the command function, as written (under its decorators), lists as
    parameters itself instead of taking them from ``@engine_options``."""
    own = inspect.signature(inspect.unwrap(callback)).parameters
    return [f"{name}: {BY_PARAM[p].flag} is listed by hand" for p in own
            if p in BY_PARAM and (name.split(" ")[-1], p) not in NOT_ENGINE]


def test_every_command_takes_the_shared_engine_options() -> None:
    found = [p for name, cb in commands() for p in redeclared(name, cb) + listed_by_hand(name, cb)]
    assert found == []
    # and the commands that take model options at all were seen
    takes = {name for name, cb in commands()
             if "concurrency" in inspect.signature(cb).parameters}
    assert {"run", "synthesize", "judge", "interview", "calibrate", "personas from-text",
            "personas expand", "personas sample-population"} <= takes


# the shared parameter types, as a command would name them (typer reads them at run time)
SharedConcurrency = cli_engine.ENGINE_PARAMS["concurrency"]
SharedTopP = cli_engine.ENGINE_PARAMS["top_p"]


def test_a_command_declaring_its_own_engine_option_is_found() -> None:
    """The check above can fail: a command's own --concurrency, or a shared one with another
    default, is reported."""

    def own(concurrency: typing.Annotated[int, typer.Option("--concurrency")] = 16) -> None:
        """A command restating --concurrency."""

    def other_default(concurrency: SharedConcurrency = 8,  # type: ignore[valid-type]
                      top_p: SharedTopP = None) -> None:  # type: ignore[valid-type]
        """A command with the shared option and its own default."""

    def by_hand(concurrency: SharedConcurrency = 16,  # type: ignore[valid-type]
                *, engine: cli_engine.Engine) -> None:
        """A command listing the shared --concurrency itself, beside ``@engine_options``."""

    assert redeclared("own", own) == ["own: --concurrency is declared in the command, not shared"]
    assert redeclared("other", other_default) == [
        "other: --concurrency defaults to 8, the declaration to 16"]
    assert redeclared("by-hand", by_hand) == []  # shared, with its default: yet by hand
    assert listed_by_hand("by-hand", by_hand) == ["by-hand: --concurrency is listed by hand"]
    assert listed_by_hand("decorated", cli_engine.engine_options("model")(
        lambda *, engine: None)) == []
    with pytest.raises(TypeError, match="lists --concurrency itself"):
        cli_engine.engine_options("concurrency")(by_hand)



def test_engine_options_gives_batch_size_with_its_online_default() -> None:
    """engine_options(batch_size=(per, online)) adds --batch-size to the Batch panel; without it
    engine.batching() gives the online default, with it the value given."""
    got: list[cli_engine.Engine] = []
    toy = typer.Typer()

    @toy.command()
    @cli_engine.engine_options("batch", batch_size=("Things", 7))
    def command(n: int = 1, *, engine: cli_engine.Engine) -> None:
        got.append(engine)

    assert CliRunner().invoke(toy, []).exit_code == 0
    assert got[-1].batching() == {"batch_size": 7}
    assert CliRunner().invoke(toy, ["--batch-size", "3"]).exit_code == 0
    assert got[-1].batching() == {"batch_size": 3}
    assert got[-1].settings() == {}
    shown = CliRunner().invoke(toy, ["--help"], env={"COLUMNS": "200"}).output
    assert "Things per transaction (default 7)" in shown
    assert shown.index("Batch") < shown.index("--batch-size")

def test_engine_options_hands_the_command_one_engine() -> None:
    """The decorated command's typer signature holds the shared options, in the order asked
    (panels as given: --help lists them so), and the command gets their values as one
    ``Engine``."""
    got: list[cli_engine.Engine] = []
    toy = typer.Typer()

    @toy.command()
    @cli_engine.engine_options("model", "batch", without=("offline_latency_s",))
    def command(n: int = 1, *, engine: cli_engine.Engine) -> None:
        got.append(engine)

    params = list(inspect.signature(command).parameters)
    assert params[:4] == ["n", "llm", "concurrency", "timeout"]
    assert "offline_latency" not in params and "executor" not in params
    assert (params.index("max_failed_share") < params.index("provider_batch")
            < params.index("provider_batch_poll"))
    result = CliRunner().invoke(toy, ["--concurrency", "auto", "--top-p", "0.5", "--provider-batch",
                                      "--provider-batch-window", "1h", "--rps", "3"])
    assert result.exit_code == 0, result.output
    engine = got[-1]
    assert engine.concurrency == "auto" and engine.rps == 3.0 and engine.llm is None
    assert engine.flags == cli_engine.ModelFlags(top_p=0.5)
    assert engine.settings() == {"concurrency": "auto", "timeout_s": 60.0, "cache": "off",
                                 "rps": 3.0}
    assert engine.batching(None) == {
        "provider_batch": True, "provider_batch_file": None, "provider_batch_window": "1h",
        "provider_batch_fallback": "batch", "provider_batch_poll_s": 5.0,
        "batch_size": cli_engine.DEFAULT_BATCH_SIZE}
    with pytest.raises(AttributeError, match="executor"):
        _ = engine.executor
    result = CliRunner().invoke(toy, ["--max-failed-share", "0.5"])
    assert result.exit_code == 0, result.output
    assert got[-1].settings()["max_failed_share"] == 0.5
    assert CliRunner().invoke(toy, ["--max-failed-share", "2"]).exit_code == 2


def config_types() -> list[type]:
    from personahub.core.kernel import spec_for

    runtime.registered_kinds()
    return [spec.config_type for kind in runtime.registered_kinds()
            if (spec := spec_for(kind)) is not None and hasattr(spec, "config_type")]


def test_every_config_defaults_to_the_declared_defaults() -> None:
    from personahub.models.embedders import EmbedderSettings, OpenAIEmbedder
    from personahub.models.generation import Generation
    from personahub.models.offline import OFFLINE_MODEL_NAME
    from personahub.models.settings import LLMSettings
    from personahub.pipelines.dedup import DedupJobConfig
    from personahub.pipelines.interview import InterviewConfig
    from personahub.pipelines.synthesize import SynthConfig

    assert ENGINE_OPTIONS["llm"].default == OFFLINE_MODEL_NAME
    types = {*config_types(), SynthConfig, DedupJobConfig, InterviewConfig, LLMSettings,
             Generation, EmbedderSettings, OpenAIEmbedder}
    assert len(types) >= 13
    for config_type in types:
        for field in dataclasses.fields(config_type):
            option = ENGINE_OPTIONS.get("llm" if field.name == "spec" else field.name)
            if option is not None and field.default is not dataclasses.MISSING:
                assert field.default == option.default, (config_type.__name__, field.name)



# --- the CLI and every config accept and refuse the same values ---------------------------------


def config_makers(field: str) -> dict[str, Callable[[Any], Any]]:
    """Per config that has ``field``: make it with that field set (else its sample's values).

    Each job kind's config is built from its row's sample (a run without its scenario; a dedup
    with a model embedder, which --rps applies to), beside the model layer's settings."""
    from personahub.models.embedders import EmbedderSettings, OpenAIEmbedder
    from personahub.models.generation import Generation
    from personahub.models.settings import LLMSettings
    from personahub.pipelines.labels import SHIPPED

    made: dict[str, Callable[[Any], Any]] = {}
    for kind, row in SHIPPED.items():
        config_type = runtime.registered_spec(kind).config_type
        names = {f.name for f in dataclasses.fields(config_type)}
        base = {k: v for k, v in row.sample.items() if k in names and k != "scenario"}
        if kind == "dedup":
            base["embedder"] = "openai:text-embedding-3-small"
        if field in names:
            made[kind] = lambda value, t=config_type, b=base: t(**b, **{field: value})
    extra: dict[str, tuple[type, dict[str, Any]]] = {
        "LLMSettings": (LLMSettings, {}), "Generation": (Generation, {}),
        "EmbedderSettings": (EmbedderSettings, {"spec": "openai:text-embedding-3-small"}),
        "OpenAIEmbedder": (OpenAIEmbedder, {"model": "text-embedding-3-small"})}
    for name, (config_type, base) in extra.items():
        if field in {f.name for f in dataclasses.fields(config_type)}:
            made[name] = lambda value, t=config_type, b=base: t(**b, **{field: value})
    return made


def shared_param(field: str) -> Any:
    """The click parameter of the shared typer option for ``field``, as a command holds it."""
    toy = typer.Typer()

    @toy.command()
    @cli_engine.engine_options(field)
    def command(*, engine: cli_engine.Engine) -> None:
        """Take one engine option."""

    flag = ENGINE_OPTIONS[field].flag
    return next(p for p in typer.main.get_command(toy).params if flag in p.opts)


def cli_refusal(field: str, text: str) -> str | None:
    """What the shared option says of ``text`` on the command line: None if it takes it."""
    toy = typer.Typer()

    @toy.command()
    @cli_engine.engine_options(field)
    def command(*, engine: cli_engine.Engine) -> None:
        """Take one engine option."""

    result = CliRunner().invoke(toy, [ENGINE_OPTIONS[field].flag, text])
    if result.exit_code == 0:
        return None
    assert result.exit_code == 2, result.output
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # typer's box
    lead = re.escape(f"Invalid value for '{ENGINE_OPTIONS[field].flag}'")
    found = re.search(lead + r"(?: \(env var: '[^']*'\))?: (.*)", said)
    assert found is not None, said
    return found[1]


def api_refusal(make: Callable[[Any], Any], value: Any) -> str | None:
    """What a config says of ``value``: None if it takes it."""
    try:
        make(value)
    except UsageError as exc:
        return str(exc)
    return None


NUMBER = r"(-?[\d.]+(?:e[-+]?\d+)?)"


def parse_range(shown: str) -> tuple[float | None, bool, float | None]:
    """(low, whether low is allowed, high) of a --help range: x>=0.1, x>0, x<=9, 0<x<=1."""
    if found := re.fullmatch(rf"x(>=|>){NUMBER}", shown):
        return float(found[2]), found[1] == ">=", None
    if found := re.fullmatch(rf"x<={NUMBER}", shown):
        return None, False, float(found[1])
    found = re.fullmatch(rf"{NUMBER}(<=|<)x<={NUMBER}", shown)
    assert found is not None, shown
    return float(found[1]), found[2] == "<=", float(found[3])


def edges(shown: str, whole: bool) -> list[tuple[float, bool]]:
    """(value, accepted) at and past each bound of a --help range, and one inside it."""
    low, low_allowed, high = parse_range(shown)
    step = 1 if whole else 0.5
    found: list[tuple[float, bool]] = []
    if low is not None:
        found += [(low, low_allowed), (low - 1, False)]
        if low > 0 and not whole:
            found.append((low / 2, False))  # a timeout of 0.05 s
    if high is not None:
        found += [(high, True), (high + step, False)]
    inside = ((low + high) / 2 if low is not None and high is not None
              else low + step if low is not None else (high or 0) - step)
    found.append((inside, True))
    return [(int(value) if whole else value, accepted) for value, accepted in found]


NUMBERS = [field for field, o in ENGINE_OPTIONS.items()
           if cli_engine._VALUE_TYPES[field] in (int, float, int | None, float | None)]


@pytest.mark.parametrize("field", NUMBERS)
def test_the_cli_and_every_config_take_what_the_help_says(field: str) -> None:
    """Each number option's --help states its range, and at each bound and past it the command
    line and every config with the field accept or refuse alike, in the same words (the CLI's
    after its "Invalid value for" lead, the API's after the flag); nan and inf are refused."""
    param = shared_param(field)
    shown = helpfmt.bounds(param)
    assert shown, f"{ENGINE_OPTIONS[field].flag}: --help states no range"
    whole = helpfmt.value_label(param) == "N"
    cases = edges(shown, whole) + ([] if whole else [(math.nan, False), (math.inf, False)])
    makers = config_makers(field)
    assert makers, field
    for value, accepted in cases:
        cli = cli_refusal(field, str(value))
        assert (cli is None) == accepted, (shown, value, cli)
        for name, make in makers.items():
            api = api_refusal(make, value)
            assert (api is None) == accepted, (name, value, api)
            if api is not None and cli is not None:
                flag = ENGINE_OPTIONS[field].flag
                assert api.startswith(f"{flag} ") and \
                    api.removeprefix(f"{flag} ").partition(", got")[0] == \
                    cli.partition(", got")[0], (name, value, api, cli)


@pytest.mark.parametrize("text, value, accepted", [
    ("0", 0, False), ("-2", -2, False), ("1.5", 1.5, False), ("many", "many", False),
    ("1", 1, True), ("auto", "auto", True), ("AUTO", "AUTO", True)])
def test_the_cli_and_every_config_take_the_same_concurrency(text: str, value: Any,
                                                            accepted: bool) -> None:
    """--concurrency takes a whole number >= 1 or auto, on the command line and in every
    config (an evaluation's included), and keeps the number or auto it parsed."""
    cli = cli_refusal("concurrency", text)
    assert (cli is None) == accepted, cli
    makers = config_makers("concurrency")
    assert {"evaluation", "synthesis", "LLMSettings"} <= set(makers)
    for name, make in makers.items():
        assert (api_refusal(make, value) is None) == accepted, (name, value)
        if accepted:
            assert make(value).concurrency == (1 if value == 1 else "auto"), name


def test_the_issue_s_values_are_refused_everywhere() -> None:
    """The values the command line refused and a config took: a timeout of 0.05 s (and an
    evaluation's of -1 s), 0.0005 requests per second, top_p 0, an evaluation's concurrency
    of 0."""
    from personahub.pipelines.evaluate import EvalConfig
    from personahub.pipelines.synthesize import SynthConfig

    evaluation = {"job": "j1", "solvers": ("offline",), "test_n": 3, "agree": 1}
    refused = [(lambda: SynthConfig(task="instruction", timeout_s=0.05), "--timeout"),
               (lambda: EvalConfig(**evaluation, timeout_s=-1), "--timeout"),
               (lambda: SynthConfig(task="instruction", rps=0.0005), "--rps"),
               (lambda: SynthConfig(task="instruction", top_p=0), "--top-p"),
               (lambda: EvalConfig(**evaluation, concurrency=0), "--concurrency")]
    for make, flag in refused:
        with pytest.raises(UsageError, match=f"^{flag} must be"):
            make()
    for args in (["--timeout", "0.05"], ["--rps", "0.0005"], ["--top-p", "0"]):
        result = CliRunner().invoke(app, ["synthesize", "instruction", "--db", "x.duckdb", *args])
        assert result.exit_code == 2 and f"'{args[0]}': must be" in result.output, result.output
    shown = CliRunner().invoke(app, ["synthesize", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--top-p X .*\[0<x<=1\]", shown)


API_MODULES = (api, any_job, interviews)


def test_no_api_function_declares_an_engine_option() -> None:
    """API functions take engine options through ``**options`` (checked against the
    configs' fields), ``llm`` aside: its default is the declared one or None."""
    found = []
    for module in API_MODULES:
        for name, func in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(func) or \
                    func.__module__ != module.__name__:
                continue
            for param in inspect.signature(func).parameters.values():
                if param.name not in ENGINE_OPTIONS or param.default is inspect.Parameter.empty:
                    continue
                if param.name == "llm" and param.default in (ENGINE_OPTIONS["llm"].default, None):
                    continue
                found.append(f"{module.__name__}.{name}({param.name}=...)")
    assert found == []


# --- the CLI and the API build the same config -------------------------------------------------


class Captured(Exception):
    """What ``runtime.run`` was given, instead of running the job."""

    def __init__(self, kind: str, config: Any) -> None:
        super().__init__(kind)
        self.kind, self.config = kind, config


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(spec: Any, config: Any, db: Any, **_: Any) -> Any:
        raise Captured(spec.kind, config)

    monkeypatch.setattr(runtime, "run", run)


def cli_config(*args: object) -> Captured:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, Captured), result.output
    return result.exception


def api_config(call: Callable[[], Any]) -> Captured:
    with pytest.raises(Captured) as caught:
        call()
    return caught.value


# the engine options given to every command taking them: flag value, and the API's keyword value
GIVEN: dict[str, tuple[str, Any]] = {
    "concurrency": ("3", 3), "timeout_s": ("7", 7.0), "rps": ("2", 2.0),
    "max_failed_share": ("0.5", 0.5), "cache": ("record", "record"),
    "structured": ("json_object", "json_object"), "max_tokens": ("99", 99),
    "temperature": ("0.5", 0.5), "top_p": ("0.9", 0.9), "offline_latency_s": ("0.01", 0.01)}


def given_options(command: str) -> tuple[list[str], dict[str, Any]]:
    """The flags of ``GIVEN`` that ``command`` takes, and the same as API keywords."""
    params = inspect.signature(dict(commands())[command]).parameters
    flags: list[str] = []
    kwargs = {}
    for field, (text, value) in GIVEN.items():
        option = ENGINE_OPTIONS[field]
        if option.param in params:
            flags += [option.flag, text]
            kwargs[field] = value
    return flags, kwargs


# fields that say who started the job or hold a live object, not what it is
NOT_COMPARED = {"origin", "scenario", "live_control"}


def fields_of(config: Any) -> dict[str, Any]:
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()
            if k not in NOT_COMPARED}


def assert_same(cli: Captured, made: Captured) -> None:
    assert cli.kind == made.kind
    assert type(cli.config) is type(made.config)
    assert fields_of(cli.config) == fields_of(made.config)


def _marginals(tmp_path: Path) -> Path:
    path = tmp_path / "marginals.json"
    path.write_text('{"age": {"18-29": 0.5, "30-49": 0.5}}', encoding="utf-8")
    return path


def kinds(tmp_path: Path, scenario: Path, corpus: Path) -> dict[str, tuple[list[object],
                                                                               Callable[[], Any]]]:
    """Per job kind: the command line and the API call that should make the same config."""
    db = tmp_path / "hub.duckdb"
    marginals = _marginals(tmp_path)
    return {
        "synthesis": (["synthesize", "math_problem", "--db", db, "--n", 4],
                      lambda **kw: personahub.synthesize("math_problem", db=db, n=4, **kw)),
        "run": (["run", scenario, "--db", db],
                lambda **kw: personahub.run_scenario(scenario, db=db, **kw)),
        "judge": (["judge", "--job", "j1", "--db", db],
                  lambda **kw: personahub.judge(job="j1", db=db, **kw)),
        "calibration": (["calibrate", tmp_path / "survey.csv", "--population", "all",
                         "--db", db],
                        lambda **kw: personahub.calibrate(tmp_path / "survey.csv",
                                                          population="all", db=db, **kw)),
        "text_to_persona": (["personas", "from-text", corpus, "--db", db],
                            lambda **kw: personahub.text_to_persona(corpus, db=db, **kw)),
        "expansion": (["personas", "expand", "--db", db],
                      lambda **kw: personahub.expand(db=db, **kw)),
        "population_write": (["personas", "sample-population", "--marginals", marginals,
                              "--n", 5, "--llm", "offline", "--db", db],
                             lambda **kw: personahub.write_population(marginals, n=5, db=db,
                                                                      **kw)),
    }


KINDS = ["synthesis", "run", "judge", "calibration", "text_to_persona", "expansion",
         "population_write"]


@pytest.fixture
def hub(tmp_path: Path, persona_file: Callable[[int], Path]) -> Path:
    """A hub of 6 personas in ``tmp_path / hub.duckdb`` (what expand and dedup read)."""
    db = tmp_path / "hub.duckdb"
    result = CliRunner().invoke(app, ["personas", "import", str(persona_file(6)), "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db


@pytest.mark.parametrize("given", [False, True], ids=["defaults", "engine-flags"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_cli_and_the_api_build_the_same_config(kind: str, given: bool, tmp_path: Path,
                                                   scenario_file: Callable[..., Path],
                                                   hub: Path, capture: None) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("A nurse on night shift.\n\nA farmer at dawn.\n", encoding="utf-8")
    args, call = kinds(tmp_path, scenario_file(), corpus)[kind]
    command = args[0] if args[0] != "personas" else f"personas {args[1]}"
    flags, kwargs = given_options(str(command)) if given else ([], {})
    cli = cli_config(*args, *flags)
    made = api_config(lambda: call(**kwargs))
    assert cli.kind == kind
    assert_same(cli, made)
    if given:  # the flags reached the config
        assert len(kwargs) >= 8
        assert {k: getattr(cli.config, k) for k in kwargs} == kwargs


@pytest.mark.parametrize("given", [False, True], ids=["defaults", "engine-flags"])
def test_dedup_cli_and_api_build_the_same_config(given: bool, hub: Path, capture: None) -> None:
    flags = ["--timeout", "7", "--embedder", "openai:text-embedding-3-small", "--rps", "2",
             "--cache", "record"] if given else []
    cli = cli_config("personas", "dedup", "--db", hub, *flags)
    kwargs = {"timeout_s": 7.0, "embedder": "openai:text-embedding-3-small", "rps": 2.0,
              "cache": "record"} if given else {}
    made = api_config(lambda: personahub.dedup(db=hub, **kwargs))
    assert cli.kind == "dedup"
    assert_same(cli, made)


@pytest.fixture
def run_id(tmp_path: Path, scenario_file: Callable[..., Path]) -> str:
    """A one-step offline run in ``tmp_path / hub.duckdb`` (what an interview asks)."""
    run = personahub.run_scenario(scenario_file(n_personas=4), db=tmp_path / "hub.duckdb",
                                  steps=1, progress=False)
    return run.job_id


@pytest.mark.parametrize("given", [False, True], ids=["defaults", "engine-flags"])
def test_interview_cli_and_api_build_the_same_config(given: bool, tmp_path: Path, run_id: str,
                                                     capture: None) -> None:
    db = tmp_path / "hub.duckdb"
    flags, kwargs = given_options("interview") if given else ([], {})
    cli = cli_config("interview", "how are you?", "--run", run_id, "--agent", "1", "--db", db,
                     *flags)
    made = api_config(lambda: personahub.interview("how are you?", run=run_id, agent="1", db=db,
                                                   **kwargs))
    assert cli.kind == "interview"
    assert_same(cli, made)
    if given:
        assert {k: getattr(cli.config, k) for k in kwargs} == kwargs


EXPERIMENT_FILE = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(name="ab", personas=PersonaSource(limit=4), steps=1,
                    graph=GraphGrowth(hops=0, acquaintances=2), tasks=("npc_dialogue",),
                    surveys=(Survey(id="buy", steps=(1,), options=("yes", "no"),
                                    question="Buy it?"),))
EXPERIMENT = Experiment(arms=(Arm(name="a"), Arm(name="b", world="It rains.")), replicates=1,
                        outcomes=(Outcome(survey="buy", step=1, options=("yes",)),))
'''


@pytest.mark.parametrize("given", [False, True], ids=["defaults", "engine-flags"])
def test_experiment_cli_and_api_build_the_same_arm_run_config(given: bool, tmp_path: Path,
                                                              capture: None) -> None:
    """``personahub experiment`` takes the engine options ``run`` takes (but
    ``--provider-batch``) and hands them to each arm run as ``personahub.experiment(**options)`` does."""
    takes = set(inspect.signature(dict(commands())["experiment"]).parameters)
    run_takes = set(inspect.signature(dict(commands())["run"]).parameters)
    assert {o.param for o in ENGINE_OPTIONS.values()
            if o.param in run_takes and not o.param.startswith("provider_batch")} <= takes
    path = tmp_path / "ab.py"
    path.write_text(EXPERIMENT_FILE, encoding="utf-8")
    db = tmp_path / "ab.duckdb"
    flags, kwargs = given_options("experiment") if given else ([], {})
    if given:  # the run options an experiment takes too, as run declares them
        flags += ["--archetypes", "2", "--archetype-elicit", "sample:2"]
    cli = cli_config("experiment", path, "--db", db, *flags)
    sampled = {"archetypes": 2, "archetype_elicit": "sample:2"} if given else {}
    made = api_config(lambda: personahub.experiment(path, db=db, **kwargs, **sampled))
    assert cli.kind == "run"
    assert_same(cli, made)
    if given:  # every engine flag reached the arm run's config
        assert len(kwargs) == len(GIVEN)
        assert {k: getattr(cli.config, k) for k in kwargs} == kwargs
        assert (cli.config.archetypes, cli.config.archetype_elicit) == (2, "sample:2")
    else:
        assert (cli.config.archetypes, cli.config.archetype_elicit) == (None, None)
    # declared once: experiment's flag is run's (the same typer declaration, help included)
    assert [_option(command, "archetype_elicit") for command in ("experiment", "run")] == \
        [_option("run", "archetype_elicit")] * 2


def _option(command: str, param: str) -> Any:
    """The type (with its ``typer.Option``) ``command`` declares ``param`` with."""
    return typing.get_type_hints(dict(commands())[command], include_extras=True)[param]

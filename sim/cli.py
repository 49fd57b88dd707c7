"""The ``personahub`` command line.

Every command that calls a model takes ``--llm SPEC`` (default: ``PERSONAHUB_LLM`` or
``offline``). Errors print as one line on stderr with a non-zero exit; nothing is half-written.
Ctrl-C and SIGTERM print one line too (the interrupted job and how to resume it) and exit 130
and 143; a job names itself on stderr when it starts.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import duckdb
import typer
from personahub.agents import run_loop
from personahub.personas.dbcheck import first_line
from personahub.personas.errors import PersonahubError
from personahub.personas.store import DEFAULT_DB, is_damage
from personahub.sim.interrupts import Stopped, exit_code, signal_name, sigterm_as_interrupt
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from typer.core import TyperGroup

if TYPE_CHECKING:  # LangChain takes seconds to import: only commands that call a model load it
    from personahub.agents.llm import LLMClient

try:  # typer >= 0.22 ships its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]


class OneLineGroup(TyperGroup):
    """The root command: a usage error (bad flag or value, missing argument, unknown command)
    is one ``error:`` line naming where help is, not click's usage block; help is unchanged."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
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
            message = exc.format_message().rstrip(".")
            error_line(f"{message} (see {' '.join(['personahub', *where])} --help)")
            sys.exit(exc.exit_code)
        except click_exceptions.ClickException as exc:
            error_line(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:  # click's own Abort in older typer
            error_line("aborted")
            sys.exit(1)
        # non-standalone main returns the exit code of a typer.Exit, else the command's result
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineGroup,
    name="personahub",
    help="Persona-driven synthetic data and virtual-society simulation (offline by default).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
personas_app = typer.Typer(help="Import, expand and inspect the persona hub.", no_args_is_help=True)
app.add_typer(personas_app, name="personas")


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

console = Console(stderr=True)
out = Console()
F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[Path, typer.Option("--db", envvar="PERSONAHUB_DB",
                                        help="DuckDB database file.")]
LlmOption = Annotated[str | None, typer.Option(
    "--llm", help="Model: 'offline' (default), 'openai:<model>', an OpenAI-compatible base URL "
                  "(http://host:port/v1?model=NAME), or several URLs comma-separated. "
                  "Env: PERSONAHUB_LLM.")]
ConcurrencyOption = Annotated[int, typer.Option("--concurrency", min=1,
                                                help="Model calls in flight at most.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0.1,
                                              help="Seconds before a model call is abandoned.")]
StructuredOption = Annotated[str, typer.Option(
    "--structured", help="How the JSON schema is asked for: auto (learn per endpoint from the "
                         "first refusal), json_schema, json_object, tools or prompt.")]
MaxTokensOption = Annotated[int | None, typer.Option(
    "--max-tokens", min=1, help="Output tokens per model call at most (default: per output "
                                "kind, 160-700).")]
TemperatureOption = Annotated[float | None, typer.Option(
    "--temperature", min=0, max=2, help="Sampling temperature (default: the server's).")]
TopPOption = Annotated[float | None, typer.Option(
    "--top-p", min=0, max=1, help="Nucleus sampling top_p (default: the server's).")]
OfflineLatencyOption = Annotated[float, typer.Option(
    "--offline-latency", min=0, envvar="PERSONAHUB_OFFLINE_LATENCY",
    help="Seconds the offline engine waits per call (to simulate a slow model).")]
CacheOption = Annotated[str, typer.Option(
    "--cache", help="Model answer cache: off, record (answer hits from the cache, record "
                    "misses) or replay (cache only: no model call; a miss is an error).")]
RpsOption = Annotated[float | None, typer.Option(
    "--rps", min=0.001, help="Model requests per second at most (all endpoints together).")]


@dataclass(frozen=True)
class ModelFlags:
    """The generation flags every model-calling command takes."""

    structured: str = "auto"
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None

    def settings(self) -> dict[str, Any]:
        """As ``LLMSettings`` / job option keyword arguments."""
        return {"structured": self.structured, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "top_p": self.top_p}


def error_line(message: str) -> None:
    """Print ``error: MESSAGE`` as one line on stderr (never wrapped, markup not interpreted)."""
    first = " ".join(str(message).split()) or "unknown error"
    console.print(f"[bold red]error:[/] {escape(first)}", highlight=False, soft_wrap=True)


def one_line_errors(func: F) -> F:
    """Report PersonahubError, Ctrl-C and SIGTERM as one line and a non-zero exit.

    SIGTERM is turned into an interrupt for the command's duration (``sim.interrupts``), so a
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
            raise typer.Exit(1) from None
        except duckdb.Error as exc:
            if not is_damage(exc):
                raise
            error_line(f"--db {kwargs.get('db', '?')}: the database file is damaged "
                       f"({first_line(exc)})")
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            line = str(exc) if isinstance(exc, Stopped) else f"interrupted by {signal_name(exc)}"
            console.print(f"[bold red]{escape(line)}[/]", highlight=False, soft_wrap=True)
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


def banner(client: LLMClient) -> None:
    """Say which engine answers, plainly (test doubles without a label are not announced)."""
    if not hasattr(client, "label"):
        return
    if client.is_offline:
        console.print("engine: [bold]offline[/] — deterministic offline engine; "
                      "no language model is used.")
    else:
        console.print(f"engine: [bold]{client.label}[/] (language model over HTTP)")


def make_client(llm: str | None, seed: int, concurrency: int, timeout: float,
                offline_latency: float = 0.0, *, rps: float | None = None,
                check: bool = True, flags: ModelFlags | None = None,
                announce: bool = True) -> LLMClient:
    """Build the model client for a command and check the endpoint answers (unless ``check``
    is off, as for a replay from the cache, which calls no model). ``announce=False`` leaves
    the banner to the caller, once its input is checked (a bad input then prints one line)."""
    from personahub.agents.llm import LLMSettings, check_reachable, resolve_spec
    from personahub.agents.llm import make_client as make_llm_client

    client = make_llm_client(LLMSettings(spec=resolve_spec(llm), seed=seed, concurrency=concurrency,
                                         timeout_s=timeout, offline_latency_s=offline_latency, rps=rps,
                                         **(flags or ModelFlags()).settings()))
    if check:
        for label in check_reachable(client):
            console.print(f"[yellow]warning:[/] endpoint {label} is unreachable; using the others",
                          highlight=False)
    if announce:
        banner(client)
    return client


def _progress(client: LLMClient | None = None) -> Progress:
    """A progress display (with the client's call counts when it calls a model)."""
    from personahub.sim.progress import JobProgress

    return JobProgress(console, getattr(client, "stats", None))  # test doubles may count nothing


@app.command()
@one_line_errors
def run(
    scenario: Annotated[Path | None, typer.Argument(
        help="Scenario script (a .py file defining SCENARIO); omit with --resume.")] = None,
    db: DbOption = Path(DEFAULT_DB),
    steps: Annotated[int | None, typer.Option(min=1, help="Override the scenario's steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    llm: LlmOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 60.0,
    resume: Annotated[str | None, typer.Option(
        "--resume", metavar="RUN_ID",
        help="Continue a stopped run from its last committed step (same seed and options).")] = None,
    offline_latency: OfflineLatencyOption = 0.0,
    cache: CacheOption = "off",
    rps: RpsOption = None,
    price_in: Annotated[float | None, typer.Option(
        "--price-in", min=0, help="USD per 1M input tokens, for v_run_cost.")] = None,
    price_out: Annotated[float | None, typer.Option(
        "--price-out", min=0, help="USD per 1M output tokens, for v_run_cost.")] = None,
    structured: StructuredOption = "auto",
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    top_p: TopPOption = None,
) -> None:
    """Run a scenario: personas → relationship graph → simulation steps → DuckDB run log."""
    from personahub.sim.runner import RunOptions, resume_run, run_scenario
    from personahub.sim.scenario import load_scenario

    if resume is not None:
        if scenario is not None or steps is not None or seed is not None:
            raise PersonahubError("--resume RUN_ID takes the scenario, steps and seed from the run; "
                                  "give only --db (and --llm if the endpoint needs credentials)")
        with _progress() as bar:  # the client is built inside resume_run
            summary = resume_run(resume, db=db, llm=llm, offline_latency_s=offline_latency,
                                 progress=_hook(bar), on_ready=lambda: console.print(
                                     f"resuming run [bold]{escape(resume)}[/] in {escape(str(db))}"))
        print_summary(summary)
        return
    if scenario is None:
        raise PersonahubError("run: give a scenario file, or --resume RUN_ID")
    from personahub.agents.llm import resolve_spec

    spec = resolve_spec(llm)
    loaded = load_scenario(scenario)
    flags = ModelFlags(structured, max_tokens, temperature, top_p)
    options = RunOptions(db=db, steps=steps, seed=seed, llm=spec, concurrency=concurrency,
                         timeout_s=timeout, offline_latency_s=offline_latency, cache=cache,
                         rps=rps, price_in=price_in, price_out=price_out, **flags.settings())
    run_seed = loaded.seed if seed is None else seed
    client = make_client(spec, run_seed, concurrency, timeout, offline_latency, rps=rps,
                         check=cache != "replay", flags=flags, announce=False)

    def ready() -> None:  # the input is checked and nothing is written yet
        banner(client)
        console.print(f"scenario: [bold]{escape(loaded.name)}[/] ({escape(str(scenario))}) "
                      f"seed={run_seed} db={escape(str(db))}")

    with _progress(client) as bar:
        summary = run_scenario(loaded, options, scenario_path=str(scenario), progress=_hook(bar),
                               client=client, on_ready=ready,
                               on_start=lambda run_id: started("run", run_id, db))
    print_summary(summary)


def started(what: str, key: str, db: Path) -> None:
    """Name a job on stderr as it starts: its id is what resumes it if it stops."""
    console.print(f"{what} [bold]{escape(key)}[/] started in {escape(str(db))}", highlight=False,
                  soft_wrap=True)


def _hook(bar: Progress) -> Callable[[str, int, int], None]:
    """Progress callback: the bar on a terminal, else one ``step N/M committed`` line per step."""
    tasks: dict[str, Any] = {}

    def hook(phase: str, done: int, total: int) -> None:
        if phase == "step" and bar.disable:
            sys.stderr.write(f"step {done}/{total} committed\n")
            sys.stderr.flush()
        label = "expanding graph" if phase == "expand" else "simulating steps"
        if phase not in tasks:
            tasks[phase] = bar.add_task(label, total=total)
        bar.update(tasks[phase], completed=done)

    return hook


def print_summary(summary: Any) -> None:
    """The end-of-run summary: counts, where the data is, and SQL to start from."""
    from personahub.personas.quality import rejection_text

    table = Table(title=f"run {summary.run_id}", show_header=False)
    table.add_row("engine", summary.engine + (" (offline engine, not a language model)"
                                               if summary.offline else ""))
    table.add_row("agents", f"{summary.agents} (relationship edges: {summary.edges})")
    table.add_row("steps", str(summary.steps))
    kinds = ", ".join(f"{k}={v}" for k, v in summary.emissions_by_kind.items()) or "none"
    table.add_row("emissions", f"{sum(summary.emissions_by_kind.values())} ({kinds})")
    table.add_row("messages", str(summary.messages))
    table.add_row("events delivered", str(summary.events))
    table.add_row("survey answers", str(summary.answers))
    table.add_row("near-duplicates flagged", str(summary.duplicates))
    calls = ", ".join(f"{k}={v}" for k, v in summary.calls.items()) or "none"
    table.add_row("LLM calls", f"{sum(summary.calls.values())} ({calls})")
    table.add_row("failed actions", str(summary.failed_actions))
    table.add_row("rejected by the quality gate", rejection_text(summary.rejected))
    table.add_row("prompt tokens per action", _tokens_per_action(summary))
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    table.add_row("database", str(summary.db))
    out.print(table)
    db = summary.db
    out.print("Try:")
    out.print(f"  personahub sql --db {db} \"select kind, count(*) from emissions group by 1\"",
              highlight=False, soft_wrap=True)
    out.print(f"  personahub sql --db {db} \"select step, text from emissions where kind = "
              f"'npc_dialogue' and run_id = '{summary.run_id}' limit 5\"",
              highlight=False, soft_wrap=True)


def _tokens_per_action(summary: Any) -> str:
    """Mean prompt tokens per answered action, saying how they were counted."""
    tokens = summary.prompt_tokens_per_action
    if tokens is None:
        return "unknown (no answered call reported its tokens)"
    how = "approximate, 4 characters a token" if summary.offline else "as the server reported"
    return f"{tokens:,.0f} (mean, {how})"


@app.command()
@one_line_errors
def sql(
    query: Annotated[str | None, typer.Argument(
        help="SQL to run (read-only), or a path ending in .sql.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="File of SQL to run.")] = None,
    db: DbOption = Path(DEFAULT_DB),
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[int, typer.Option(min=1, help="Rows to print at most (table).")] = 200,
    allow_files: Annotated[bool, typer.Option(
        "--allow-files", help="Let the SQL read and write files (read_csv, read_parquet, glob, "
                              "COPY ... TO, EXPORT DATABASE, ATTACH read-only). Off by "
                              "default; the database stays read-only either way.")] = False,
) -> None:
    """Query the database with SQL over a read-only connection (analysis views included).

    A file may hold several statements; the result of the last one is printed. The views of
    ``analysis/views.sql`` (v_duplicate_rate, v_run_usage, ...) are installed as TEMP views.
    The SQL cannot touch other files (unless --allow-files), install or load extensions, or
    change settings (SET, RESET, PRAGMA).
    """
    import duckdb
    from personahub.analysis.views import install_views
    from personahub.personas.store import connect, has_extension_statement, lock_down

    if fmt not in ("table", "csv", "json"):
        raise PersonahubError(f"--format {fmt!r}: use table, csv or json")
    if file is None and query is not None and query.strip().lower().endswith(".sql"):
        file = Path(query.strip())
    if file is not None:
        try:
            query = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise PersonahubError(f"--file {file}: {exc.strerror or exc}") from exc
    if not query or not query.strip():
        raise PersonahubError("sql: give a query, a .sql path or --file FILE")
    where = f"{file}: " if file is not None else ""
    con = connect(db, read_only=True)
    try:
        install_views(con)
        lock_down(con, allow_files=allow_files)
        if has_extension_statement(con, query):
            raise PersonahubError(f"sql: {where}installing, loading or updating extensions is disabled")
        cursor = con.execute(query)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchall()
    except duckdb.Error as exc:
        raise PersonahubError(f"sql: {where}{sql_refusal(exc, allow_files)}") from exc
    finally:
        con.close()
    print_rows(columns, rows, fmt, limit)


def sql_refusal(exc: Exception, allow_files: bool) -> str:
    """One line for a failed ``sql`` statement, naming the way out when the sandbox refused it."""
    import re

    import duckdb

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, duckdb.PermissionException) and not allow_files:
        return "file access is disabled; use --allow-files to read or write files"
    if "configuration has been locked" in text:
        name = re.search(r'option "+([^"]+)"+', text)
        what = f"setting {name.group(1)!r}" if name else "settings"
        return f"{what} cannot be changed here (SET, RESET and PRAGMA settings are locked)"
    return text


def print_rows(columns: list[str], rows: list[tuple[Any, ...]], fmt: str, limit: int) -> None:
    """Print a result set as a table, CSV or JSON lines."""
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    if fmt == "json":
        for row in rows:
            sys.stdout.write(json.dumps(dict(zip(columns, row, strict=True)), default=str) + "\n")
        return
    table = Table(*columns)
    for row in rows[:limit]:
        table.add_row(*["NULL" if v is None else str(v) for v in row])
    out.print(table)
    if len(rows) > limit:
        out.print(f"({len(rows)} rows, first {limit} shown)")


@app.command()
@one_line_errors
def serve(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Offline engine seed.")] = 0,
    latency: Annotated[float, typer.Option(
        min=0, help="Seconds from a request's arrival to its answer.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 429/500.")] = 0.0,
    malformed_rate: Annotated[float, typer.Option(help="Share answered with broken JSON.")] = 0.0,
    hang_rate: Annotated[float, typer.Option(help="Share of requests that hang.")] = 0.0,
    hang_seconds: Annotated[float, typer.Option(min=0, help="How long a hang lasts.")] = 30.0,
    dialect: Annotated[str, typer.Option(
        help="Answer as: openai, vllm, vllm-legacy, llama-cpp-python, ollama, tools-only.")] = "openai",
    retry_after: Annotated[float | None, typer.Option(
        min=0, help="Seconds sent as Retry-After on 429/503 answers.")] = None,
) -> None:
    """Serve the offline engine as an OpenAI-compatible endpoint on loopback (for dry runs)."""
    import time

    from personahub.agents.server import ServerOptions, start_server

    handle = start_server(ServerOptions(seed=seed, latency_s=latency, error_rate=error_rate,
                                        malformed_rate=malformed_rate, hang_rate=hang_rate,
                                        hang_s=hang_seconds, dialect=dialect,
                                        retry_after_s=retry_after), host=host, port=port)
    console.print(f"offline engine (not a language model) serving OpenAI-compatible API ({dialect}) at "
                  f"{handle.base_url} — use --llm {handle.base_url}; Ctrl-C stops.")
    try:
        while True:
            time.sleep(3600)
    finally:
        handle.stop()


@personas_app.command("import")
@one_line_errors
def personas_import(
    file: Annotated[Path, typer.Argument(help="Persona file (JSONL, CSV, Parquet; .gz allowed).")],
    db: DbOption = Path(DEFAULT_DB),
    fmt: Annotated[str, typer.Option("--format", help="Format name, or auto.")] = "auto",
    text_column: Annotated[str | None, typer.Option(help="Column holding the persona text.")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip malformed records and count them.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Personas per transaction.")] = 50_000,
) -> None:
    """Import personas into the hub (exact duplicates collapse; provenance is kept)."""
    from personahub.personas.importers import FORMATS, ImportStats, iter_persona_batches
    from personahub.personas.store import connect, transaction, upsert_personas

    if fmt not in FORMATS:
        raise PersonahubError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    stats = ImportStats()
    batches = iter_persona_batches(file, batch_size=batch_size, fmt=fmt, text_column=text_column,
                                   skip_bad=skip_bad, stats=stats)
    first = next(batches, None)  # file-level errors surface before the database is opened
    if first is None and not stats.read:
        raise PersonahubError(f"{file}: no persona records (the file is empty)")
    con = connect(db)
    added = 0
    try:
        with _progress() as bar:
            task = bar.add_task(f"importing {file.name}", total=None)
            with transaction(con):  # the whole file or nothing
                for batch in itertools.chain([first] if first else [], batches):
                    added += upsert_personas(con, batch)
                    bar.update(task, completed=stats.read)
    finally:
        con.close()
    out.print(f"read {stats.read} records: {stats.imported} personas, {added} new in {db}, "
              f"{stats.bad} bad skipped")
    for example in stats.bad_examples:
        out.print(f"  skipped {example}", highlight=False)


LanguageOption = Annotated[str | None, typer.Option(
    help="Ask for personas in this language (en, fr, zh, ... or a name); the quality gate rejects "
         "answers in another script.")]


@personas_app.command("expand")
@one_line_errors
def personas_expand(
    db: DbOption = Path(DEFAULT_DB),
    hops: Annotated[int, typer.Option(min=0, max=6, help="Rounds of persona-to-persona.")] = 1,
    fanout: Annotated[int, typer.Option(min=1, max=20, help="Related people per persona.")] = 2,
    limit: Annotated[int | None, typer.Option(min=1, help="Start from the first N personas.")] = None,
    language: LanguageOption = None,
    llm: LlmOption = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed (offline engine; default: a resumed expansion's own seed, else 0).")] = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 60.0,
    offline_latency: OfflineLatencyOption = 0.0,
    cache: CacheOption = "off",
    rps: RpsOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Frontier personas per transaction.")] = 256,
    fresh: Annotated[bool, typer.Option(help="Start anew even if an unfinished expansion with the "
                                              "same --hops/--fanout/--limit exists.")] = False,
    structured: StructuredOption = "auto",
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    top_p: TopPOption = None,
) -> None:
    """Grow the hub: ask who is in close relationship with each persona, hop by hop.

    An interrupted expansion is resumed automatically: when an unfinished one with the same
    --hops, --fanout and --limit exists, it goes on from its stored frontier (--fresh starts anew).
    """
    from personahub.agents.llm import resolve_spec
    from personahub.personas.expand import expand_hub
    from personahub.personas.quality import rejection_line
    from personahub.sim.cli_personas import unfinished_expansion
    from personahub.sim.jobs import attach_cache, check_cache_mode, check_replay_cache

    check_cache_mode(cache)
    given = ModelFlags(structured, max_tokens, temperature, top_p)
    spec = resolve_spec(llm)
    # the endpoint is checked (or the replay's cache found) before the database is touched
    probe_seed = seed or 0
    client = make_client(spec, probe_seed, concurrency, timeout, offline_latency, rps=rps,
                         check=cache != "replay", flags=given, announce=False)
    if cache == "replay":
        check_replay_cache(db, client.cache_model)
    con, start, resume, stored = unfinished_expansion(db, hops=hops, fanout=fanout, limit=limit,
                                                      fresh=fresh, language=language)
    try:  # a resumed expansion answers as it started: its seed and generation settings
        flags = given
        if resume is not None and given == ModelFlags():
            flags = ModelFlags(*(stored.get(k, getattr(given, k)) for k in
                                 ("structured", "max_tokens", "temperature", "top_p")))
        if seed is None:
            seed = int(stored.get("seed", 0))
        if seed != probe_seed or flags != given:  # the stored settings differ: build it so
            client = make_client(spec, seed, concurrency, timeout, offline_latency, rps=rps,
                                 check=False, flags=flags, announce=False)
        attach_cache(con, client, cache)
    except BaseException:
        con.close()
        raise
    banner(client)
    expansion: list[str] = []

    def on_start(expansion_id: str) -> None:
        expansion.append(expansion_id)
        if resume is None:  # a resumed one was announced by unfinished_expansion
            started("expansion", expansion_id, db)

    try:
        with _progress(client) as bar:
            task = bar.add_task("expanding (hops)", total=hops)
            summary = run_loop.run(expand_hub(
                con, client, start_ids=start, hops=hops, fanout=fanout, resume=resume,
                batch_size=batch_size,
                config={"limit": limit, "origin": "cli", "seed": seed, **flags.settings()},
                language=language, on_start=on_start,
                progress=lambda _, h, n: bar.update(task, completed=h)))
    except KeyboardInterrupt as exc:
        if not expansion:
            raise
        raise Stopped(f"expansion {expansion[0]} interrupted by {signal_name(exc)}; run the same "
                      "command to resume it", exc) from None
    finally:
        con.close()
    out.print(f"expansion {summary.expansion_id}{' (resumed)' if summary.resumed else ''}: "
              f"asked {summary.asked} personas over {summary.hops} hop(s): "
              f"{summary.new_personas} new personas, {summary.merged_into_existing} merged into "
              f"existing ones, {summary.edges} relations, {summary.failed_calls} failed calls")
    out.print(rejection_line(summary.rejected), highlight=False)


import personahub.sim.cli_personas  # noqa: E402,F401 - registers personas from-text, sample, stats, export-graph
import personahub.sim.cli_synth  # noqa: E402,F401 - registers synthesize, export, report

"""personahub run: a scenario run (or the resume of a stopped one) and its summary."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from personahub.cli.common import emit_job_json, note_job, one_line_errors, out, run_counts, say
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import banner, job_progress, print_preview, started, unreachable
from personahub.cli.options import (
    ArchetypeElicitOption,
    DbOption,
    Shown,
    SurveyProfileOption,
    output_options,
    resume_option,
)
from personahub.core.errors import UsageError
from personahub.core.plan_limits import MAX_STEPS
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED

if TYPE_CHECKING:
    from personahub.analysis.live_view import RunView
    from personahub.core.contracts import StructuredCaller
    from personahub.pipelines.run import ResumeSettings, RunConfig, RunSummary
    from personahub.sim.live_control import LiveControl


@dataclass(frozen=True)
class RunRequest:
    """What personahub run was asked: the scenario (or the run to resume) and the run's flags.

    The engine flags travel beside it as the command's Engine; None keeps the scenario's value.
    """

    scenario: Path | None
    db: Path
    steps: int | None = None
    seed: int | None = None
    resume: str | None = None
    price_in: float | None = None
    price_out: float | None = None
    include_ungated: bool = False
    archetypes: int | None = None
    archetype_elicit: str | None = None
    society: str = "agents"
    survey_profile: str | None = None

    def scenario_flags(self) -> list[str]:
        """Name the flags given that only a new run takes (a resume keeps the run's own)."""
        given = {"scenario": self.scenario is not None, "--steps": self.steps is not None,
                 "--seed": self.seed is not None, "--include-ungated": self.include_ungated,
                 "--archetypes": self.archetypes is not None,
                 "--archetype-elicit": self.archetype_elicit is not None,
                 "--society": self.society != "agents",
                 "--survey-profile": self.survey_profile is not None}
        return [name for name, on in given.items() if on]


@one_line_errors
@engine_options("model", "executor", "batch", without=("provider_batch_file",))
@output_options(preview=True)
def run(
    scenario: Annotated[Path | None, typer.Argument(
        help="Scenario script (a .py file defining SCENARIO); omit with --resume.")] = None,
    db: DbOption = Path(DEFAULT_DB),
    steps: Annotated[int | None, typer.Option(
        min=1, max=MAX_STEPS, help="Override the scenario's steps.")] = None,
    seed: Annotated[int | None, typer.Option(
        min=0, max=MAX_SEED, help="Override the scenario's seed.")] = None,
    archetypes: Annotated[int | None, typer.Option(
        min=1, metavar="K", help="Group the agents into K archetypes and ask choice and scale "
                                 "surveys (and draw unaddressed actions, every action with "
                                 "--society columns) once per archetype; "
                                 "overrides the scenario's archetypes (docs/scenarios.md).")
    ] = None,
    archetype_elicit: ArchetypeElicitOption = None,
    society: Annotated[str, typer.Option(
        "--society", help="Where the population lives: agents (one object per agent), columns "
                          "(column shards: a run with archetypes that fits, docs/scale.md) or "
                          "auto (columns when it fits).")] = "agents",
    plan: Annotated[bool, typer.Option(
        "--plan", help="Print the calls and tokens each step is expected to cost, then exit "
                       "without running or writing anything.")] = False,
    survey_profile: SurveyProfileOption = None,
    resume: Annotated[str | None, resume_option(
        "RUN_ID", "its seed and options, and goes on from its last committed step")] = None,
    price_in: Annotated[float | None, typer.Option(
        "--price-in", min=0, help="USD per 1M input tokens, for v_run_cost.")] = None,
    price_out: Annotated[float | None, typer.Option(
        "--price-out", min=0, help="USD per 1M output tokens, for v_run_cost.")] = None,
    view: Annotated[bool, typer.Option(
        "--view", help="Serve the live view of this run on 127.0.0.1 while it runs, and after it "
                       "until Ctrl-C (personahub view shows a run no process is writing).")] = False,
    view_port: Annotated[int, typer.Option(
        "--view-port", min=0, max=65535, help="Port of --view (0 picks a free one).")] = 8765,
    view_paused: Annotated[bool, typer.Option(
        "--view-paused", help="With --view: wait before step 1 until the page's Resume or Step "
                              "button is pressed.")] = False,
    include_ungated: Annotated[bool, typer.Option(
        help="A hub source draws personas the quality gate did not pass too: imported rows "
             "that fail it and, for a model run, the offline engine's (docs/personas.md).")
    ] = False,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Run a scenario: personas → relationship graph → simulation steps → DuckDB run log.

    --provider-batch sends each step's model calls as one provider batch (the step commits when it is
    answered; a resume polls it): slow in wall time, about half the price."""
    from personahub.analysis.live_view import RunView

    if plan:
        _print_plan(scenario, db, steps, archetypes, archetype_elicit, include_ungated,
                    society)
        return
    if view_paused and not view:
        raise UsageError("--view-paused needs --view (the page is where a paused run resumes)")
    # the port is taken now, or refused
    watcher = RunView(db, view_port, say, paused=view_paused) if view else None
    try:
        summary = _run(RunRequest(
            scenario=scenario, db=db, steps=steps, seed=seed, resume=resume, price_in=price_in,
            price_out=price_out, include_ungated=include_ungated, archetypes=archetypes,
            archetype_elicit=archetype_elicit, society=society, survey_profile=survey_profile),
            engine, watcher)
    except BaseException:
        if watcher is not None:
            watcher.stop()
        raise
    print_preview("run", summary.run_id, shown.preview, db=Path(summary.db))
    if shown.json:
        emit_job_json("run", db, job_id=summary.run_id, id_key="run_id", counts=run_counts(summary))
    if watcher is not None:
        watcher.linger()


def _run(request: RunRequest, engine: Engine, watcher: RunView | None) -> RunSummary:
    """Run (or resume) the requested run on the job kernel and print its summary.

    watcher (the --view page) starts once the run is known. Returns the run's summary.
    """
    from personahub.api import run_simulation
    from personahub.cli.progress import LateCounts
    from personahub.pipelines.run import unfinished_twins_note

    config = _config(request, engine, None if watcher is None else watcher.live_control)
    scenario, db, resume = request.scenario, request.db, request.resume
    counts = LateCounts()
    bar = job_progress(counts=counts)
    shown = ExitStack()

    def ready(client: StructuredCaller | None) -> None:  # the input is checked and nothing is written yet
        assert client is not None  # a run's spec always asks for a model client
        counts.follow(client.stats)
        banner(client)
        if not isinstance(config, dict) and config.scenario is not None:
            say("scenario: ", (config.scenario.name, "bold"),
                f" ({scenario}) seed={config.run_seed} db={db}")
        shown.enter_context(bar)  # progress from here: a refused input prints its one line only

    def on_start(run_id: str, resumed: bool) -> None:
        if resumed:
            say("resuming run ", (run_id, "bold"), f" in {db}")
            note_job("run", run_id, db)
        else:
            started("run", run_id, db)
            left = unfinished_twins_note(db, run_id)
            if left is not None:
                say(("note:", "yellow"), f" {left}")
        if watcher is not None:
            watcher.start(run_id)

    with shown:
        summary = run_simulation(config, resume=resume, progress=step_progress(bar),
                                 on_ready=ready, on_start=on_start, warn=unreachable)
    print_summary(summary)
    if summary.personas_note:  # on stderr, as every draw's shortfall
        say(("note:", "yellow"), f" {summary.personas_note}")
    if summary.setup_note:  # the setup expansion's answers the gate kept and rejected
        say(("note:", "yellow"), f" {summary.setup_note}")
    return summary


def _config(request: RunRequest, engine: Engine,
            live_control: LiveControl | None) -> RunConfig | ResumeSettings:
    """Build the run's RunConfig, or a resume's settings (the run keeps the rest of its own)."""
    batching = _batching(engine)
    if request.resume is not None:
        if request.scenario_flags():
            raise UsageError("--resume RUN_ID takes the scenario, steps, seed, --archetypes, "
                             "--archetype-elicit, --society, --survey-profile and "
                             "--include-ungated from the run; "
                             "give only --db (and --llm if the endpoint needs credentials,"
                             " --executor for where its calls run)")
        settings = _resumed(request.resume, request.db, engine)
        settings.update(batching)
        if live_control is not None:
            settings["live_control"] = live_control
        return settings
    config = run_options(request, engine)
    if batching:
        config = dataclasses.replace(config, **batching)
    if live_control is not None:
        config = dataclasses.replace(config, live_control=live_control)
    return config


def run_options(request: RunRequest, engine: Engine) -> RunConfig:
    """Build the RunConfig of personahub run SCENARIO and its flags.

    personahub.api.run_config builds it as personahub.run_scenario's is (None: the default).
    """
    from personahub.api import run_config

    if request.scenario is None:
        raise UsageError("run: give a scenario file, or --resume RUN_ID")
    return run_config(request.scenario, None, {
        "db": request.db, "steps": request.steps, "seed": request.seed,
        **engine.settings(llm=True), "price_in": request.price_in,
        "price_out": request.price_out, **engine.flags.settings(),
        "include_ungated": request.include_ungated, "max_failed_share": engine.max_failed_share,
        "archetypes": request.archetypes, "archetype_elicit": request.archetype_elicit,
        "society": request.society, "survey_profile": request.survey_profile})


def _print_plan(scenario_file: Path | None, db: Path, steps: int | None, archetypes: int | None,
                archetype_elicit: str | None, include_ungated: bool, society: str) -> None:
    """Print a scenario's expected calls and tokens a step (--plan); nothing is written.

    A column society (``--society columns``, or ``auto`` when the scenario fits) is priced as it
    asks: addressed kinds once per (archetype, kind), not per agent."""
    from personahub.sim.column_society import columns_refusal
    from personahub.sim.run_plan import plan_lines, step_prices
    from personahub.sim.runner import load_scenario_personas
    from personahub.sim.scenario import archetype_sample_size, load_scenario

    if scenario_file is None:
        raise UsageError("--plan: give a scenario file")
    if archetype_elicit is not None:
        archetype_sample_size(archetype_elicit)
    scenario = load_scenario(scenario_file)
    changed: dict[str, Any] = {"steps": steps} if steps is not None else {}
    if include_ungated:
        changed["personas"] = dataclasses.replace(scenario.personas, include_ungated=True)
    scenario = dataclasses.replace(scenario, **changed)
    personas = load_scenario_personas(scenario, db if Path(db).exists() else None, offline=True)
    k = archetypes if archetypes is not None else scenario.archetypes
    elicit = archetype_elicit if archetype_elicit is not None else scenario.archetype_elicit
    columns = society != "agents" and columns_refusal(
        dataclasses.replace(scenario, archetypes=k), archetype_sample_size(elicit)) is None
    prices = step_prices(scenario, len(personas), personas[0].text, archetypes=archetypes,
                         elicit=archetype_elicit, columns=columns)
    for line in plan_lines(prices, len(personas), min(k, len(personas)) if k else None):
        out.print(line, highlight=False, markup=False, soft_wrap=True)


def _resumed(run_id: str, db: Path, engine: Engine) -> ResumeSettings:
    """Return the engine settings of personahub run --resume RUN_ID (the run keeps the rest)."""
    from personahub.models.client import resolve_spec
    from personahub.pipelines.run import resume_settings

    return resume_settings(run_id, db,
                           llm=None if engine.llm is None else resolve_spec(engine.llm),
                           offline_latency_s=engine.offline_latency_s,
                           max_failed_share=engine.max_failed_share,
                           executor=engine.executor, ray_address=engine.ray_address,
                           ray_workers=engine.ray_workers)


def _batching(engine: Engine) -> ResumeSettings:
    """Return the run's provider batch settings (none unless --provider-batch: a resume keeps the
    run's own)."""
    if not engine.provider_batch:
        return {}
    return {"provider_batch": True, "provider_batch_window": engine.provider_batch_window,
            "provider_batch_fallback": engine.provider_batch_fallback,
            "provider_batch_poll_s": engine.provider_batch_poll_s}


def step_progress(bar: Progress) -> Callable[[str, int, int | None], None]:
    """Progress callback: the bar on a terminal, else one step N/M committed line per step
    (none under -q); with --provider-batch, the step's batch and its state beside the bar."""
    tasks: dict[str, TaskID] = {}

    def hook(phase: str, done: int, total: int | None) -> None:
        if phase.startswith("batch "):
            if "step" not in tasks:
                tasks["step"] = bar.add_task("simulating steps", total=None)
            bar.update(tasks["step"], description=f"simulating steps · waiting on {phase}")
            return
        if phase == "step" and bar.disable and not bar.console.quiet:
            sys.stderr.write(f"step {done}/{total} committed\n")
            sys.stderr.flush()
        label = "expanding graph" if phase == "expand" else "simulating steps"
        if phase not in tasks:
            tasks[phase] = bar.add_task(label, total=total)
        bar.update(tasks[phase], completed=done, description=label)

    return hook


def print_summary(summary: RunSummary) -> None:
    """Print the end-of-run summary: counts, where the data is, and SQL to start from."""
    from personahub.personas.quality import GATE_AFTER_CALL, rejection_text

    table = Table(title=f"run {summary.run_id}", show_header=False)
    table.add_row("engine", summary.engine + (" (offline engine, not a language model)"
                                               if summary.offline else ""))
    table.add_row("agents", f"{summary.agents} (relationship edges: {summary.edges})")
    table.add_row("steps", str(summary.steps))
    kinds = ", ".join(f"{k}={v}" for k, v in summary.emissions_by_kind.items()) or "none"
    table.add_row("emissions", f"{sum(summary.emissions_by_kind.values())} ({kinds})")
    table.add_row("messages", str(summary.messages))
    table.add_row("events delivered", str(summary.events))
    table.add_row("survey answers", "\n".join([str(summary.answers), *summary.surveys]))
    if summary.archetypes:
        table.add_row("archetypes", "\n".join([
            f"{summary.archetype_calls} calls once per archetype, {summary.drawn} answers and "
            "emissions drawn from them", *summary.archetypes]))
    table.add_row("near-duplicates flagged", str(summary.duplicates))
    calls = ", ".join(f"{k}={v}" for k, v in summary.calls.items()) or "none"
    table.add_row("LLM calls", f"{sum(summary.calls.values())} ({calls})")
    table.add_row("failed actions", str(summary.failed_actions))
    rejected = rejection_text(summary.rejected, "emissions or personas")
    if sum(summary.rejected.values()):
        rejected += f"\n({GATE_AFTER_CALL})"
    table.add_row("rejected by the quality gate", rejected)
    table.add_row("model calls kept", "\n".join(summary.kept) or "no model call")
    table.add_row("prompt tokens per action", _tokens_per_action(summary))
    table.add_row("prefix cache", prefix_cache_text(summary))
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    table.add_row("database", str(summary.db))
    out.print(table)
    db = summary.db
    out.print("Try:", soft_wrap=True)
    run = f"run_id = '{summary.run_id}'"  # a database holds many runs: each hint names this one
    out.print(f"  personahub sql --db {db} \"select task, count(*) from emissions where {run} "
              "group by 1\"", highlight=False, soft_wrap=True)
    out.print(f"  personahub sql --db {db} \"select * from v_run_cost where {run}\"",
              highlight=False, soft_wrap=True)
    out.print(f"  personahub sql --db {db} \"select step, text from emissions where task = "
              f"'npc_dialogue' and {run} limit 5\"",
              highlight=False, soft_wrap=True)


def prefix_cache_text(summary: RunSummary) -> str:
    """Return the prompt tokens the server's prefix cache reused (as it reported them) next to the share
    of prompt tokens in a prefix shared with a recent prompt (estimated by the client)."""
    if summary.offline:
        return "none (offline engine)"
    reused = summary.prefix_reused
    if reused is None or not reused[1]:
        measured = "not reported by the server"
    else:
        cached, prompt = reused
        measured = f"{cached / prompt:.0%} of prompt tokens reused ({cached:,} of {prompt:,}, " \
                   "as the server reported)"
    estimated = summary.prefix_estimated
    if estimated is None:
        return measured
    return f"{measured}; estimated shared prefix {estimated:.0%} of this invocation's prompts"


def _tokens_per_action(summary: RunSummary) -> str:
    """Mean prompt tokens per answered action, saying how they were counted."""
    tokens = summary.prompt_tokens_per_action
    if tokens is None:
        return "unknown (no answered call reported its tokens)"
    how = "approximate, 4 characters a token" if summary.offline else "as the server reported"
    return f"{tokens:,.0f} (mean, {how})"



"""personahub interview: ask a run's agent (or a carved group of its agents) a question,
answered in character from its stored state at a step; the run's own tables stay unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from personahub.cli.common import emit_job_json, one_line_errors, out, say
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import JobHooks, awaiting_results, batch_progress, unreachable
from personahub.cli.options import DbOption, FreshOption, Shown, output_options, resume_option
from personahub.core.errors import UsageError
from personahub.core.store import DEFAULT_DB

if TYPE_CHECKING:
    from personahub.pipelines.interview import InterviewResult

FORMATS = ("table", "json")
WHO_WIDTH = 60  # characters of the persona text that say who is speaking
OFFLINE_NOTE = "offline engine — deterministic, not a language model"


@one_line_errors
@engine_options("model", "batch", "executor", batch_size=("Answers", 16))
@output_options()
def interview(
    question: Annotated[str | None, typer.Argument(
        help="The question to ask, in quotes (not with --resume).")] = None,
    run: Annotated[str | None, typer.Option("--run", metavar="RUN_ID", help="The run whose "
                                            "agents answer (runs.run_id).")] = None,
    db: DbOption = Path(DEFAULT_DB),
    agent: Annotated[str | None, typer.Option(
        "--agent", metavar="PERSONA_ID", help="The agent to ask: a persona id of the run, or an "
                                              "agent id 1..N.")] = None,
    carve: Annotated[list[str] | None, typer.Option(
        "--carve", help="Ask a group instead: the run's agents whose persona matches KEY OP VALUE "
                        "(as in personas sample -w), e.g. \"age>30\"; repeat to require several; "
                        "combines with --personas.")] = None,
    personas: Annotated[str | None, typer.Option(
        "--personas", help="Ask a group instead: the run's agents whose persona matches this SQL "
                           "WHERE condition over the personas table.")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Ask at most this many agents of the group (lowest agent ids "
                               "first).")] = None,
    step: Annotated[int | None, typer.Option(
        "--step", min=0, help="Answer from the agents' state after this step (0: before the "
                              "first; default: the run's last committed step).")] = None,
    output: Annotated[Literal["table", "json"], typer.Option(
        "--format", help="How the answers are printed.")] = "table",
    resume: Annotated[str | None, resume_option(
        "BATCH_ID", "its question and run, and asks only the agents not yet answered")] = None,
    fresh: FreshOption = False,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Ask a run's agent, or a carved group of its agents, a question; answers come in character
    from each agent's stored state at a step and go to the interviews table, batch by batch (the
    run itself is not changed). A stopped interview goes on with --resume ID."""
    from personahub.interviews import run_interview
    from personahub.pipelines.interview import InterviewConfig, resume_settings

    if output not in FORMATS:
        raise UsageError(f"--format {output}: choose one of {', '.join(FORMATS)}")
    # how this run asks (a resume keeps what the interview asks of whom, and its settings)
    settings = {"db": str(db), **engine.settings(llm=True),
                **engine.batching()}
    config: InterviewConfig | dict[str, object]
    if resume:
        if question is not None or run is not None:
            raise UsageError("--resume: the interview keeps its question and run; give neither")
        config = resume_settings(**settings)
    else:
        if question is None or run is None:
            raise UsageError("give the QUESTION and --run RUN_ID (or --resume ID)")
        config = InterviewConfig(
            run_id=run, question=question, agent=agent, where=personas, carve=tuple(carve or ()),
            step=step, limit=limit, **engine.flags.settings(), **settings)
    hooks = JobHooks("interview", db)
    with hooks.progress() as bar, awaiting_results():
        handle = bar.add_task("interviewing", total=None)
        result = run_interview(config, db, resume=resume, fresh=fresh, on_ready=hooks.on_ready,
                               on_start=hooks.on_start, warn=unreachable,
                               progress=batch_progress(bar, handle, "interviewing"))
    if output == "json" and not shown.json:
        sys.stdout.write(json.dumps(answers_json(result), ensure_ascii=False, default=str,
                                    indent=2) + "\n")
    else:
        _table(result)
    if shown.json:
        emit_job_json("interview", db, job_id=result.batch_id, id_key="batch_id",
                      counts={"asked": len(result.rows), "answered": len(result.rows) - result.failed,
                              "failed": result.failed}, run_id=result.run_id, step=result.step)


def answers_json(result: InterviewResult) -> dict[str, object]:
    """Return the interview as one JSON object (the engine named, one entry per agent)."""
    return {
        "batch_id": result.batch_id, "run_id": result.run_id, "step": result.step,
        "question": result.question, "model": result.model, "offline": result.offline,
        "engine": OFFLINE_NOTE if result.offline else f"{result.model} (language model over HTTP)",
        "answers": [{k: r[k] for k in ("agent_id", "persona_id", "answer", "status", "error")}
                    for r in result.rows],
    }


def speaker(text: str, width: int = WHO_WIDTH) -> str:
    """Who is speaking, in short: the persona text's start, cut at a word with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text or "(no persona text)"
    cut = text[:width].rsplit(" ", 1)[0] or text[:width]
    return cut.rstrip(" ,;:.") + "…"


def short_id(persona_id: str) -> str:
    """Return a persona id kept compact for reference (its first 8 characters)."""
    return persona_id if len(persona_id) <= 10 else persona_id[:8] + "…"


def _table(result: InterviewResult) -> None:
    engine = OFFLINE_NOTE if result.offline else result.model
    say(f"run {result.run_id}, agents' state after step {result.step}; answered by: {engine}",
        to=out)
    say(f"question: {result.question}", to=out)
    table = Table(show_lines=True)
    table.add_column("agent", justify="right")
    table.add_column("who", overflow="fold", ratio=1)
    table.add_column("answer", overflow="fold", ratio=2)
    for row in result.rows:
        answer = row["answer"] if row["status"] == "ok" else f"(failed: {row['error']})"
        who = Text(speaker(result.personas.get(row["agent_id"], "")))
        who.append(f"\npersona {short_id(row['persona_id'])}", style="dim")
        table.add_row(str(row["agent_id"]), who, answer)
    out.print(table)
    from collections import Counter

    from personahub.analysis.kept import kept_line
    from personahub.models.failures import plain_reason

    reasons = Counter(plain_reason(r["error"]) for r in result.rows if r["status"] != "ok")
    kept = kept_line(f"interview {result.batch_id}", len(result.rows),
                     len(result.rows) - result.failed, reasons)
    say(f"{kept}; stored in interviews")

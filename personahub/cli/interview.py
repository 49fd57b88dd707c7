"""``personahub interview``: ask a run's agent (or a carved group of its agents) a question,
answered in character from its stored state at a step; the run's own tables stay unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table

from personahub.cli.common import (
    ConcurrencyOption,
    DbOption,
    JsonOption,
    LlmOption,
    MaxFailedShareOption,
    MaxTokensOption,
    ModelFlags,
    RpsOption,
    StructuredOption,
    TemperatureOption,
    TimeoutOption,
    TopPOption,
    banner,
    command_client,
    emit_job_json,
    one_line_errors,
    out,
    say,
)
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import DEFAULT_DB

if TYPE_CHECKING:
    from personahub.pipelines.interview import InterviewResult

FORMATS = ("table", "json")
OFFLINE_NOTE = "offline engine — deterministic, not a language model"


@one_line_errors
def interview(
    question: Annotated[str, typer.Argument(help="The question to ask, in quotes.")],
    run: Annotated[str, typer.Option("--run", metavar="RUN_ID", help="The run whose agents "
                                     "answer (runs.run_id).")],
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
    llm: LlmOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 60.0,
    rps: RpsOption = None,
    structured: StructuredOption = "auto",
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    top_p: TopPOption = None,
    max_failed_share: MaxFailedShareOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask a run's agent, or a carved group of its agents, a question; answers come in character
    from each agent's stored state at a step and go to the interviews table (the run itself is
    not changed)."""
    from personahub.core.loop import job_loop
    from personahub.pipelines.interview import InterviewRequest, ask, prepare, write

    if output not in FORMATS:
        raise UsageError(f"--format {output}: choose one of {', '.join(FORMATS)}")
    request = InterviewRequest(run_id=run, question=question, agent=agent, where=personas,
                               carve=tuple(carve or ()), step=step, limit=limit)
    prepared = prepare(db, request)  # every input checked, nothing written, no model built yet
    client = command_client(llm, prepared.facts.seed, concurrency, timeout, rps=rps,
                            flags=ModelFlags(structured, max_tokens, temperature, top_p),
                            announce=False)
    banner(client)
    with job_loop() as loop:
        results = loop.run(ask(client, prepared))
    result = write(db, client, prepared, results)
    if output == "json" and not as_json:
        sys.stdout.write(json.dumps(answers_json(result), ensure_ascii=False, default=str,
                                    indent=2) + "\n")
    else:
        _table(result)
    _account(result, results, max_failed_share)
    if as_json:
        emit_job_json("interview", db, job_id=result.batch_id, id_key="batch_id",
                      counts={"asked": len(result.rows), "answered": len(result.rows) - result.failed,
                              "failed": result.failed}, run_id=result.run_id, step=result.step)


def _account(result: InterviewResult, results: list[Any], max_failed_share: float | None) -> None:
    """The failure policy over the interview's one batch (``agents.llm.failures``): every answer
    failed, or the endpoint failed most of them, or more than ``--max-failed-share`` of them
    failed (at least 5 asked): one line and a non-zero exit. Otherwise the kept share is said."""
    from personahub.core.failures import DEFAULT_MAX_FAILED_SHARE, batch_failure, most_common_error

    errors = [r["error"] for r in result.rows if r["status"] != "ok"]
    records = [record for call in results for record in call.records]
    again = "; ask again with the same command"
    if result.rows and len(errors) == len(result.rows):
        error = most_common_error(records) or errors[0]
        raise PersonahubError(f"interview {result.batch_id}: every one of its {len(errors)} "
                              f"answers failed (most often: {str(error)[:160]}){again}")
    share = DEFAULT_MAX_FAILED_SHARE if max_failed_share is None else max_failed_share
    reason = batch_failure(f"interview {result.batch_id}", len(result.rows), errors, records, share)
    if reason is not None:
        raise PersonahubError(reason + again)


def answers_json(result: InterviewResult) -> dict[str, Any]:
    """The interview as one JSON object (the engine named, one entry per agent)."""
    return {
        "batch_id": result.batch_id, "run_id": result.run_id, "step": result.step,
        "question": result.question, "model": result.model, "offline": result.offline,
        "engine": OFFLINE_NOTE if result.offline else f"{result.model} (language model over HTTP)",
        "answers": [{k: r[k] for k in ("agent_id", "persona_id", "answer", "status", "error")}
                    for r in result.rows],
    }


def _table(result: InterviewResult) -> None:
    engine = OFFLINE_NOTE if result.offline else result.model
    say(f"run {result.run_id}, agents' state after step {result.step}; answered by: {engine}",
        to=out)
    say(f"question: {result.question}", to=out)
    table = Table(show_lines=True)
    table.add_column("agent", justify="right")
    table.add_column("persona", overflow="fold")
    table.add_column("answer", overflow="fold", ratio=1)
    for row in result.rows:
        answer = row["answer"] if row["status"] == "ok" else f"(failed: {row['error']})"
        table.add_row(str(row["agent_id"]), row["persona_id"], answer)
    out.print(table)
    from collections import Counter

    from personahub.agents.llm.failures import plain_reason
    from personahub.analysis.kept import kept_line

    reasons = Counter(plain_reason(r["error"]) for r in result.rows if r["status"] != "ok")
    kept = kept_line(f"interview {result.batch_id}", len(result.rows),
                     len(result.rows) - result.failed, reasons)
    say(f"{kept}; stored in interviews")

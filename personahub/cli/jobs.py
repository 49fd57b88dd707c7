"""personahub jobs (every job of every kind), runs (simulation runs with their scenario and
steps) and resume ID (any job by its id alone, through the job kernel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from personahub.cli.common import (
    emit_job_json,
    error_line,
    job_id_key,
    one_line_errors,
    out,
    print_whole,
    run_counts,
    say,
    summary_counts,
    verbosity,
)
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import awaiting_results, unreachable
from personahub.cli.options import DbOption, Shown, output_options
from personahub.core.store import DEFAULT_DB

# The columns personahub jobs shows: jobs-table columns (times in UTC), except "what",
# which no table holds.
LISTED = ("job_id", "kind", "status", "started_at", "finished_at", "what")
JOBS_CAPTION = "times in UTC; what: a few words from the job's config, not a column"


def _stamp(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _printed_plain(listed: list[dict[str, object]], as_json: bool, empty: str) -> bool:
    """Print what needs no table: listed as one JSON array (--json), or empty when
    nothing is listed. True when printed (the caller draws its table else)."""
    if as_json:
        out.print(json.dumps(listed, ensure_ascii=False), highlight=False, soft_wrap=True)
        return True
    if not listed:
        say(empty, to=out)
        return True
    return False


@one_line_errors
def jobs(
    db: DbOption = Path(DEFAULT_DB),
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind (run, synthesis, "
                                                  "expansion, text_to_persona, dedup, ...).")] = None,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status (running, "
                                                    "finished, partial, failed, interrupted, "
                                                    "superseded, awaiting_results).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array instead of a table.")] = False,
) -> None:
    """List every job in the database, newest first: job_id, kind, status, started_at, finished_at.

    Those are the jobs table's columns, by name (times in UTC); what, beside them, is a few words
    from the job's config, not a column. --json adds parent_id and error."""
    from rich.table import Table

    from personahub.any_job import job_rows

    listed = [{**r, "started_at": _stamp(r["started_at"]), "finished_at": _stamp(r["finished_at"])}
              for r in job_rows(db, kind=kind, status=status)]
    if _printed_plain(listed, as_json, f"no jobs in {db}"):
        return
    # the columns are the jobs table's, by their names (docs/database.md), but what
    table = Table(title=f"jobs in {db} (newest first)", caption=JOBS_CAPTION)
    for name in LISTED:
        # ids are what the user copies: never wrapped
        table.add_column(name, no_wrap=name in ("job_id", "kind", "status"))
    for job in listed:
        table.add_row(*(job[name] for name in LISTED))
    print_whole(table)


@one_line_errors
def runs(
    db: DbOption = Path(DEFAULT_DB),
    status: Annotated[str | None, typer.Option(help="Only runs with this status (running, "
                                                    "finished, failed, interrupted, ...).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array instead of a table.")] = False,
) -> None:
    """List the runs in the database, newest first: id, scenario, status, steps, started."""
    from rich.table import Table

    from personahub.analysis.live_queries import run_rows
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        rows = run_rows(con, status=status)
    finally:
        con.close()
    listed = [{**{k: v for k, v in r.items() if not k.endswith("_at")},
               "started": _stamp(r["started_at"]), "finished": _stamp(r["finished_at"])}
              for r in rows]
    if _printed_plain(listed, as_json, f"no runs in {db}"):
        return
    table = Table(title=f"runs in {db} (newest first)")
    table.add_column("run", no_wrap=True)  # what the user copies: never wrapped
    for name in ("scenario", "status", "steps", "started (UTC)"):
        table.add_column(name)
    for run in listed:
        table.add_row(run["run_id"], run["scenario"], run["status"],
                      f"{run['steps_done']}/{run['steps_planned']}", run["started"])
    print_whole(table)


@one_line_errors
@engine_options("llm", "max_failed_share", "ray_address", "ray_workers")
@output_options()
def resume(
    job_id: Annotated[str, typer.Argument(help="The job's id (personahub jobs lists them).")],
    db: DbOption = Path(DEFAULT_DB),
    cache: Annotated[str | None, typer.Option(
        "--cache", help="Model answer cache for this run of the job: off, record or replay "
                        "(default: off).")] = None,
    executor: Annotated[str | None, typer.Option(
        "--executor", help="Where the model calls run: local or ray (default: local).")] = None,
    allow_fewer: Annotated[bool, typer.Option(
        "--allow-fewer", help="Exit 0 when the resumed job holds fewer items than it asked for "
                              "(as synthesize --allow-fewer); otherwise that exits 1.")] = False,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Resume any stopped job by its id: it goes on with its own settings (what it makes, its
    seed and generation settings), asking with the model it recorded (--llm: another, e.g.
    with its credentials) and the cache and executor given here. A job that ends
    with fewer items than asked says so in one line and exits 1, unless --allow-fewer. A job
    still waiting for the results of its --provider-batch-file runs nothing: it prints the batch
    import command and exits 3."""
    settings = {"cache": cache, "executor": executor, "ray_address": engine.ray_address,
                "ray_workers": engine.ray_workers, "max_failed_share": engine.max_failed_share}
    with awaiting_results():  # a job waiting on its batch file: the import command, exit 3
        shortfall = _by_kernel(job_id, db, engine.llm, settings, shown.json)
    if shortfall:
        if not allow_fewer:
            error_line(f"{shortfall} (--allow-fewer accepts fewer)")
            raise typer.Exit(1)
        say(("note:", "yellow"), f" {shortfall} (allowed by --allow-fewer)")


def _by_kernel(job_id: str, db: Path, llm: str | None, engine: dict[str, object],
               as_json: bool) -> str | None:
    """Resume the job through the kernel (any_job.resume_job, as personahub.resume), with
    its report printed. Returns its shortfall (the line saying it holds fewer items than asked),
    if any."""
    from personahub import runtime
    from personahub.any_job import resume_job
    from personahub.cli.job_running import banner

    def on_ready(client: Any) -> None:
        if client is not None:
            banner(client)

    def on_start(job: str, resumed: bool) -> None:
        say("resuming job ", (job, "bold"), f" in {db}")

    resumed = resume_job(job_id, db, llm=llm, engine=engine, on_ready=on_ready,
                         on_start=on_start, warn=unreachable)
    kind, result = resumed.kind, resumed.result
    spec = runtime.registered_spec(kind)
    assert spec is not None  # resume_job refuses a kind with no spec
    if not result.ran:
        say("job ", (job_id, "bold"), " already finished; nothing to resume")
    shortfall = getattr(result.summary, "shortfall", None) or None
    if kind == "calibration":  # the calibrate command's console: 100 columns, tables under -v
        from personahub.pipelines.calibrate_console import console_lines

        report = console_lines(result.summary, db, verbose=verbosity() > 0)
    else:
        report = spec.report(result.summary, db)
    for line in report:
        if line != shortfall:  # said once, at the end, with what it means for the exit code
            out.print(line, highlight=False, soft_wrap=True)
    if as_json:
        if kind == "run":
            counts = run_counts(result.summary)
        else:
            counts = summary_counts(result.summary)
        emit_job_json("resume", db, job_id=job_id, id_key=job_id_key(kind), counts=counts,
                      kind=kind, **({"shortfall": shortfall} if shortfall else {}))
    return shortfall


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("jobs",): jobs, ("runs",): runs, ("resume",): resume}

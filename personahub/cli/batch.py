"""``--batch`` options of the model-calling commands, and ``personahub batch import`` (the
results of a ``--batch-file`` run elsewhere: vLLM ``run-batch``, a provider's console).

A job sent as batches writes the same rows as an online one (``pipelines/batch_jobs.py``);
``docs/batch.md`` says when it pays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from personahub.cli.common import DbOption, LlmOption, one_line_errors, out, say
from personahub.core.errors import AwaitingResults, PersonahubError
from personahub.core.store import DEFAULT_DB

BATCH_PANEL = "Batch"
DEFAULT_ONLINE_SIZE = 64  # items per transaction online
DEFAULT_BATCH_SIZE = 1000  # requests per provider batch (and items per transaction) with --batch

BatchOption = Annotated[bool, typer.Option(
    "--batch", rich_help_panel=BATCH_PANEL,
    help="Send the model calls as provider batches (the OpenAI Batch API: about half the "
         "price, results within the window). A resume polls the batches it made; see "
         "docs/batch.md.")]
BatchWindowOption = Annotated[str, typer.Option(
    "--batch-window", rich_help_panel=BATCH_PANEL,
    help="The batches' completion window (the provider's: 24h).")]
BatchFallbackOption = Annotated[Literal["batch", "online"], typer.Option(
    "--batch-fallback", rich_help_panel=BATCH_PANEL,
    help="Where a batch's failed or expired requests go again: a follow-up batch, or online.")]
BatchFileOption = Annotated[Path | None, typer.Option(
    "--batch-file", rich_help_panel=BATCH_PANEL,
    help="Write the requests to this JSONL file (OpenAI batch format) and stop, the job "
         "awaiting_results; run it elsewhere (e.g. vllm run-batch) and bring the results in "
         "with `personahub batch import`.")]
BatchPollOption = Annotated[float, typer.Option(
    "--batch-poll", min=0.001, rich_help_panel=BATCH_PANEL,
    help="Seconds before the first poll of a batch (the waits grow to 60).")]


def batch_engine(batch: bool, batch_size: int | None, window: str, fallback: str,
                 batch_file: Path | None, poll_s: float) -> dict[str, Any]:
    """The engine settings of the batch options (a job config's ``BatchFields``)."""
    if not batch and batch_file is None:
        return {"batch_size": batch_size or DEFAULT_ONLINE_SIZE}
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


@contextmanager
def awaiting_results() -> Iterator[None]:
    """A job that wrote its batch file ends here: what to do next, exit 0."""
    try:
        yield
    except AwaitingResults as exc:
        say(("awaiting results:", "yellow"), f" {exc}")
        raise typer.Exit(0) from None


@one_line_errors
def batch_import(
    results: Annotated[Path, typer.Argument(
        help="The results JSONL (OpenAI Batch API output/error lines or vLLM run-batch "
             "output).")],
    job: Annotated[str, typer.Option("--job", help="The job that wrote the batch file.")],
    db: DbOption = Path(DEFAULT_DB),
    llm: LlmOption = None,
) -> None:
    """Import the results of a --batch-file and go on with the job: its answers are committed
    as online ones, and it finishes or writes its next batch file."""
    from personahub import runtime
    from personahub.agents.llm.batch_lines import read_results_file
    from personahub.agents.llm.client import resolve_spec
    from personahub.core.batch_records import attach_results
    from personahub.core.jobs_store import find_job
    from personahub.core.store import connect

    lines = read_results_file(results)  # a bad file: one line naming it, nothing changed
    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database")
    con = connect(db)
    try:
        row = find_job(con, job)
        if row is None:
            raise PersonahubError(f"batch import: no job {job} in {db} (personahub jobs lists "
                                  "them)")
        handle = attach_results(con, row.kind, job, [line.custom_id for line in lines],
                                f"local:{results.resolve()}")
    finally:
        con.close()
    say(f"{len(lines)} results of batch file {handle.batch_id} imported for job ", (job, "bold"))
    spec = runtime.registered_spec(row.kind)
    if spec is None:
        raise PersonahubError(f"batch import: jobs of kind {row.kind!r} do not take batches")
    with awaiting_results():
        result = runtime.run(spec, {"llm": resolve_spec(llm), "batch": False}, db, resume=job)
    for line in spec.report(result.summary, db):
        out.print(line, highlight=False, soft_wrap=True)


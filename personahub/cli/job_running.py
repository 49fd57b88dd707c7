"""What a job command shows and hears while its job runs: the engine banner, the progress
display with the client's call counts, the job's id as it starts, the preview of what it
made, provider batches' states, and the exit of a job that waits for its batch file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import typer
from rich.progress import Progress

from personahub.cli.common import console, note_job, say, verbosity
from personahub.core.errors import AwaitingResults, StillAwaiting

if TYPE_CHECKING:  # LangChain takes seconds to import: only commands that call a model load it
    import duckdb

    from personahub.core.contracts import StructuredCaller


class CountsCalls(Protocol):
    """What a progress display reads of a model client: its running call counts."""

    @property
    def stats(self) -> Any: ...


def banner(client: StructuredCaller) -> None:
    """Say which engine answers, plainly."""
    if client.is_offline:
        say("engine: ", ("offline", "bold"), " — deterministic offline engine; "
            "no language model is used.")
    else:
        say("engine: ", (client.label, "bold"), " (language model over HTTP)")


def unreachable(label: str) -> None:
    """Warn that one endpoint of several does not answer (the others are used)."""
    say(("warning:", "yellow"), f" endpoint {label} is unreachable; using the others")


def job_progress(client: CountsCalls | None = None, *, counts: Any = None) -> Progress:
    """Return a progress display for a job: silent under -q, a line per batch or step under -v.

    It shows the client's call counts when the job calls a model; pass a
    progress.LateCounts as `counts` when the job kernel builds the client later."""
    from personahub.cli.progress import JobProgress

    return JobProgress(console, counts if counts is not None
                       else client.stats if client is not None else None,
                       every_update=verbosity() > 0)


class JobHooks:
    """The callbacks a job command hands its job.

    on_ready runs once the client is built: progress shows its call counts from then on,
    and its banner prints. on_start names the job's id as it starts or resumes, so --json
    can still print it if the job stops.

    Args:
        noun: how the console names the job ("job", "interview", ...).
        db: the database the job writes.
        show_banner: print the client's banner when it is ready.
    """

    def __init__(self, noun: str, db: Path, *, show_banner: bool = True) -> None:
        from personahub.cli.progress import LateCounts

        self.noun, self.db, self.show_banner = noun, db, show_banner
        self.counts = LateCounts()

    def on_ready(self, client: Any) -> None:
        """Follow the client's call counts (None: a job that calls no model)."""
        if client is None:
            return
        self.counts.follow(client.stats)
        if self.show_banner:
            banner(client)

    def on_start(self, job_id: str, resumed: bool) -> None:
        """Name the job on stderr and remember it for --json."""
        if resumed:
            say(f"resuming {self.noun} ", (job_id, "bold"), f" in {self.db}")
            note_job(self.noun, job_id, self.db)
        else:
            started(self.noun, job_id, self.db)

    def progress(self) -> Progress:
        """Return the progress display, with the client's counts once it is ready."""
        return job_progress(counts=self.counts)

    def run(self, spec: Any, config: Any, *, resume: str | None, fresh: bool, label: str,
            total: int | None = None, finishing: str | None = None) -> Any:
        """Run a job kind under one progress bar, and say so when a resumed job had nothing left.

        Args:
            spec: the kind's job spec.
            config: its config (or, on resume, the settings to check against the stored one).
            resume: the job id to go on with.
            fresh: start a new job even where one with these settings is unfinished.
            label: the bar's label.
            total: what the bar counts to (None: unknown).
            finishing: what the job does once every call is answered ("scoring the answers"),
                said beside the label from then on, with the calls' rate kept as it was.

        Returns:
            The kernel's result (``job_id``, ``summary``, ``ran``).
        """
        from personahub import runtime

        with self.progress() as bar, awaiting_results():
            handle = bar.add_task(label, total=total)
            hook = batch_progress(bar, handle, label, finishing=finishing,
                                  on_finishing=self.counts.freeze)
            result = runtime.run(spec, config, self.db, resume=resume, fresh=fresh,
                                 on_ready=self.on_ready, on_start=self.on_start, warn=unreachable,
                                 progress=hook)
            if finishing is not None:
                bar.update(handle, description=f"{label} · done")
        if not result.ran:
            say(f"{self.noun} ", (result.job_id, "bold"), " already finished; nothing to resume")
        return result


def started(what: str, key: str, db: Path) -> None:
    """Name a job on stderr as it starts: its id is what resumes it if it stops."""
    say(f"{what} ", (key, "bold"), f" started in {db}")
    note_job(what, key, db)


PREVIEW_SOURCE_CHARS = 80  # a preview row's persona (or text) at most, on one line


PREVIEW_OUTPUT_CHARS = 240  # and its output


def read_after_job(db: Path) -> duckdb.DuckDBPyConnection:
    """Open db read-only for what a command prints after its job (preview, kept shares), DuckDB
    held to SUMMARY_MEMORY_MB: those reads join the job's rows with the whole hub, and DuckDB's
    default pool (most of the machine) kept every block they read, so the command's peak grew
    with the hub."""
    from personahub.core.store import connect
    from personahub.personas.hub_memory import SUMMARY_MEMORY_MB, bound_memory

    con = connect(db, read_only=True)
    bound_memory(con, SUMMARY_MEMORY_MB)
    return con


def print_preview(what: str, owner: str, per_kind: int, *, db: Path) -> None:
    """Print the end-of-job table of sampled rows (analysis.preview) on stderr.

    `what` is job, run, corpus or expansion and `owner` its id; rows are read read-only
    from db. Nothing prints under -q, when per_kind is 0, or when there is nothing to show."""
    if per_kind < 1 or verbosity() < 0 or not Path(db).exists():
        return
    from rich.table import Table

    from personahub.analysis import preview as previews

    load = {"job": previews.job_preview, "run": previews.run_preview,
            "corpus": previews.corpus_preview, "expansion": previews.expansion_preview}[what]
    con = read_after_job(db)
    try:
        preview = load(con, owner, per_kind)
    finally:
        con.close()
    if not preview.samples:
        return
    counts = ", ".join(f"{min(per_kind, n)} of {n} {kind}" for kind, n in preview.totals.items())
    kinds = len(preview.totals) > 1  # one kind: the title names it; else above each id
    table = Table(title=f"preview of {preview.title}: {counts}", title_justify="left",
                  show_lines=True)
    # an id is what show takes: never wrapped or cut (the text columns give way)
    table.add_column("kind / id" if kinds else "id", no_wrap=True)
    table.add_column(preview.source_label)
    table.add_column(preview.output_label)
    for sample in preview.samples:
        output = previews.clip(sample.output, PREVIEW_OUTPUT_CHARS)
        if sample.is_duplicate:
            output = f"(near-duplicate of {sample.duplicate_of}) {output}"
        table.add_row(f"{sample.kind}\n{sample.item_id}" if kinds else sample.item_id,
                      previews.clip(sample.source, PREVIEW_SOURCE_CHARS), output)
    console.print(table, highlight=False)
    say(f"  personahub show {preview.samples[0].item_id} --db {db}  "
        "prints one whole; --preview 0 leaves this table out")


def batch_progress(bar: Any, task: Any, label: str, *, finishing: str | None = None,
                   on_finishing: Callable[[], None] | None = None
                   ) -> Callable[[str, int, int | None], None]:
    """Return a progress hook that shows a batch's state (batch ID in_progress 40/64) beside the
    label, and the items done as the bar; with finishing, once every item is done, what the job
    does next beside the label (on_finishing is called then, once)."""

    def hook(phase: str, done: int, total: int | None) -> None:
        if phase.startswith("batch "):
            bar.update(task, description=f"{label} · {phase}")
            return
        description = label
        if finishing is not None and total is not None and done >= total:
            description = f"{label} · {finishing}"
            if on_finishing is not None:
                on_finishing()
        bar.update(task, completed=done, total=total, description=description)

    return hook


#: the exit code of a resume whose job still waits for its batch file's results (docs/cli.md)
EXIT_AWAITING = 3


@contextmanager
def awaiting_results() -> Iterator[None]:
    """End a job that wrote its batch file: say what to do next and exit 0.

    A resume while the batch still awaits results prints the same line but exits
    EXIT_AWAITING, so a script polling with personahub resume can tell "not done yet"
    from both success and failure."""
    try:
        yield
    except AwaitingResults as exc:
        say(("awaiting results:", "yellow"), f" {exc}")
        raise typer.Exit(EXIT_AWAITING if isinstance(exc, StillAwaiting) else 0) from None

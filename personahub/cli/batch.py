"""personahub provider-batch import: the results of a --provider-batch-file run elsewhere (vLLM
run-batch, a provider's console); the --provider-batch options are in cli/engine.py.

A job sent as batches writes the same rows as an online one (pipelines/provider_batch_jobs.py);
docs/batch.md says when it pays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from personahub.cli.common import errors, one_line_errors, out, say
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import awaiting_results
from personahub.cli.options import DbOption
from personahub.core.errors import PersonahubError
from personahub.core.store import DEFAULT_DB


@one_line_errors
@engine_options("llm")
def batch_import(
    results: Annotated[Path, typer.Argument(
        help="The results JSONL (OpenAI Batch API output/error lines or vLLM run-batch "
             "output).")],
    job: Annotated[str, typer.Option("--job", help="The job that wrote the batch file.")],
    db: DbOption = Path(DEFAULT_DB),
    *,
    engine: Engine,
) -> None:
    """Import the results of a --provider-batch-file and go on with the job: its answers are committed
    as online ones, and it finishes or writes its next batch file."""
    from personahub import runtime
    from personahub.core.jobs_store import find_job
    from personahub.core.provider_batch_records import attach_results
    from personahub.core.store import connect
    from personahub.models.client import resolve_spec
    from personahub.models.provider_batch_lines import read_results_file

    lines = read_results_file(results)  # a bad file: one line naming it, nothing changed
    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database")
    con = connect(db)
    try:
        row = find_job(con, job)
        if row is None:
            raise PersonahubError(f"provider-batch import: no job {job} in {db} (personahub jobs lists "
                                  "them)")
        handle = attach_results(con, row.kind, job, [line.custom_id for line in lines],
                                f"local:{results.resolve()}")
    finally:
        con.close()
    say(f"{len(lines)} results of batch file {handle.batch_id} imported for job ", (job, "bold"))
    spec = runtime.registered_spec(row.kind)
    if spec is None:
        raise PersonahubError(f"provider-batch import: jobs of kind {row.kind!r} do not take batches")
    with awaiting_results():
        result = runtime.run(spec, {"llm": resolve_spec(engine.llm), "provider_batch": False}, db, resume=job)
    for line in spec.report(result.summary, db):
        out.print(line, highlight=False, soft_wrap=True)


def old_batch_group_note() -> None:
    """Say on stderr that ``personahub batch`` is the old name of ``personahub provider-batch``."""
    say(("note:", "yellow"), " personahub batch is deprecated; it is called personahub "
        "provider-batch now", to=errors)


#: this module's commands by path: personahub/cli/app.py registers them (``batch`` is the
#: group's old name, hidden)
COMMANDS = {("provider-batch", "import"): batch_import, ("batch", "import"): batch_import}

"""personahub view and run --view: the live view of a run in a browser (loopback only).

A DuckDB file being written by one process cannot be opened by another, so a running run is
watched from its own process (run --view); view --db serves a database no process is
writing (a finished or stopped run) read-only. analysis/live_view.py says how.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer

from personahub.cli.common import one_line_errors, say, serve_until_stopped
from personahub.cli.options import DbOption
from personahub.core.dbcheck import DatabaseFileError
from personahub.core.errors import PersonahubError
from personahub.core.store import DEFAULT_DB

DEFAULT_VIEW_PORT = 8765
ViewPortOption = Annotated[int, typer.Option(
    "--port", min=0, max=65535, help="Port on 127.0.0.1 (0 picks a free one).")]


@one_line_errors
def view(
    db: DbOption = Path(DEFAULT_DB),
    run: Annotated[str | None, typer.Option(
        "--run", metavar="RUN_ID", help="The run to show first (default: the newest).")] = None,
    port: ViewPortOption = DEFAULT_VIEW_PORT,
    experiment: Annotated[str | None, typer.Option(
        "--experiment", metavar="ID",
        help="Show this experiment's arms side by side (each outcome over the steps, pooled "
             "over its finished replicates) instead of a run.")] = None,
) -> None:
    """Serve a page on 127.0.0.1 showing a run: graph, stream, survey answers per step, calls.

    The database is opened read-only, so it must not be held by a running process: to watch a
    run while it runs, start it with personahub run SCENARIO --view (an experiment: personahub
    experiment SCENARIO --view).
    """
    from personahub.analysis.live_queries import resolve_run
    from personahub.analysis.live_view import ExperimentFeed, ViewSource, start_view
    from personahub.core.errors import UsageError
    from personahub.core.store import connect
    from personahub.sim.experiment_store import finished_arm_runs

    if experiment is not None and run is not None:
        raise UsageError("--run and --experiment: give one (a run, or an experiment's arms)")

    try:
        con = connect(db, read_only=True)
    except DatabaseFileError as exc:
        if "lock" not in str(exc).lower():
            raise
        raise PersonahubError(f"--db {db}: another process holds it (DuckDB lets no other process "
                              "open a file being written); watch a run while it runs with "
                              "personahub run SCENARIO --view") from None
    if run is not None and resolve_run(con, run) is None:
        con.close()
        raise PersonahubError(f"--run {run}: no such run in {db}")
    if experiment is not None and finished_arm_runs(con, experiment).empty:
        con.close()
        raise PersonahubError(f"--experiment {experiment}: no such experiment in {db} (none of "
                              "its runs finished)")
    source = ViewSource(lambda: con, run)
    feed = ExperimentFeed(source, experiment) if experiment is not None else None
    handle = start_view(source, port=port, experiments=feed)
    url = f"{handle.url}experiment?id={quote(experiment)}" if experiment is not None \
        else handle.url
    say(f"view: {url} ({db}, read-only); Ctrl-C stops.")
    serve_until_stopped(handle.stop)


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("view",): view}

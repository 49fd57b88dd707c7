"""``personahub view`` and ``run --view``: the live view of a run in a browser (loopback only).

A DuckDB file being written by one process cannot be opened by another, so a running run is
watched from its own process (``run --view``); ``view --db`` serves a database no process is
writing (a finished or stopped run) read-only. ``analysis/live_view.py`` says how.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from personahub.cli.common import DbOption, one_line_errors, say
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
) -> None:
    """Serve a page on 127.0.0.1 showing a run: graph, stream, survey answers per step, calls.

    The database is opened read-only, so it must not be held by a running process: to watch a
    run while it runs, start it with personahub run SCENARIO --view.
    """
    from personahub.analysis.live_queries import resolve_run
    from personahub.analysis.live_view import ViewSource, start_view
    from personahub.core.store import connect

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
    handle = start_view(ViewSource(lambda: con, run), port=port)
    say(f"view: {handle.url} ({db}, read-only); Ctrl-C stops.")
    try:
        while True:
            time.sleep(3600)
    finally:
        handle.stop()

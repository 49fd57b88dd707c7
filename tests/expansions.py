"""Expansions in tests: the expansion job spec run on a test's open hub connection with a
client of its own (a fake or an offline client), as the command and the API run it."""

from __future__ import annotations

from typing import Any

from personahub import runtime
from personahub.personas.expand import ExpandSummary
from personahub.pipelines.expand import EXPANSION, ExpandConfig


def db_of(con: Any) -> str:
    """The file behind ``con``."""
    return str(con.execute("SELECT path FROM duckdb_databases() "
                           "WHERE database_name = current_database()").fetchall()[0][0])


def expand_hub(con: Any, caller: Any, *, start_ids: Any = None, resume: str | None = None,
               progress: Any = None, **options: Any) -> ExpandSummary:
    """Expand the hub behind ``con`` with ``caller`` (``resume``: go on with that expansion,
    ``options`` being how it asks and what it is expected to make)."""
    db = db_of(con)
    config: Any
    if resume is None:
        config = ExpandConfig(db=db, start_ids=None if start_ids is None else tuple(start_ids),
                              **options)
    else:
        config = {"db": db, **options}
    result = runtime.run(EXPANSION, config, db, resume=resume, client=caller, con=con,
                         progress=progress)
    return result.summary

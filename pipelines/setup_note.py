"""The one line a run says about its setup expansion: how many answers the gate kept, and why not
the rest.

A run whose setup expansion goes on past rejected answers has a smaller graph than the scenario
asks for; this line says by how much and why, from the database, so a resumed run says it too.
"""

from __future__ import annotations

import duckdb

from personahub.core.jobs_store import list_jobs
from personahub.personas.expand import kept_targets
from personahub.personas.quality import rejected_counts, tally


def setup_expansion_line(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """Return 'setup expansion kept K of N answers (rejected: echo 3, ...)', or None.

    None when the run has no setup expansion or its gate rejected nothing. K counts the answers
    that joined the graph (a new person, or a link to one already in it).
    """
    children = list_jobs(con, kind="expansion", parent_id=run_id)
    if not children:
        return None
    expansion_id = children[0].job_id
    rejected = rejected_counts(con, source="expand", job_id=expansion_id)
    if not rejected:
        return None
    kept = kept_targets(con, expansion_id)
    reasons = ", ".join(f"{reason} {n}" for reason, n in tally(rejected).items())
    return (f"setup expansion kept {kept} of {kept + sum(rejected.values())} answers "
            f"(rejected: {reasons})")

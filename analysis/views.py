"""Install the documented analysis views (``analysis/views.sql``) on a DuckDB connection.

Every writer stores them in the database file (``personahub.core.stored_views``, from
``core.store.connect``), so other DuckDB clients see them. The commands' readers lay TEMP copies
over them on their own read-only connection before running SQL or a report when the file does
not hold this version's: the views then match the installed code even on a file another version
wrote last, and nothing in the file changes. ``temporary=False`` stores them on a writable
connection.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import duckdb

from personahub.core.stored_views import (
    holds_views,
    stand_in_missing_tables,
    statements,
    views_text,
)

VIEW_NAMES = ("v_emissions_by_step", "v_duplicate_rate", "v_run_usage", "v_run_cost",
              "v_agent_activity", "v_message_edges", "v_persona_degree", "v_synth_jobs",
              "v_rejected", "v_persona_demographics", "v_item_sources", "v_items", "v_runs")


def views_sql() -> str:
    """The text of ``analysis/views.sql``."""
    return views_text()


def view_statements(*, temporary: bool) -> list[str]:
    """The CREATE VIEW statements, TEMP or persistent."""
    return statements(views_sql(), temporary=temporary)


def install_views(con: duckdb.DuckDBPyConnection, *, temporary: bool = True) -> list[str]:
    """Create (or replace) every analysis view on ``con``; returns the view names.

    With ``temporary=True`` nothing is laid when the file stores these views already (TEMP
    copies would list every view twice), and tables the file lacks (an empty file) are stood in
    for by empty TEMP tables, so every view exists and reads as empty.
    """
    if temporary:
        if holds_views(con):
            return list(VIEW_NAMES)
        stand_in_missing_tables(con)
    for statement in view_statements(temporary=temporary):
        con.execute(statement)
    return list(VIEW_NAMES)


def query_files() -> dict[str, Path]:
    """Ready-made queries shipped in ``analysis/queries`` by name (file stem)."""
    folder = Path(str(resources.files("personahub.analysis").joinpath("queries")))
    return {p.stem: p for p in sorted(folder.glob("*.sql"))}

"""Install the analysis views on a DuckDB connection.

Writers store them in the file, so other DuckDB clients see them; readers of a file holding
another version's lay TEMP copies over them without changing the file.
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
    """Return the text of views.sql."""
    return views_text()


def view_statements(*, temporary: bool) -> list[str]:
    """Return the CREATE VIEW statements, TEMP or persistent."""
    return statements(views_sql(), temporary=temporary)


def install_views(con: duckdb.DuckDBPyConnection, *, temporary: bool = True) -> list[str]:
    """Create or replace every analysis view; returns the view names.

    Missing tables get empty TEMP stand-ins, so every view exists.
    """
    if temporary:
        if holds_views(con):
            return list(VIEW_NAMES)
        stand_in_missing_tables(con)
    for statement in view_statements(temporary=temporary):
        con.execute(statement)
    return list(VIEW_NAMES)


def query_files() -> dict[str, Path]:
    """Return the shipped ready-made queries by name (file stem)."""
    folder = Path(str(resources.files("personahub.analysis").joinpath("queries")))
    return {p.stem: p for p in sorted(folder.glob("*.sql"))}

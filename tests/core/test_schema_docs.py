"""docs/database.md documents every table and column the database has, and every analysis view."""

import re
from pathlib import Path

from personahub.core.store import connect

DOC = Path(__file__).resolve().parents[2] / "docs" / "database.md"


def documented() -> dict[str, str]:
    sections = re.split(r"^### ", DOC.read_text(), flags=re.MULTILINE)[1:]
    return {s.split("\n", 1)[0].strip(): s for s in sections}


def test_every_table_and_column_is_documented(tmp_path):
    con = connect(tmp_path / "schema.duckdb")
    tables = {t for (t,) in con.execute(
        "select table_name from information_schema.tables where table_type = 'BASE TABLE'").fetchall()}
    docs = documented()
    assert tables <= set(docs), f"undocumented tables: {tables - set(docs)}"
    for table in tables:
        columns = [c for (c,) in con.execute(
            "select column_name from information_schema.columns where table_name = ?", [table]).fetchall()]
        missing = [c for c in columns if f"`{c}`" not in docs[table]]
        assert not missing, f"{table}: undocumented columns {missing}"


def test_every_analysis_view_is_documented():
    from personahub.analysis.views import install_views

    con = connect(":memory:")
    install_views(con)
    views = {v for (v,) in con.execute(
        "select view_name from duckdb_views() where not internal").fetchall()}
    text = DOC.read_text()
    section = text[text.index("## Views"):text.index("\n## ", text.index("## Views") + 1)]
    assert len(views) >= 9
    missing = sorted(v for v in views if f"| `{v}` |" not in section)
    assert not missing, f"views not in the Views table: {missing}"


def test_every_view_column_has_its_own_line(tmp_path):
    """Each analysis view has a ``### v_name`` section under "## Views" with one ``- `column` —``
    line per column the view has in a database made by this version."""
    con = connect(tmp_path / "views.duckdb")
    text = DOC.read_text()
    start = text.index("## Views")
    views_part = text[start:text.index("\n## ", start + 1)]
    sections = {s.split("\n", 1)[0].strip(): s
                for s in re.split(r"^### ", views_part, flags=re.MULTILINE)[1:]}
    views = [v for (v,) in con.execute(
        "select view_name from duckdb_views() where not internal and not temporary").fetchall()]
    assert len(views) >= 13
    undocumented = {}
    for view in views:
        columns = [c for (c,) in con.execute(
            "select column_name from information_schema.columns where table_name = ? "
            "order by ordinal_position", [view]).fetchall()]
        lines = sections.get(view, "")
        missing = [c for c in columns if f"\n- `{c}` —" not in lines]
        if missing:
            undocumented[view] = missing
    assert not undocumented, f"view columns without their line in docs/database.md: {undocumented}"

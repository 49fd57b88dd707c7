"""``synthesize``, ``run``, ``personas from-text`` and ``personas expand`` end with
a table of sampled outputs beside their persona (``--preview N``; 0 or ``-q``: none), and
``personahub show ID`` prints one item, emission or persona whole."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.cli_helpers import invoke, one_line_error, usage_error
from tests.core.test_jobs import _corpus, hub

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="previewed", personas=PersonaSource(limit=4), graph=GraphGrowth(hops=0,
                    acquaintances=2), steps=1, tasks=("instruction",), seed=1)
"""


def _flat(text: str) -> str:
    """A table's cells as one run of words (the table wraps them at 80 columns)."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


def _query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_synthesize_ends_with_a_preview_of_items_beside_their_persona(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    result = invoke("synthesize", "math_problem", "--n", 5, "--db", db, "--preview", 2)
    assert result.exit_code == 0, result.output
    assert "preview of job synth-" in result.stderr and ": 2 of 5 math_problem" in result.stderr
    assert "preview" not in result.stdout  # chatter, not results
    shown = [(i, p) for i, p in _query(db, "SELECT item_id, persona_id FROM synth_items")
             if i in result.stderr]
    assert len(shown) == 2
    flat = _flat(result.stderr)
    for item_id, persona_id in shown:  # each id's row holds its persona's words
        (persona,) = _query(db, f"SELECT text FROM personas WHERE persona_id = '{persona_id}'")[0]
        row = flat[flat.index(item_id):]
        assert row.split()[1:4] == persona.split()[:3]
    assert f"personahub show {shown[0][0]}" in result.stderr or "personahub show s" in result.stderr


def test_preview_0_and_quiet_leave_the_table_out(tmp_path: Path) -> None:
    off = invoke("synthesize", "instruction", "--n", 3, "--db", tmp_path / "a.duckdb", "--preview", 0)
    assert off.exit_code == 0 and "preview of" not in off.stderr
    quiet = invoke("synthesize", "instruction", "--n", 3, "--db", tmp_path / "b.duckdb", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_run_previews_its_emissions(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    hub(db, 4)
    (tmp_path / "previewed.py").write_text(SCENARIO)
    result = invoke("run", tmp_path / "previewed.py", "--db", db, "--preview", 1)
    assert result.exit_code == 0, result.output
    (run_id,) = _query(db, "SELECT run_id FROM runs")[0]
    assert f"preview of run {run_id}: 1 of" in result.stderr
    emitted = {e for (e,) in _query(db, "SELECT emission_id FROM emissions")}
    assert any(e in result.stderr for e in emitted)


def test_from_text_and_expand_preview_the_personas_they_made(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    hub(db, 4)
    made = invoke("personas", "from-text", _corpus(db), "--relations", "read", "--db", db)
    assert made.exit_code == 0, made.output
    assert "preview of corpus" in made.stderr and "text " in made.stderr
    grown = invoke("personas", "expand", "--hops", 1, "--limit", 2, "--db", db, "--preview", 1)
    assert grown.exit_code == 0, grown.output
    assert "preview of expansion" in grown.stderr and "related persona" in grown.stderr
    new = {p for (p,) in _query(db, "SELECT persona_id FROM personas WHERE source = 'expand'")}
    assert sum(p in grown.stderr for p in new) == 1



def test_expand_reads_its_preview_and_kept_shares_within_a_share_of_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preview and kept shares join the expansion's rows with the whole hub after the job:
    DuckDB is held to SUMMARY_MEMORY_MB there (on main each read ran at DuckDB's default limit,
    most of the machine, and the pool kept every block read)."""
    from personahub.analysis import kept, preview

    db = tmp_path / "h.duckdb"
    hub(db, 4)
    seen: list[str] = []

    def watching(read):  # type: ignore[no-untyped-def]
        def watched(con, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
            return read(con, *args, **kwargs)
        return watched

    monkeypatch.setattr(preview, "expansion_preview", watching(preview.expansion_preview))
    monkeypatch.setattr(kept, "kept_lines", watching(kept.kept_lines))
    grown = invoke("personas", "expand", "--hops", 1, "--limit", 2, "--db", db, "--preview", 1)
    assert grown.exit_code == 0, grown.output
    assert "preview of expansion" in grown.stderr and seen == ["64.0 MiB", "64.0 MiB"]

def test_show_prints_one_whole_and_refuses_unknown_ids(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert invoke("synthesize", "instruction", "--n", 2, "--db", db, "-q").exit_code == 0
    item_id, text, persona = _query(db, "SELECT i.item_id, i.text, p.text FROM synth_items i "
                                        "JOIN personas p USING (persona_id) LIMIT 1")[0]
    result = invoke("show", item_id, "--db", db)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"synthesis item {item_id}\n")
    assert f"  {persona}\n" in result.stdout and text in result.stdout  # whole, not clipped
    assert invoke("show", item_id[:8], "--db", db).stdout == result.stdout
    line = one_line_error(invoke("show", "s0000000000000zz", "--db", db))
    assert "no synthesis item, emission, persona or run has this id" in line
    usage_error(invoke("show", " ", "--db", db))


@pytest.mark.parametrize("command", [["synthesize", "instruction"], ["run", "x.py"],
                                     ["personas", "from-text", "c.txt"], ["personas", "expand"]])
def test_a_negative_preview_is_a_usage_error(command: list[str], tmp_path: Path) -> None:
    assert "--preview" in usage_error(invoke(*command, "--preview", -1, "--db", tmp_path / "x.duckdb"))

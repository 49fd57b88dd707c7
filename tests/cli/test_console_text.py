"""What the console prints of data is the data. A persona's ``[red]x[/red]`` is
not rich markup and its ``:link:`` is not an emoji code, in every command that shows it; the
counts of one screen say what each counts; an expansion's preview numbers its own hops."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from tests.cli_helpers import invoke

MARKED = ["A [red]x[/red] baker :link: in a river town who bakes rye bread at dawn",
          "A [bold]ferry[/bold] pilot :smile: on the wide river who knows every sandbank"]


def _flat(text: str) -> str:
    """A table's cells as one run of words (tables wrap at 80 columns)."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


def _hub(tmp_path: Path, texts: list[str]) -> Path:
    db = tmp_path / "hub.duckdb"
    source = tmp_path / "people.jsonl"
    source.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts), encoding="utf-8")
    result = invoke("personas", "import", source, "--db", db)
    assert result.exit_code == 0, result.output
    return db


def _ids(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT persona_id FROM personas WHERE hop = 0 "
                                          "ORDER BY text").fetchall()]
    finally:
        con.close()


def test_markup_and_emoji_codes_in_data_print_verbatim(tmp_path: Path) -> None:
    db = _hub(tmp_path, MARKED)
    pilot, baker = _ids(db)  # in text order: "A [bold]..." first
    shown = {
        "sample": invoke("personas", "sample", "--contains", "baker", "--db", db),
        "show": invoke("show", baker, "--db", db),
        "sql": invoke("sql", "--db", db, "SELECT text FROM personas WHERE hop = 0 ORDER BY text"),
        "expand": invoke("personas", "expand", "--hops", 1, "--fanout", 1, "--db", db),
    }
    for command, result in shown.items():
        assert result.exit_code == 0, (command, result.output)
        text = _flat(result.stdout + result.stderr)
        assert "[red]x[/red]" in text and ":link:" in text, (command, text)
        assert "🔗" not in text, command
    expand = _flat(shown["expand"].stdout + shown["expand"].stderr)
    assert "[bold]ferry[/bold]" in expand and ":smile:" in expand and "😄" not in expand


def test_expand_summary_says_what_each_count_counts(tmp_path: Path) -> None:
    db = _hub(tmp_path, MARKED)
    result = invoke("personas", "expand", "--hops", 1, "--fanout", 1, "--db", db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("personas rejected by the quality gate: ") for line in lines)
    assert "expand (who is close to a persona): 2 of 2 calls kept (100%)" in lines
    assert any(line.startswith("expand, linking (are two personas related): ") for line in lines)
    assert not any(line.startswith(("expand:", "expand🔗", "rejected by")) for line in lines)


def test_a_second_expansion_previews_its_own_hops(tmp_path: Path) -> None:
    """Expanding a hub an earlier expansion grew: ``--hops 1`` previews ``hop 1`` only (a
    persona's stored hop counts from a seed, and the new ones here are at hop 2 of the hub)."""
    db = _hub(tmp_path, MARKED)
    assert invoke("personas", "expand", "--hops", 1, "--fanout", 1, "--db", db,
                  "--preview", 0).exit_code == 0
    result = invoke("personas", "expand", "--hops", 1, "--fanout", 1, "--fresh", "--db", db)
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT max(hop) FROM personas").fetchone() == (2,)
    finally:
        con.close()
    preview = _flat(result.stderr)
    assert "hop 1" in preview and "hop 2" not in preview, preview


SURVEYED = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey

SCENARIO = Scenario(name="surveyed", personas=PersonaSource(limit=6), graph=GraphGrowth(hops=0,
                    acquaintances=2), steps=2, tasks=("instruction",), seed=3,
                    surveys=(Survey(id="ferry", steps=(1, 2), answer="choice",
                                    options=("keep it", "close it", "not sure"),
                                    question="Should the ferry keep running?"),))
"""

NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


def test_run_summary_shows_each_survey_and_the_queries_the_readme_promises(
        tmp_path: Path) -> None:
    """The run summary has a line per survey (its question, its top answers with shares, at
    the last step asked), and as many queries to try as the README's quick start says."""
    scenario = tmp_path / "surveyed.py"
    scenario.write_text(SURVEYED, encoding="utf-8")
    db = tmp_path / "run.duckdb"
    result = invoke("run", scenario, "--db", db, "--preview", 0)
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        top = con.execute("SELECT answer_choice, count(*) AS n FROM survey_answers WHERE step = 2 "
                          "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1").fetchone()
    finally:
        con.close()
    assert top is not None
    summary = _flat(result.stdout)
    assert 'ferry, step 2: "Should the ferry keep running?"' in summary, summary
    assert f"{top[0]} {top[1] / 6:.0%}" in summary and "(of 6 answers)" in summary
    hints = [line for line in result.stdout.splitlines() if line.startswith("  personahub sql")]
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text(
        encoding="utf-8").split())  # a sentence may wrap anywhere
    promised = readme.split("## Quick start", 1)[1].split(" queries to try", 1)[0].split()[-1]
    assert NUMBERS[promised] == len(hints)

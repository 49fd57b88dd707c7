"""``analysis.preview``: the sampled rows previews and reports show (each output beside the persona
that wrote it), the outliers, and ``show``'s lookup of one item, emission or persona."""

from __future__ import annotations

import html
import json
from pathlib import Path

import duckdb
import pytest

from personahub.analysis.preview import (
    clip,
    corpus_preview,
    expansion_preview,
    job_preview,
    outliers,
    run_preview,
    show,
)
from personahub.analysis.report import write_report
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import connect, insert_rows

PERSONAS = {f"p{i:015x}": f"Persona number {i}, a {('baker', 'nurse', 'pilot')[i % 3]}"
            for i in range(1, 7)}


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Six personas, a job of two tasks (one item a near-duplicate), a run's emissions, a
    text-to-persona corpus and an expansion, written as the jobs write them."""
    con = connect(tmp_path / "p.duckdb")
    insert_rows(con, "personas", [{"persona_id": pid, "text": text, "gate": "passed"}
                                    for pid, text in PERSONAS.items()])
    ids = list(PERSONAS)
    items = []
    for i, pid in enumerate(ids):
        task = "math_problem" if i < 4 else "instruction"
        items.append({"item_id": f"s{i:015x}", "job_id": "job-1", "persona_id": pid, "task": task,
                      "prompting": "zero-shot", "content": json.dumps({"text": "x"}),
                      "text": f"output {i} " + "word " * (i * 5), "is_duplicate": i == 0,
                      "duplicate_of": "s000000000000003" if i == 0 else None})
    items.append({"item_id": "sfff000000000000", "job_id": "job-2", "persona_id": ids[0],
                  "task": "math_problem", "prompting": "zero-shot", "content": "{}",
                  "text": "another job's item"})
    insert_rows(con, "synth_items", items)
    insert_rows(con, "emissions", [
        {"emission_id": f"run-1:1:{a}", "run_id": "run-1", "step": 1, "agent_id": a,
         "persona_id": ids[a], "task": "post" if a % 2 else "npc_dialogue",
         "content": "{}", "text": f"emission of agent {a}"} for a in range(4)])
    insert_rows(con, "personas", [
        {"persona_id": "p0000000000000a1", "text": "A reader of the harbour gazette",
         "source": "text-to-persona", "hop": 0, "gate": "passed", "attributes": json.dumps(
             {"relation": "read", "text_id": "t7", "corpus": "news.jsonl"})},
        {"persona_id": "p0000000000000b1", "text": "Her younger brother, a ferry mechanic",
         "source": "expand", "hop": 1, "gate": "passed", "attributes": json.dumps({"parent": ids[1],
                                                                   "relation": "brother"})}])
    insert_rows(con, "expansion_frontier", [
        {"expansion_id": "exp-1", "hop": 0, "position": 0, "persona_id": ids[1], "status": "done",
         "created": json.dumps(["p0000000000000b1"])}])
    return con


def test_a_job_preview_puts_each_output_beside_its_persona(con: duckdb.DuckDBPyConnection) -> None:
    preview = job_preview(con, "job-1", 2)
    assert preview.kinds() == ["instruction", "math_problem"]
    assert preview.totals == {"instruction": 2, "math_problem": 4}
    assert [s.kind for s in preview.samples].count("math_problem") == 2
    for sample in preview.samples:
        item = con.execute("SELECT persona_id, text FROM synth_items WHERE item_id = ?",
                           [sample.item_id]).fetchone()
        assert item == (sample.source_id, sample.output)
        assert sample.source == PERSONAS[sample.source_id]
    assert "sfff000000000000" not in {s.item_id for s in preview.samples}  # another job's
    # the near-duplicate comes last in its kind: with 3 of 4 asked it is never picked
    assert "s000000000000000" not in {s.item_id for s in job_preview(con, "job-1", 3).samples}
    assert job_preview(con, "job-1", 2) == preview  # the same rows every time
    assert job_preview(con, "job-1", 0).samples == []


def test_run_corpus_and_expansion_previews(con: duckdb.DuckDBPyConnection) -> None:
    run = run_preview(con, "run-1", 1)
    assert all(s.source == PERSONAS[s.source_id] for s in run.samples)
    assert run.kinds() == ["npc_dialogue", "post"]
    assert run.totals == {"npc_dialogue": 2, "post": 2} and len(run.samples) == 2
    corpus = corpus_preview(con, "news.jsonl")
    assert [(s.kind, s.source, s.output) for s in corpus.samples] == [
        ("read", "text t7 of news.jsonl", "A reader of the harbour gazette")]
    expansion = expansion_preview(con, "exp-1")
    (child,) = expansion.samples
    assert child.kind == "hop 1" and child.source == PERSONAS[child.source_id]
    assert child.output == "brother: Her younger brother, a ferry mechanic"


def test_outliers_are_the_longest_shortest_and_flagged(con: duckdb.DuckDBPyConnection) -> None:
    found = outliers(con, job_id="job-1", count=2)
    lengths = sorted(len(r[0]) for r in con.execute(
        "SELECT text FROM synth_items WHERE job_id = 'job-1'").fetchall())
    assert [s.length for s in found.longest] == lengths[::-1][:2]
    assert [s.length for s in found.shortest] == lengths[:2]
    assert [(s.item_id, s.duplicate_of) for s in found.duplicates] == [
        ("s000000000000000", "s000000000000003")]
    assert outliers(con, run_id="run-1").duplicates == []


def test_clip_keeps_one_line_and_cuts_at_a_word() -> None:
    assert clip("a  b\nc", 10) == "a b c"
    cut = clip("one two three four five six", 16)
    assert cut == "one two three…" and len(cut) <= 16
    assert clip("x" * 30, 10) == "x" * 9 + "…"


def test_show_finds_an_item_an_emission_and_a_persona(con: duckdb.DuckDBPyConnection) -> None:
    item = show(con, "s000000000000004")
    fields = dict(item.fields)
    assert item.what == "synthesis item" and fields["persona"] == PERSONAS["p000000000000005"]
    assert fields["text"].startswith("output 4 word word")  # whole, not clipped
    emission = show(con, "run-1:1:3")
    assert emission.what == "emission" and dict(emission.fields)["text"] == "emission of agent 3"
    persona = show(con, "p000000000000001")
    assert persona.what == "persona" and dict(persona.fields)["made"] == (
        "2 synthesis items, 1 emissions")
    assert show(con, "sfff00").ident == "sfff000000000000"  # a unique prefix


def test_show_refuses_unknown_ambiguous_and_empty_ids(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(PersonahubError,
                       match="show nothing-here: no synthesis item, emission, persona or run"):
        show(con, "nothing-here")
    with pytest.raises(PersonahubError, match="several ids start with it"):
        show(con, "s00000000")
    with pytest.raises(UsageError, match="give an item"):
        show(con, "  ")


@pytest.mark.slow
def test_the_job_report_has_samples_and_outliers(launch_db: dict, tmp_path: Path) -> None:
    con = duckdb.connect(str(launch_db["db"]), read_only=True)
    page = write_report(con, tmp_path / "r", job_id=launch_db["job"]).read_text(encoding="utf-8")
    persona, text = con.execute(
        "SELECT p.text, i.text FROM synth_items i JOIN personas p USING (persona_id) "
        "WHERE job_id = ? ORDER BY i.is_duplicate, md5(item_id) LIMIT 1", [launch_db["job"]]).fetchone()
    con.close()
    samples = page[page.index("<h2>Samples: math_problem</h2>"):page.index("<h2>Outliers")]
    assert "<th>persona</th><th>output</th>" in samples
    row = f"<td>{html.escape(clip(persona, 300))}</td><td>{html.escape(clip(text, 1200))}</td>"
    assert row in samples  # the persona beside the output it wrote
    outlier_part = page[page.index("<h2>Outliers"):]
    assert "<td>longest</td>" in outlier_part and "<td>shortest</td>" in outlier_part


@pytest.mark.slow
def test_the_run_report_has_samples_per_emission_kind(launch_db: dict, tmp_path: Path) -> None:
    con = duckdb.connect(str(launch_db["db"]), read_only=True)
    page = write_report(con, tmp_path / "r", run_id=launch_db["run"]).read_text(encoding="utf-8")
    kinds = [k for (k,) in con.execute("SELECT DISTINCT task FROM emissions WHERE run_id = ? "
                                       "ORDER BY 1", [launch_db["run"]]).fetchall()]
    con.close()
    assert kinds and all(f"<h2>Samples: {kind}</h2>" in page for kind in kinds)
    assert "<h2>Outliers</h2>" in page

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from personahub.cli.app import app
from personahub.core.errors import PersonaFileError, PersonahubError
from personahub.core.store import connect
from personahub.models.client import LLMClient, LLMSettings
from personahub.personas.text_to_persona import (
    RELATIONS,
    iter_texts,
    parse_relations,
    text_personas_schema,
)
from personahub.pipelines.prompts.personas import text_to_persona_messages
from tests.fakes import FakeClient, crash_after
from tests.pipeline_helpers import personas_snapshot
from tests.text_jobs import text_job

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ["a proof that every planar graph is five-colourable", "a recipe for rye sourdough",
          "a clinical note on paediatric asthma dosing", "a guide to Portuguese freelance tax",
          "a review of a jazz trio's debut album", "an essay on river restoration in Yorkshire",
          "a forum post about repairing diesel ferry engines", "a syllabus for intro robotics"]


def corpus_texts(n):
    return [f"Text {i}: {TOPICS[i % len(TOPICS)]}, with details number {i * 7}." for i in range(n)]


def write_jsonl(path, n, **extra):
    path.write_text("".join(json.dumps({"id": f"doc-{i}", "text": t, **extra}) + "\n"
                            for i, t in enumerate(corpus_texts(n))))
    return path


def client(spec="offline", latency=0.0):
    return LLMClient(LLMSettings(spec=spec, seed=5, offline_latency_s=latency, max_retries=1,
                                 backoff_s=0.01))


def run(con, caller, path, **kwargs):
    options = {"relations": ("read", "dislike"), "per_text": 2, "batch_size": 3,
               "id_column": "id"} | kwargs
    return text_job(con, caller, path, **options)


def test_corpus_formats_and_text_ids(tmp_path):
    jsonl = write_jsonl(tmp_path / "c.jsonl", 3)
    assert [t.text_id for t in iter_texts(jsonl)] == ["c.jsonl:1", "c.jsonl:2", "c.jsonl:3"]
    assert [t.text_id for t in iter_texts(jsonl, id_column="id")] == ["doc-0", "doc-1", "doc-2"]
    table = pa.table({"body": corpus_texts(2), "key": ["a", "b"]})
    pq.write_table(table, tmp_path / "c.parquet")
    texts = list(iter_texts(tmp_path / "c.parquet", text_column="body"))
    assert [t.text_id for t in texts] == ["c.parquet:1", "c.parquet:2"]
    assert texts[1].text == corpus_texts(2)[1]
    plain = tmp_path / "web.txt"
    plain.write_text("First paragraph\nstill first.\n\n\nSecond one.\n\nThird\n")
    assert [(t.text_id, t.text) for t in iter_texts(plain)] == [
        ("web.txt:1", "First paragraph\nstill first."), ("web.txt:5", "Second one."), ("web.txt:7", "Third")]
    assert [t.text_id for t in iter_texts(plain, split="line")] == ["web.txt:1", "web.txt:2", "web.txt:5",
                                                                   "web.txt:7"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine text here"}\n{"nope": 1}\n')
    with pytest.raises(PersonaFileError, match="bad.jsonl:2"):
        list(iter_texts(bad))
    assert len(list(iter_texts(bad, skip_bad=True))) == 1
    with pytest.raises(ValueError, match="unknown"):
        parse_relations("read,hate")


def test_prompt_and_schema():
    from personahub.pipelines.prompts.personas import TEXT_RELATIONS

    assert tuple(TEXT_RELATIONS) == RELATIONS  # the prompts word every relation the data side takes
    body = text_to_persona_messages("A note on ferries.", "write", 3)[1].content
    assert "## Text\nA note on ferries." in body and "have written" in body and "up to 3" in body
    assert text_personas_schema(3).model_json_schema()["properties"]["personas"]["maxItems"] == 3


def test_provenance_and_rerun_skips_done(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", 5)
    con = connect(tmp_path / "hub.duckdb")
    first = run(con, client(), path)
    assert first.asked == 10 and first.failed_calls == 0 and first.new_personas > 0
    rows = con.execute("select source, source_ref, attributes from personas").fetchall()
    assert all(r[0] == "text-to-persona" for r in rows)
    attrs = json.loads(rows[0][2])
    assert attrs["corpus"] == "c" and attrs["relation"] in ("read", "dislike")
    assert rows[0][1] == attrs["text_id"]
    assert con.execute("select count(*) from text_done").fetchall()[0][0] == 10
    again = run(con, client(), path)
    assert again.asked == 0 and again.already_done == 10 and again.new_personas == 0
    with pytest.raises(PersonahubError, match="the job's relations"):  # the job's own relations
        run(con, client(), path, relations=("read", "dislike", "like"))
    sql = "select count(*) from llm_calls where purpose like 'text-to-persona:%'"
    calls = con.execute(sql).fetchall()[0][0]
    assert calls == 10



def test_a_text_job_writes_within_its_share_of_memory(tmp_path, monkeypatch):
    """Each batch's write checks its ids against the whole hub: DuckDB is held to TEXT_MEMORY_MB
    while the batches run (on main, the caller's limit: the pool kept every block of ids read),
    and a connection passed in gets its own limit back."""
    import personahub.pipelines.text_to_persona as pipeline

    path = write_jsonl(tmp_path / "c.jsonl", 4)
    con = connect(tmp_path / "hub.duckdb")
    con.execute("SET memory_limit = '3GiB'")
    before = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    seen = []
    upsert = pipeline.upsert_personas

    def watched(c, *args, **kwargs):
        seen.append(c.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return upsert(c, *args, **kwargs)

    monkeypatch.setattr(pipeline, "upsert_personas", watched)
    assert run(con, client(), path).new_personas > 0
    assert seen and set(seen) == {"64.0 MiB"}
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == before

@pytest.mark.parametrize("fail_after", [1, 7, 16])
@pytest.mark.slow
def test_interrupted_job_resumes_to_the_same_hub(tmp_path, fail_after):
    path = write_jsonl(tmp_path / "c.jsonl", 10)
    whole = connect(tmp_path / "whole.duckdb")
    run(whole, client(), path)
    con = connect(tmp_path / "cut.duckdb")
    with pytest.raises(PersonahubError, match="simulated crash"):
        run(con, FakeClient(crash_after(fail_after), inner=client()), path)
    done = con.execute("select count(*) from text_done").fetchall()[0][0]
    assert done == (fail_after // 6) * 6  # whole batches (3 texts x 2 relations) only
    resumed = run(con, client(), path)
    assert resumed.already_done == done
    assert personas_snapshot(con) == personas_snapshot(whole)
    assert con.execute("select count(*) from text_done").fetchall()[0][0] == 20


def test_interrupted_job_over_the_loopback_server(tmp_path, server):
    srv = server(seed=1)
    spec = f"{srv.base_url}?model=offline"
    path = write_jsonl(tmp_path / "c.jsonl", 6)
    whole = connect(tmp_path / "whole.duckdb")
    run(whole, client(spec), path)
    con = connect(tmp_path / "cut.duckdb")
    with pytest.raises(PersonahubError, match="simulated crash"):
        run(con, FakeClient(crash_after(8), inner=client(spec)), path)
    run(con, client(spec), path)
    assert personas_snapshot(con) == personas_snapshot(whole)


SCRIPT = """
import sys
from personahub import runtime
from personahub.models.client import LLMClient, LLMSettings
from personahub.pipelines.text_to_persona import TEXT_TO_PERSONA, TextConfig
client = LLMClient(LLMSettings(seed=5, offline_latency_s=float(sys.argv[3])))
config = TextConfig(corpus="c", path=sys.argv[2], id_column="id", relations=("read", "dislike"),
                    per_text=2, batch_size=3, db=sys.argv[1])
runtime.run(TEXT_TO_PERSONA, config, sys.argv[1], client=client,
            progress=lambda _, texts, __: print("texts", texts, flush=True))
print("finished", flush=True)
"""


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
def test_sigkill_midway_then_rerun_gives_the_same_hub(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", 30)
    db = tmp_path / "killed.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(db), str(path), "0.05"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "texts 9":  # three batches of 3 texts committed
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    con = connect(db)
    done = con.execute("select count(*) from text_done").fetchall()[0][0]
    assert 18 <= done < 60 and done % 6 == 0  # whole batches survived the kill, nothing partial
    resumed = run(con, client(), path)
    assert resumed.already_done == done
    whole = connect(tmp_path / "whole.duckdb")
    run(whole, client(), path)
    assert personas_snapshot(con) == personas_snapshot(whole)


def test_cli_from_text_and_rerun(tmp_path):
    corpus = tmp_path / "web.txt"
    corpus.write_text("\n\n".join(corpus_texts(4)) + "\n")
    db = tmp_path / "cli.duckdb"
    runner = CliRunner()
    args = ["personas", "from-text", str(corpus), "--db", str(db), "--relations", "read,like",
            "--per-text", "2", "--batch-size", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "asked 8" in result.output
    again = runner.invoke(app, args + ["--limit", "3"])
    assert again.exit_code == 0 and "6 already done, asked 0" in again.output
    bad = runner.invoke(app, ["personas", "from-text", str(corpus), "--db", str(db), "--relations", "hate"])
    assert bad.exit_code == 2 and "unknown hate" in bad.output  # a usage error
    missing = runner.invoke(app, ["personas", "from-text", str(tmp_path / "nope.txt"), "--db", str(db)])
    assert missing.exit_code == 1 and "file not found" in missing.output

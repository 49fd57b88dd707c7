from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from personahub.core.errors import PersonahubError
from personahub.personas.dedup import (
    DedupConfig,
    DedupSummary,
    run_dedup,
    run_embedding_stage,
    run_minhash_stage,
)
from personahub.personas.minhash import MinHashConfig
from personahub.personas.record import persona_id_for
from tests._planted import planted_corpus, recall_precision

DDL = """
CREATE SEQUENCE IF NOT EXISTS persona_seq;
CREATE TABLE IF NOT EXISTS personas (
  persona_id VARCHAR PRIMARY KEY, seq BIGINT DEFAULT nextval('persona_seq'), text VARCHAR NOT NULL,
  source VARCHAR, source_ref VARCHAR, attributes JSON, hop INTEGER DEFAULT 0,
  created_at TIMESTAMP DEFAULT current_timestamp,
  is_duplicate BOOLEAN DEFAULT false, duplicate_of VARCHAR, dup_stage VARCHAR);
"""


def hub(texts: list[str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(DDL)
    ids = [persona_id_for(t) for t in texts]
    assert len(set(ids)) == len(ids), "test corpus has exact duplicates"
    rows = pa.table({"persona_id": ids, "text": texts, "pos": list(range(len(texts)))})
    con.register("incoming", rows)
    # insert in list order so seq follows it
    con.execute(
        "INSERT INTO personas (persona_id, text, source) "
        "SELECT persona_id, text, 'test' FROM incoming ORDER BY pos"
    )
    con.unregister("incoming")
    return con


def marks(con: duckdb.DuckDBPyConnection, texts: list[str]) -> tuple[np.ndarray, list]:
    """dup array in list order (index of the kept text) and the dup_stage of every row."""
    rows = con.execute(
        "SELECT persona_id, is_duplicate, duplicate_of, dup_stage FROM personas ORDER BY seq"
    ).fetchall()
    pos = {persona_id_for(t): i for i, t in enumerate(texts)}
    dup = np.full(len(texts), -1, dtype=np.int64)
    stages = [None] * len(texts)
    for pid, is_dup, of, stage in rows:
        if is_dup:
            dup[pos[pid]] = pos[of]
        stages[pos[pid]] = stage
    return dup, stages


def snapshot(con: duckdb.DuckDBPyConnection) -> list:
    return con.execute(
        "SELECT persona_id, seq, text, is_duplicate, duplicate_of, dup_stage FROM personas "
        "ORDER BY seq"
    ).fetchall()


@pytest.fixture(scope="module")
def corpus():
    # stage-1 kinds (Jaccard >= ~0.98) and stage-2 kind (4 adjacent words replaced:
    # Jaccard ~0.87, so mostly left to the embeddings)
    return planted_corpus(
        400, 300, length=(60, 60), kinds=("swap", "edit1", "variant", "edit_block"), seed=11
    )


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        DedupConfig(embed_threshold=1.0)
    with pytest.raises(ValueError):
        DedupConfig(minhash=MinHashConfig(threshold=0.0))
    cfg = DedupConfig()
    assert cfg.embedder is None and cfg.minhash == MinHashConfig()


def test_run_dedup_marks_records_stage_and_never_deletes(corpus) -> None:
    con = hub(corpus.texts)
    seen: list[tuple[str, int, int]] = []
    cfg = DedupConfig(embedder="hash", batch_rows=128)
    summary = run_dedup(con, cfg, progress=lambda s, d, t: seen.append((s, d, t)))
    print(summary)
    assert isinstance(summary, DedupSummary) and "minhash" in str(summary)
    assert con.execute("SELECT count(*) FROM personas").fetchall()[0][0] == len(corpus.texts)

    dup, stages = marks(con, corpus.texts)
    truth = corpus.truth()
    kinds = np.array(corpus.kind)
    stage_of = np.array([s or "" for s in stages])
    # stage 1 on the kinds it is meant for (Jaccard >= ~0.97)
    stage1_kinds = np.isin(kinds, ["swap", "edit1", "variant"])
    dup1 = np.where(stage_of == "minhash", dup, -1)
    r1, p1 = recall_precision(
        np.where(stage1_kinds | (truth < 0), dup1, -1), np.where(stage1_kinds, truth, -1)
    )
    # stage 2 on what stage 1 left: the 4-word block edits
    block = kinds == "edit_block"
    dup2 = np.where(stage_of == "embedding", dup, -1)
    r2, p2 = recall_precision(np.where(block | (truth < 0), dup2, -1), np.where(block, truth, -1))
    r_all, p_all = recall_precision(dup, truth)
    print(f"\nminhash stage:   recall={r1:.3f} precision={p1:.3f}")
    print(f"embedding stage: recall={r2:.3f} precision={p2:.3f} (on 4-word block edits)")
    print(f"both stages:     recall={r_all:.3f} precision={p_all:.3f}")
    assert r1 >= 0.95 and p1 >= 0.95
    assert r2 >= 0.8 and p2 >= 0.95  # some block edits are already caught by stage 1
    assert r_all >= 0.95 and p_all >= 0.95
    assert (dup2 >= 0).sum() > 0 and (dup1 >= 0).sum() > 0
    assert (dup[:400] == -1).all(), "distinct personas were merged"
    assert all(s is None for s in stages[:400])

    # duplicate_of always names an earlier, kept persona
    bad = con.execute(
        """SELECT count(*) FROM personas d JOIN personas k ON d.duplicate_of = k.persona_id
           WHERE d.is_duplicate AND (k.is_duplicate OR k.seq >= d.seq)"""
    ).fetchall()[0][0]
    assert bad == 0
    assert summary.stage("minhash").input == len(corpus.texts)
    assert summary.stage("embedding").input == len(corpus.texts) - summary.stage("minhash").marked
    assert summary.marked == int((dup >= 0).sum())
    assert seen[-1][1] == seen[-1][2] and {s for s, _, _ in seen} == {"minhash", "embedding"}


def test_rerun_is_idempotent(corpus) -> None:
    con = hub(corpus.texts)
    cfg = DedupConfig(embedder="hash")
    first = run_dedup(con, cfg)
    before = snapshot(con)
    again = run_dedup(con, cfg)
    assert first.marked > 0
    assert again.marked == 0
    assert snapshot(con) == before


def test_stages_run_alone(corpus) -> None:
    con = hub(corpus.texts)
    cfg = DedupConfig(embedder="hash")
    s1 = run_minhash_stage(con, cfg)
    assert s1.marked > 0
    assert (
        con.execute("SELECT count(*) FROM personas WHERE dup_stage = 'embedding'").fetchall()[0][0]
        == 0
    )
    s2 = run_embedding_stage(con, cfg)
    assert s2.input == len(corpus.texts) - s1.marked and s2.marked > 0
    with pytest.raises(PersonahubError):
        run_embedding_stage(con, DedupConfig())


def test_minhash_only_skips_embeddings_and_empty_table_is_fine() -> None:
    con = hub([])
    summary = run_dedup(con, DedupConfig())
    assert [s.stage for s in summary.stages] == ["minhash"] and summary.marked == 0


def test_seq_order_decides_who_is_kept() -> None:
    text = " ".join(f"word{i}" for i in range(30))
    texts = [text.upper() + "!", "something else entirely, a sailor", text]
    con = hub(texts)
    run_dedup(con, DedupConfig())
    dup, stages = marks(con, texts)
    assert dup.tolist() == [-1, -1, 0] and stages[2] == "minhash"

"""The paper's diversity analysis with embeddings: persona-pair vs output-pair cosine, labelled by
embedder (``hash`` is lexical), script-aware, seeded, reusing stored persona vectors; the
``diversity`` command and the report section."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pytest

from personahub.analysis.diversity import (
    SUMMARY_HEADER,
    embedder_label,
    embedding_pairs,
    sample_pairs,
    spearman,
    summarise,
)
from personahub.analysis.diversity_table import diversity_table
from personahub.analysis.report import write_report
from personahub.api import run_synthesis
from personahub.models.embedders import make_embedder
from personahub.personas.embedding import HashEmbedder
from personahub.personas.embedding_store import write_vectors
from personahub.personas.writing_systems import LATIN, covered
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke, one_line_error, usage_error
from tests.optional import need_local_model

CJK = ["一位专注于篮球比赛解说的体育评论员", "一位负责制作微博热门话题的内容制作人"]
THAI = ["นักพัฒนาซอฟต์แวร์ที่เขียนแอปพลิเคชันมือถือ"]
LATIN_PERSONAS = ["a marine biologist studying coral reefs", "a retired teacher who tutors maths",
                  "a night-shift nurse in Leeds", "a startup founder building rockets"]
LATIN_OUTPUTS = ["How fast do corals recover?", "Solve 3x + 4 = 19.", "Plan a rota for nurses.",
                 "Estimate a rocket's delta-v."]


class FakeModel:
    """An English-only 'model': every text it is shown is recorded; texts map to one-hot vectors
    by their first word, so equal first words mean cosine 1."""

    def __init__(self, scripts: frozenset[str] | None = LATIN) -> None:
        self.name = "fake-model"
        self.scripts = scripts
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, sum(map(ord, (text.split() or [""])[0])) % 32] = 1.0
        return out


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("div") / "hub.duckdb"
    run_synthesis(SynthConfig(task="instruction", n=8, db=str(path)))
    run_synthesis(SynthConfig(task="math_problem", n=6, db=str(path)))
    return path


def test_hash_is_labelled_lexical_and_a_model_by_its_name() -> None:
    assert embedder_label(make_embedder("hash")) == "lexical (hash-512)"
    assert embedder_label(make_embedder("hash:64")) == "lexical (hash-64)"
    assert embedder_label(make_embedder("local")) == "local:all-MiniLM-L6-v2"  # built, not loaded
    assert embedder_label(make_embedder("openai:text-embedding-3-small")) == \
        "openai:text-embedding-3-small"
    assert embedder_label(FakeModel()) == "fake-model"  # type: ignore[arg-type]


def test_identical_pairs_have_similarity_one() -> None:
    sims = embedding_pairs(["same persona here"] * 4, ["same output text"] * 4, HashEmbedder(),
                           pairs=10, seed=3)
    assert len(sims.persona) == 6 and sims.skipped == 0
    assert sims.persona == pytest.approx(np.ones(6)) and sims.output == pytest.approx(np.ones(6))
    summary = summarise("g", ["same output text"] * 4, sims)
    assert summary.share_above == 1.0 and summary.persona_median == pytest.approx(1.0)
    assert summary.spearman is None  # constant: undefined, not a number


def test_pairs_are_seeded_and_distinct() -> None:
    assert sample_pairs(10, 20, 7) == sample_pairs(10, 20, 7)
    assert sample_pairs(10, 20, 7) != sample_pairs(10, 20, 8)
    assert len(set(sample_pairs(10, 20, 7))) == 20
    assert sample_pairs(4, 100, 0) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert sample_pairs(1, 10, 0) == []


def test_the_model_embedder_is_used_and_other_scripts_are_skipped_and_counted() -> None:
    personas = LATIN_PERSONAS + CJK + THAI
    outputs = LATIN_OUTPUTS + ["篮球比赛的解说词", "微博话题", "แอปพลิเคชัน"]
    fake = FakeModel()
    sims = embedding_pairs(personas, outputs, fake, pairs=100, seed=0)  # type: ignore[arg-type]
    assert len(sims.persona) == 6  # the Latin items' pairs: C(4, 2)
    assert sims.skipped == 21 - 6  # every pair with a CJK or Thai text
    assert sims.label == "fake-model"
    assert fake.seen and all(covered(t, LATIN) for t in fake.seen)  # never shown other scripts
    assert set(fake.seen) == set(LATIN_PERSONAS + LATIN_OUTPUTS)  # each text embedded once
    assert len(fake.seen) == len(set(fake.seen))
    anyscript = FakeModel(scripts=None)
    judged = embedding_pairs(personas, outputs, anyscript, pairs=100, seed=0)  # type: ignore[arg-type]
    assert len(judged.persona) == 21 and judged.skipped == 0


def test_a_latin_output_of_a_cjk_persona_is_skipped_too() -> None:
    sims = embedding_pairs([LATIN_PERSONAS[0], CJK[0]], ["hello there", "hello again"],
                           FakeModel(), pairs=5)  # type: ignore[arg-type]
    assert (len(sims.persona), sims.skipped) == (0, 1)
    assert summarise("g", ["hello there", "hello again"], sims).persona_mean is None


def test_spearman_matches_ranks() -> None:
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x[:2], x[:2]) is None
    y = np.array([0.3, 0.1, 0.1, 0.5, 0.2])  # ties share their average rank
    stats = pytest.importorskip("scipy.stats")
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_table_per_task_reuses_stored_persona_vectors(db: Path) -> None:
    con = duckdb.connect(str(db))
    ids, texts = zip(*con.execute("SELECT DISTINCT p.persona_id, p.text FROM synth_items "
                                  "JOIN personas p USING (persona_id)").fetchall(), strict=True)
    fake = FakeModel(scripts=None)
    stored = FakeModel(scripts=None).embed(list(texts))
    write_vectors(con, list(ids), fake.name, stored, None)
    results = diversity_table(con, fake, pairs=50, seed=1)  # type: ignore[arg-type]
    con.close()
    assert list(results) == ["synth instruction", "synth math_problem"]
    assert results["synth instruction"].summary.items == 8
    assert results["synth instruction"].summary.pairs == 28
    assert results["synth math_problem"].summary.pairs == 15
    assert not set(texts) & set(fake.seen)  # personas came from persona_embeddings
    assert sum(r.pairs.reused for r in results.values()) > 0
    again = diversity_table(duckdb.connect(str(db), read_only=True), HashEmbedder(), pairs=5,
                            seed=1)
    assert again["synth instruction"].summary.pairs == 5


def test_cli_prints_the_table(db: Path) -> None:
    result = invoke("diversity", "--db", db, "--pairs", 10, "--seed", 2)
    assert result.exit_code == 0, result.output
    assert "lexical (hash-512)" in result.output
    for name in ("synth instruction", "synth math_problem", *SUMMARY_HEADER[1:]):
        assert name in result.output
    assert invoke("diversity", "--db", db, "--pairs", 10, "--seed", 2).output == result.output
    job = duckdb.connect(str(db), read_only=True).execute(
        "SELECT job_id FROM synth_jobs WHERE task = 'math_problem'").fetchall()[0][0]
    only = invoke("diversity", "--db", db, "--job", job)
    assert "synth math_problem" in only.output and "synth instruction" not in only.output
    assert "--job nope: not found" in one_line_error(invoke("diversity", "--db", db, "--job", "nope"))
    assert "unknown embedder" in usage_error(invoke("diversity", "--db", db, "--embedder", "x"))


def test_report_section_names_the_embedder(db: Path, tmp_path: Path) -> None:
    result = invoke("report", "--db", db, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "persona similarity vs output similarity (lexical (hash-512))" in html
    assert "Spearman rho" in html and "synth math_problem" in html and "lexical" in html
    con = duckdb.connect(str(db), read_only=True)
    index = write_report(con, tmp_path / "f", embedder=FakeModel())  # type: ignore[arg-type]
    con.close()
    html = index.read_text(encoding="utf-8")
    assert "(fake-model)" in html and "lexical" not in html
    assert (tmp_path / "f" / "diversity.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_local_minilm_judges_meaning_and_skips_cjk() -> None:
    need_local_model()
    personas = ["a retired schoolteacher who grows tomatoes",
                "A retired school teacher who grows tomatoes.", CJK[0]]
    outputs = ["How deep should I plant tomato seeds?", "How deep do tomato seeds go?", CJK[1]]
    sims = embedding_pairs(personas, outputs, make_embedder("local"), pairs=3)
    assert sims.label == "local:all-MiniLM-L6-v2"
    assert sims.skipped == 2 and len(sims.persona) == 1
    assert sims.persona[0] > 0.9 and sims.output[0] > 0.7

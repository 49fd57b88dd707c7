"""Stage 1 out of core: the spilled stages (sign, buckets, verify, marks) give the in-memory
stage's marks whatever the chunk, partition, pair batch and worker settings; the dedup job takes
that path past --memory-mb, writes the same flags, and resumes a killed stage to them."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from personahub.personas import minhash_spill
from personahub.personas.minhash import (
    FeatureSets,
    MinHashConfig,
    minhash_duplicates,
    recall_lsh_params,
    verified_pairs,
)
from personahub.personas.minhash_spill import (
    SpillPlan,
    WorkFolder,
    first_seen_marks,
    run_spilled,
    spill_chunks,
)
from tests._planted import planted_corpus
from tests.cli_helpers import invoke, kill_when


def templated(n: int, seed: int = 3) -> list[str]:
    """Personas from one template, one in ten an earlier one with two words swapped."""
    rng = random.Random(seed)
    texts: list[str] = []
    for i in range(n):
        if texts and rng.random() < 0.1:
            words = rng.choice(texts).split()
            a, b = rng.sample(range(len(words)), 2)
            words[a], words[b] = words[b], words[a]
            texts.append(" ".join(words))
            continue
        texts.append(f"A {rng.choice(['shy', 'blunt', 'calm'])} {rng.choice(['nurse', 'baker'])} "
                     f"from {rng.choice(['Oslo', 'Lima', 'Cork'])}, aged {rng.randint(19, 80)}, "
                     f"who likes {rng.choice(['chess', 'jazz', 'rowing', 'tea'])}, no. {i}.")
    return texts


def corpus(templates: int = 1500, planted: int = 150) -> list[str]:
    """Templated texts (big buckets), planted copies, exact copies and wordless texts."""
    texts = templated(templates) + planted_corpus(2 * planted, planted, length=(10, 30),
                                                  seed=4).texts
    texts[10:10] = ["", "...", texts[5], texts[5].upper()]
    return texts


def marks_of(marks_files: list[str], n: int) -> np.ndarray:
    """Return a spilled stage's marks over n texts: -1 kept, else the earlier text."""
    dup = np.full(n, -1, dtype=np.int64)
    for path in marks_files:
        table = pq.read_table(path)
        dup[table["later"].to_numpy()] = table["earlier"].to_numpy()
    return dup


def spilled_marks(texts: list[str], plan: SpillPlan, root: Path,
                  config: MinHashConfig | None = None) -> np.ndarray:
    config = config or MinHashConfig()
    ids = [f"p{i}" for i in range(len(texts))]
    result = run_spilled(spill_chunks(iter([(ids, texts)]), plan.chunk_rows), plan, config,
                         root, "hub")
    dup = marks_of(result.marks_files, len(texts))
    assert result.marks == int((dup >= 0).sum())
    return dup


def test_spilled_marks_are_the_in_memory_marks_on_a_small_hub(tmp_path: Path) -> None:
    texts = corpus(200, 40)
    want = minhash_duplicates(texts)
    assert (want >= 0).sum() > 40
    plan = SpillPlan(texts=len(texts), chunk_rows=64, partitions=3, pair_batch=16)
    assert np.array_equal(spilled_marks(texts, plan, tmp_path / "w"), want)


@pytest.mark.slow
@pytest.mark.parametrize(("chunk", "partitions", "pair_batch", "workers"),
                         [(400, 1, 100_000, 1), (257, 7, 64, 1), (5000, 3, 7, 1),
                          (300, 5, 1000, 2)])
def test_spilled_marks_are_the_in_memory_marks(tmp_path: Path, chunk: int, partitions: int,
                                               pair_batch: int, workers: int) -> None:
    texts = corpus()
    want = minhash_duplicates(texts)
    assert (want >= 0).sum() > 150
    plan = SpillPlan(texts=len(texts), chunk_rows=chunk, partitions=partitions,
                     pair_batch=pair_batch, workers=workers)
    assert np.array_equal(spilled_marks(texts, plan, tmp_path / "w"), want)


@pytest.mark.slow
def test_big_buckets_with_a_small_cap_and_other_settings(tmp_path: Path) -> None:
    """Copies whose band buckets already hold earlier templates, a cap of 1, bigrams."""
    texts = templated(800)
    texts += [texts[7]] * 30 + [texts[9] + " again"] * 5
    for config in (MinHashConfig(max_bucket_pairs=1), MinHashConfig(ngram=2, threshold=0.8),
                   MinHashConfig(num_perm=16)):
        plan = SpillPlan(texts=len(texts), chunk_rows=300, partitions=4, pair_batch=50)
        got = spilled_marks(texts, plan, tmp_path / f"w{config.ngram}{config.num_perm}", config)
        assert np.array_equal(got, minhash_duplicates(texts, config))


def test_chunks_of_unequal_sizes_from_written_files_give_the_in_memory_marks(
        tmp_path: Path) -> None:
    """Files of (index, persona_id, text) written before the plan, of unequal sizes (as DuckDB
    writes ranges of seq with gaps), each signed from its file: the marks are the in-memory
    stage's, and each chunk's texts are where the plan says."""
    import pyarrow as pa

    texts = corpus(200, 40)
    want = minhash_duplicates(texts)
    sizes = [90, 17, 1, 150, len(texts) - 258]
    plan = SpillPlan(texts=0, chunk_rows=64, partitions=3, pair_batch=16).in_chunks(sizes)
    assert plan.chunks == 5 and plan.texts == len(texts) and plan.end(3) == 258
    assert plan.chunk_of(np.array([0, 89, 90, 107, 108, 257, 258])).tolist() == [0, 0, 1, 2, 3, 3, 4]
    folder = WorkFolder(tmp_path / "w")
    folder.prepare(plan, MinHashConfig(), "hub")
    for c in range(plan.chunks):
        lo, hi = plan.start(c), plan.end(c)
        pq.write_table(pa.table({"index": pa.array(range(lo, hi), pa.int64()),
                                 "persona_id": [f"p{i}" for i in range(lo, hi)],
                                 "text": texts[lo:hi]}), folder.chunk(c, "ids.parquet"))
        assert minhash_spill.sign_file_task(str(folder.root), c, lo, MinHashConfig(),
                                            plan.partitions) == c
    result = minhash_spill.spilled_stages(folder, plan, MinHashConfig(), None)
    dup = marks_of(result.marks_files, len(texts))
    assert (want >= 0).sum() > 40 and np.array_equal(dup, want)
    assert folder.prepare(plan, MinHashConfig(), "hub")  # plan.json reads back as the plan


def band_rows(rows: np.ndarray, bands: int) -> minhash_spill.BandRows:
    """Return a chunk's band rows (each band's in text order) as columns by band, as a partition's
    task reads them; bands counts the signature band too."""
    band = (rows["member"] >> np.uint64(minhash_spill._INDEX_BITS)).astype(np.intp)
    order = np.argsort(band, kind="stable")
    starts = np.zeros(bands + 1, dtype=np.int64)
    np.cumsum(np.bincount(band, minlength=bands), out=starts[1:])
    return minhash_spill.BandRows(np.ascontiguousarray(rows["key"][order]),
                                  np.ascontiguousarray(rows["member"][order]),
                                  np.ascontiguousarray(rows["head"][order]), starts)


def test_a_partitions_pairs_come_in_sorted_runs_that_hold_them_all() -> None:
    """Runs of about run_pairs pairs, each sorted by (later, earlier), hold together the pairs
    of one run over the whole partition: the bucket step need not hold every pair at once."""
    texts = corpus(600, 100)
    config = MinHashConfig()
    signed = minhash_spill.sign_chunk(texts, 0, config, 1)
    bands, _ = recall_lsh_params(0.9, 128)
    rows = band_rows(signed.rows, bands + 1)
    whole = list(minhash_spill.bucket_partition(rows, config))
    assert len(whole) == 1 and len(whole[0]) > 500
    runs = list(minhash_spill.bucket_partition(rows, config, run_pairs=50))
    assert len(runs) > 5
    assert all(len(run) >= 50 for run in runs[:-1])
    for run in runs:
        assert np.array_equal(np.lexsort((run[:, 0], run[:, 1])), np.arange(len(run)))

    def in_order(pairs: np.ndarray) -> np.ndarray:
        return pairs[np.lexsort((pairs[:, 2], pairs[:, 0], pairs[:, 1]))]

    assert np.array_equal(in_order(np.concatenate(runs)), in_order(whole[0]))


def test_a_partition_redone_after_a_kill_clears_the_runs_it_left(tmp_path: Path) -> None:
    """A partition without its marker is bucketed again; a run a killed attempt left under its
    name is removed first, so that the chunks' verify reads the new runs alone."""
    texts = corpus(200, 40)
    want = minhash_duplicates(texts)
    plan = SpillPlan(texts=len(texts), chunk_rows=64, partitions=3, pair_batch=16)
    folder = WorkFolder(tmp_path / "w")
    folder.prepare(plan, MinHashConfig(), "hub")
    ids = [f"p{i}" for i in range(len(texts))]
    for c in range(plan.chunks):
        lo, hi = plan.start(c), plan.end(c)
        minhash_spill._sign_task(str(folder.root), c, ids[lo:hi], texts[lo:hi], lo,
                                 MinHashConfig(), plan.partitions)
    stale = folder.partition_run(1, 999)
    np.save(stale, np.array([[0, 1, 1]], dtype=np.int64))
    result = minhash_spill.spilled_stages(folder, plan, MinHashConfig(), None)
    assert not stale.exists()
    assert json.loads(folder.partition_done(1).read_text())["runs"] > 1
    dup = marks_of(result.marks_files, len(texts))
    assert np.array_equal(dup, want)


def test_plan_bounds_each_step_by_the_memory_setting() -> None:
    small = SpillPlan.for_memory(10_000_000, 64, MinHashConfig())
    big = SpillPlan.for_memory(10_000_000, 4096, MinHashConfig())
    assert small.chunk_rows < big.chunk_rows and small.partitions > big.partitions
    assert SpillPlan.for_memory(100_000_000, 1024, MinHashConfig()).chunk_rows == \
        SpillPlan.for_memory(1_000_000, 1024, MinHashConfig()).chunk_rows  # not N's
    assert SpillPlan.fits_in_memory(10_000, 16) and not SpillPlan.fits_in_memory(10**7, 1024)


def test_first_seen_marks_keep_no_chain() -> None:
    """0~1, 1~2 (1 is marked, so 2 is kept), 0~3 and 2~3 (3 goes to 0, the earliest)."""
    marked = bytearray(1)
    pairs = np.array([[0, 1], [1, 2], [0, 3], [2, 3]])
    assert first_seen_marks(pairs, marked).tolist() == [[1, 0], [3, 0]]
    assert marked[0] == 0b1010


def test_a_folder_of_another_hub_or_setting_is_started_over(tmp_path: Path) -> None:
    plan = SpillPlan(texts=10, chunk_rows=5, partitions=2, pair_batch=10)
    folder = WorkFolder(tmp_path / "w")
    assert not folder.prepare(plan, MinHashConfig(), "hub-a")
    (tmp_path / "w" / "sign" / "leftover").write_text("x")
    assert folder.prepare(plan, MinHashConfig(), "hub-a")
    assert (tmp_path / "w" / "sign" / "leftover").exists()
    assert not folder.prepare(plan, MinHashConfig(), "hub-b")
    assert not (tmp_path / "w" / "sign" / "leftover").exists()


def hub(db: Path, texts: list[str]) -> Path:
    people = db.parent / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts))
    assert invoke("personas", "import", people, "--db", db, "--skip-bad").exit_code == 0
    return db


def flags(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT persona_id, is_duplicate, duplicate_of, dup_stage FROM "
                           "personas ORDER BY seq").fetchall()
    finally:
        con.close()


@pytest.mark.slow  # its stage runs in a pool of processes
def test_dedup_job_spills_past_its_memory_and_flags_the_same(tmp_path: Path) -> None:
    texts = corpus()
    (tmp_path / "a[1]").mkdir()  # a path DuckDB would read as a glob pattern
    (tmp_path / "b").mkdir()
    small = hub(tmp_path / "a[1]" / "hub.duckdb", texts)
    big = hub(tmp_path / "b" / "hub.duckdb", texts)
    spilled = invoke("personas", "dedup", "--db", small, "--embedder", "none", "--memory-mb", 1)
    assert spilled.exit_code == 0, spilled.output
    in_memory = invoke("personas", "dedup", "--db", big, "--embedder", "none")
    assert in_memory.exit_code == 0, in_memory.output
    assert flags(small) == flags(big)
    assert sum(1 for row in flags(small) if row[1]) > 150
    assert not Path(f"{small}.jobs").exists()  # the work folder went with the job


def processes_naming(word: str) -> list[int]:
    """Return the ids of live (not zombie) processes whose command line contains word."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if word in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_a_killed_spilled_stage_resumes_to_the_same_flags(tmp_path: Path) -> None:
    texts = templated(12_000, seed=5)
    (tmp_path / "a").mkdir()
    db = hub(tmp_path / "a" / "hub.duckdb", texts)
    twin = tmp_path / "b" / "hub.duckdb"
    twin.parent.mkdir()
    shutil.copy(db, twin)
    args = ["personas", "dedup", "--db", str(db), "--embedder", "none", "--memory-mb", "1"]
    signed = f"{db}.jobs"

    def half_signed() -> bool:
        return len(list(Path(signed).glob("*/minhash/sign/*.done"))) >= 10

    workers: list[int] = []

    def half_signed_workers_seen() -> bool:
        if not half_signed():
            return False
        workers[:] = processes_naming(str(db))
        return True

    code = kill_when(args, half_signed_workers_seen, "stage 1 never signed 10 chunks")
    assert code == -9
    assert len(workers) >= 2  # the stage and its worker processes were running
    deadline = time.monotonic() + 20  # its worker processes follow it
    while set(workers) & set(processes_naming(str(db))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not set(workers) & set(processes_naming(str(db)))
    assert not any(row[1] for row in flags(db))  # nothing half-written
    assert list(Path(signed).glob("*/minhash/sign/*.done"))
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert invoke("personas", "dedup", "--db", twin, "--embedder", "none").exit_code == 0
    assert flags(db) == flags(twin)
    assert not Path(signed).exists()


def crowded_bucket(n: int = 12) -> tuple[np.ndarray, FeatureSets]:
    """Signatures of n texts that all share band 0 (one over-full bucket); the last two are
    duplicates (equal features) whose other slots agree only in their low byte, so that band 0
    is the one bucket they share, past its earliest texts."""
    rng = np.random.default_rng(7)
    sigs = rng.integers(0, 2**31, size=(n, 128), dtype=np.uint32)
    sigs[:, :8] = sigs[0, :8]  # band 0: every text
    a, b = n - 2, n - 1
    sigs[b, 8:] = (sigs[a, 8:] & 0xFF) | (sigs[b, 8:] & ~np.uint32(0xFF))
    features = [np.arange(100 * i, 100 * i + 20, dtype=np.uint32) for i in range(n)]
    features[b] = features[a]
    return sigs, FeatureSets.from_counts(np.concatenate(features),
                                         np.array([f.size for f in features]))


def test_a_pair_past_a_full_buckets_cap_is_found_in_memory_and_spilled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sigs, features = crowded_bucket()
    n = len(sigs)
    pairs = verified_pairs(sigs, features, MinHashConfig()).tolist()
    assert pairs == [[n - 2, n - 1]]
    monkeypatch.setattr(minhash_spill, "sketch", lambda texts, config, **_: (sigs, features))
    dup = spilled_marks([f"t{i}" for i in range(n)], SpillPlan(n, n, 3, 1024), tmp_path)
    assert dup.tolist() == [-1] * (n - 1) + [n - 2]

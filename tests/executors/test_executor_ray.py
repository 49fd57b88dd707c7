"""--executor ray: synthesize gives the same rows and llm_calls accounting as the local executor,
offline and over HTTP, whatever the number of workers, and a failed Ray job resumed loses and
doubles nothing; personas dedup gives the same flags with its signatures computed on Ray, and
with its band buckets shuffled on Ray (only verified pairs back on the driver).

Each module starts its own local Ray on 127.0.0.1 (two CPUs, no dashboard) and shuts it down."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub.api import run_synthesis
from personahub.core.errors import PersonahubError
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.fake_server.server import running_server
from personahub.personas.dedup import DedupConfig, run_dedup
from personahub.personas.minhash import MinHashConfig
from personahub.pipelines import synthesize
from personahub.pipelines.synthesize import SynthConfig
from tests._planted import planted_corpus
from tests.cli_helpers import invoke
from tests.optional import need_ray
from tests.personas.test_dedup import hub, snapshot
from tests.pipeline_helpers import personas_snapshot, relations_snapshot

pytestmark = pytest.mark.slow


def rows(db: Path, job_id: str) -> list[tuple]:
    """What a job made, without what differs by job (item id, time): in persona order."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT persona_id, task, prompting, model, content, text, solution, "
                           "is_duplicate, duplicate_of IS NOT NULL FROM synth_items WHERE job_id = ? "
                           "ORDER BY persona_id", [job_id]).fetchall()
    finally:
        con.close()


def accounting(db: Path, job_id: str) -> list[tuple]:
    """The job's llm_calls by purpose, status, attempt and model, with their tokens."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT purpose, status, attempt, model_name, count(*), sum(tokens_in), "
                           "sum(tokens_out) FROM llm_calls WHERE job_id = ? GROUP BY ALL "
                           "ORDER BY ALL", [job_id]).fetchall()
    finally:
        con.close()


def answers(db: Path, job_id: str) -> list[tuple]:
    """``accounting`` of an HTTP job, less what a loaded machine may add: an attempt cut at its
    straggler deadline (``models.seam_deadlines``: a loopback answer that took some tenths of a
    second while Ray started its actors) is an error row, and the answer asked again is its
    call's attempt 2. The answers are the same, billed once each; any other error fails here."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        others = con.execute("SELECT status, error FROM llm_calls WHERE job_id = ? AND "
                             "status NOT IN ('ok', 'discarded') AND error NOT LIKE "
                             "'%far slower than the endpoint%(asked again)'", [job_id]).fetchall()
        assert not others, others
        return con.execute("SELECT purpose, status, model_name, count(*), sum(tokens_in), "
                           "sum(tokens_out) FROM llm_calls WHERE job_id = ? AND status <> 'error' "
                           "GROUP BY ALL ORDER BY ALL", [job_id]).fetchall()
    finally:
        con.close()


def synth(db: Path, **kwargs: Any) -> synthesize.SynthSummary:
    defaults: dict[str, Any] = {"task": "math_problem", "n": 23, "batch_size": 5, "solve": True,
                                "db": str(db)}
    return run_synthesis(SynthConfig(**{**defaults, **kwargs}))


@pytest.mark.parametrize("workers", [1, 2])
def test_offline_rows_and_calls_match_the_local_executor(local_ray: None, tmp_path: Path,
                                                         workers: int) -> None:
    local = synth(tmp_path / "local.duckdb")
    remote = synth(tmp_path / "ray.duckdb", executor="ray", ray_workers=workers)
    assert remote.written == local.written == 23 and remote.calls == local.calls
    assert remote.duplicates == local.duplicates and remote.solved == local.solved == 23
    assert rows(tmp_path / "ray.duckdb", remote.job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    assert accounting(tmp_path / "ray.duckdb", remote.job_id) \
        == accounting(tmp_path / "local.duckdb", local.job_id)


def test_persona_few_shot_over_the_loopback_server(local_ray: None, tmp_path: Path) -> None:
    """Over HTTP (ChatOpenAI on every worker) with the demonstrations' personas inferred on the
    driver: the same rows and accounting as a local job against the same server."""
    with running_server(seed=3) as server:
        llm = server.base_url + "?model=offline"
        kwargs: dict[str, Any] = {"task": "instruction", "prompting": "persona-few-shot", "llm": llm,
                                  "solve": False, "n": 12, "batch_size": 4}
        local = synth(tmp_path / "local.duckdb", **kwargs)
        remote = synth(tmp_path / "ray.duckdb", executor="ray", ray_workers=2, **kwargs)
    assert not remote.offline and remote.written == local.written == 12
    assert rows(tmp_path / "ray.duckdb", remote.job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    assert answers(tmp_path / "ray.duckdb", remote.job_id) \
        == answers(tmp_path / "local.duckdb", local.job_id)


def test_a_failed_ray_job_resumed_loses_and_doubles_nothing(local_ray: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthesize.SynthesisSpec.commit
    seen = {"batches": 0}

    def dies_at_the_third(self: synthesize.SynthesisSpec, ctx: Any, batch: Any, result: Any) -> Any:
        seen["batches"] += 1
        if seen["batches"] == 3:  # the driver dies with batches in flight on the workers
            raise RuntimeError("driver lost")
        return real(self, ctx, batch, result)

    db = tmp_path / "ray.duckdb"
    monkeypatch.setattr(synthesize.SynthesisSpec, "commit", dies_at_the_third)
    with pytest.raises(PersonahubError, match="--resume"):
        synth(db, executor="ray", ray_workers=2)
    monkeypatch.setattr(synthesize.SynthesisSpec, "commit", real)
    job_id = duckdb.connect(str(db), read_only=True).execute(
        "SELECT job_id FROM synth_jobs").fetchall()[0][0]
    assert len(rows(db, job_id)) == 10  # two batches committed, the third rolled back
    resumed = run_synthesis(
        SynthConfig(task="math_problem", db=str(db), executor="ray", ray_workers=2), resume=job_id)
    assert resumed.skipped_done == 10 and resumed.written == 13
    local = synth(tmp_path / "local.duckdb")
    assert rows(db, job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    assert accounting(db, job_id) == accounting(tmp_path / "local.duckdb", local.job_id)


def _descendants(root: int) -> dict[int, str]:
    """Command lines of the processes under ``root`` (this test's Ray: started by this process)."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    mine = {}
    for pid, command in commands.items():
        up = pid
        while up in parents and up != root:
            up = parents[up]
        if up == root and pid != root:
            mine[pid] = command
    return mine


def test_a_worker_killed_mid_job_loses_and_doubles_nothing(local_ray: None, tmp_path: Path) -> None:
    """SIGKILL one actor after the first batch is committed: Ray Data restarts it and asks its
    batches again (or the job fails and is resumed); either way the rows and the accounting are
    the local job's."""
    killed: list[int] = []

    def kill_one_worker(_: str, done: int, total: int | None) -> None:
        if killed:
            return
        workers = [pid for pid, command in _descendants(os.getpid()).items()
                   if "_BatchActor" in command]
        assert workers, "no Ray worker found"
        os.kill(workers[0], signal.SIGKILL)
        killed.append(workers[0])

    db = tmp_path / "ray.duckdb"
    options = SynthConfig(task="math_problem", n=23, batch_size=2, solve=True, db=str(db),
                           executor="ray", ray_workers=2)
    try:
        summary = run_synthesis(options, progress=kill_one_worker)
        job_id = summary.job_id
    except PersonahubError:
        job_id = duckdb.connect(str(db), read_only=True).execute(
            "SELECT job_id FROM synth_jobs").fetchall()[0][0]
        run_synthesis(options, resume=job_id)
    assert killed
    local = synth(tmp_path / "local.duckdb", batch_size=2)
    assert rows(db, job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    # what the killed worker had answered when it died was billed and never written to a shard:
    # its spill keeps it, as discarded; every other row is the local job's
    calls = accounting(db, job_id)
    assert [c for c in calls if c[1] != "discarded"] \
        == accounting(tmp_path / "local.duckdb", local.job_id)


def test_the_cli_runs_on_ray(local_ray: None, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    result = invoke("synthesize", "instruction", "--n", 6, "--db", db, "--batch-size", 2,
                    "--executor", "ray", "--ray-workers", 2)
    assert "6 instruction items written" in result.output


def test_a_spec_carrying_a_secret_is_refused(tmp_path: Path) -> None:
    need_ray()
    from personahub.executors.ray_batches import check_ray_client

    client = LLMClient(LLMSettings(spec="http://127.0.0.1:9/v1?model=m&api_key=sk-test"))
    with pytest.raises(PersonahubError, match="api_key_env"):
        check_ray_client(client)


def test_minhash_flags_match_the_local_stage(local_ray: None) -> None:
    from personahub.executors.ray_batches import minhash_signer

    texts = planted_corpus(300, 200, length=(40, 60), kinds=("swap", "edit1", "variant"), seed=5).texts
    config = DedupConfig(minhash=MinHashConfig(num_perm=64, threshold=0.8), batch_rows=97)
    local, remote = hub(texts), hub(texts)
    marked_here = run_dedup(local, config).marked
    marked_there = run_dedup(remote, config, sign=minhash_signer(workers=2)).marked
    assert marked_there == marked_here > 100
    assert snapshot(remote) == snapshot(local)


def _copies_and_wordless(texts: list[str]) -> list[str]:
    """``texts`` with big buckets of near copies (one extra word each) interleaved, and texts
    without words (the planted corpus's rare exact repeat dropped: the hub refuses it)."""
    out = list(dict.fromkeys(texts))
    for k, base in enumerate(texts[:4]):
        for c in range(60):
            out.insert(37 * k + c * 5, f"{base} copy{k}x{c}")
    for at, wordless in ((0, ""), (11, " ... !! "), (250, "?"), (len(out), "-- --")):
        out.insert(at, wordless)
    return out


@pytest.mark.parametrize("max_bucket_pairs", [32, 3])
def test_minhash_shuffle_flags_match_the_local_stage(local_ray: None, max_bucket_pairs: int) -> None:
    """Band buckets through a Ray shuffle (only verified pairs reach the driver) flag what the
    local stage flags, big buckets of copies with a small max_bucket_pairs and wordless texts too."""
    from personahub.executors.ray_minhash import minhash_pair_finder

    texts = _copies_and_wordless(
        planted_corpus(800, 600, length=(30, 50), kinds=("swap", "edit1", "variant"), seed=7).texts)
    config = DedupConfig(minhash=MinHashConfig(num_perm=64, threshold=0.8,
                                               max_bucket_pairs=max_bucket_pairs), batch_rows=301)
    local, remote = hub(texts), hub(texts)
    marked_here = run_dedup(local, config).marked
    marked_there = run_dedup(remote, config, sign=minhash_pair_finder(workers=2)).marked
    assert marked_there == marked_here > 700
    assert snapshot(remote) == snapshot(local)


_TRAITS = ["patient", "curious", "blunt", "meticulous", "cheerful", "stubborn", "shy"]
_ROLES = ["nurse", "baker", "ferry pilot", "librarian", "welder", "beekeeper", "data engineer"]
_PLACES = ["Lisbon", "Accra", "Osaka", "Leeds", "Quito", "Tartu", "Perth", "Cork"]
_HOBBIES = ["chess", "birdwatching", "sourdough", "cycling", "poetry", "robotics", "gardening"]


def templated(n: int, seed: int) -> list[str]:
    """bench_ray's dedup corpus in small: template personas, one in ten an earlier one with two
    words swapped."""
    rng = random.Random(seed)
    texts: list[str] = []
    for i in range(n):
        if texts and rng.random() < 0.1:
            words = rng.choice(texts).split()
            a, b = rng.sample(range(len(words)), 2)
            words[a], words[b] = words[b], words[a]
            texts.append(" ".join(words))
            continue
        texts.append(f"A {rng.choice(_TRAITS)} {rng.choice(_ROLES)} from {rng.choice(_PLACES)}, "
                     f"aged {rng.randint(19, 80)}, who spends weekends on {rng.choice(_HOBBIES)} "
                     f"and {rng.choice(_HOBBIES)}, resident no. {i}.")
    return list(dict.fromkeys(texts))  # the hub refuses an exact repeat


def test_minhash_shuffle_flags_match_the_local_stage_on_templated_personas(local_ray: None) -> None:
    """bench_ray's templated corpus, default settings (max_bucket_pairs 2, 16 x 8 bands, the slot
    pre-filter): the shuffle flags exactly what the local stage flags."""
    from personahub.executors.ray_minhash import minhash_pair_finder

    texts = templated(3000, seed=11)
    config = DedupConfig(batch_rows=701)
    local, remote = hub(texts), hub(texts)
    marked_here = run_dedup(local, config).marked
    marked_there = run_dedup(remote, config, sign=minhash_pair_finder(workers=2)).marked
    assert marked_there == marked_here > 200
    assert snapshot(remote) == snapshot(local)


def _buried(texts: list[str], copies: dict[int, int], config: MinHashConfig) -> int:
    """How many copies' sources are past the earliest ``max_bucket_pairs`` of every band bucket
    the copy is in (bands alone would not pair them)."""
    from personahub.personas.minhash import band_keys, sketch

    keys = band_keys(sketch(texts, config)[0], config)
    buried = 0
    for copy, source in copies.items():
        ranks = [int((keys[:source, b] == keys[copy, b]).sum()) for b in range(keys.shape[1])]
        buried += min(ranks) >= config.max_bucket_pairs
    return buried


def buried_copies(seed: int = 5) -> tuple[list[str], dict[int, int]]:
    """600 templates that differ in two of 18 words (Jaccard 0.8-0.89: none a duplicate), then
    copies of later ones (same words, other case and punctuation: identical signatures), as
    {copy index: source index}. Every band bucket of a template holds dozens of earlier ones."""
    rng = random.Random(seed)
    body = "a retired ferry pilot from the old harbour town who keeps bees and writes letters to"
    combos = [(a, b) for a in range(25) for b in range(25)]
    rng.shuffle(combos)
    texts = [f"{body} topic{a} theme{b}" for a, b in combos[:600]]
    copies: dict[int, int] = {}
    for source in range(599, 200, -5):
        copies[len(texts)] = source
        texts.append(texts[source].upper().replace(" TO ", ", to: "))
    return texts, copies


def test_minhash_shuffle_pairs_copies_whose_buckets_are_full_of_templates(local_ray: None) -> None:
    """Copies of late templates, some past the earliest ``max_bucket_pairs`` of every band bucket
    they are in: the identical-signature pairing finds them all, on Ray as locally."""
    from personahub.executors.ray_minhash import minhash_pair_finder

    texts, copies = buried_copies()
    config = DedupConfig(batch_rows=97)
    assert _buried(texts, copies, config.minhash) > 5
    local, remote = hub(texts), hub(texts)
    assert run_dedup(local, config).marked == len(copies)
    assert run_dedup(remote, config, sign=minhash_pair_finder(workers=2)).marked == len(copies)
    assert snapshot(remote) == snapshot(local)
    rows = snapshot(local)  # in seq order: the texts' order
    assert all(rows[copy][4] == rows[source][0] for copy, source in copies.items())


def test_minhash_shuffle_of_nothing_marks_nothing(local_ray: None) -> None:
    from personahub.executors.ray_minhash import minhash_pair_finder

    remote = hub(["", "!!", "a b c d"])
    assert run_dedup(remote, DedupConfig(), sign=minhash_pair_finder(workers=2)).marked == 0


def test_minhash_shuffle_spilled_writes_the_local_stages_marks(local_ray: None,
                                                              tmp_path: Path) -> None:
    """The command's stage 1 on Ray leaves its marks and the texts' ids in its work folder, as the
    local out-of-core stage does, read in ranges of at most batch_rows; written, they flag what
    the local stage flags."""
    from personahub.core.store import transaction
    from personahub.executors.ray_minhash import minhash_pair_finder
    from personahub.personas.dedup import write_spilled_marks

    texts = templated(3000, seed=11)
    config = DedupConfig(batch_rows=701)
    local, remote = hub(texts), hub(texts)
    marked_here = run_dedup(local, config).marked
    spill = minhash_pair_finder(workers=2).spill
    assert spill is not None
    spilled = spill(remote, config, tmp_path / "minhash", 1024, None)
    assert spilled.texts == len(texts) and spilled.marks == marked_here > 200
    assert len(spilled.ids_files) >= -(-len(texts) // 701)
    assert 1 <= len(spilled.marks_files) <= len(spilled.ids_files)  # a chunk's marks a file
    with transaction(remote):
        assert write_spilled_marks(remote, spilled, "minhash") == marked_here
    assert snapshot(remote) == snapshot(local)


def test_minhash_shuffle_reads_the_hub_within_a_samples_duckdb_pool(
        local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver writes the survivors' files with DuckDB held to SAMPLE_MEMORY_MB, so its pool
    does not keep the hub's blocks through the shuffle, and gives the command back its own
    limit."""
    import personahub.executors.ray_minhash as ray_minhash
    from personahub.personas.hub_memory import SAMPLE_MEMORY_MB, bound_memory

    def limit(con: duckdb.DuckDBPyConnection) -> str:
        return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])

    remote = hub(templated(500, seed=3))
    bound_memory(remote, 512)
    command_limit = limit(remote)
    read_under: list[str] = []
    ranges = ray_minhash.copy_survivor_ranges

    def watched(con: duckdb.DuckDBPyConnection, rows: int, folder: Path) -> Any:
        for written in ranges(con, rows, folder):
            read_under.append(limit(con))
            yield written

    monkeypatch.setattr(ray_minhash, "copy_survivor_ranges", watched)
    spill = ray_minhash.minhash_pair_finder(workers=2).spill
    assert spill is not None
    assert spill(remote, DedupConfig(batch_rows=101), tmp_path / "minhash", 1024, None).texts == 500
    bound_memory(remote, SAMPLE_MEMORY_MB)
    assert len(read_under) == 5 and set(read_under) == {limit(remote)} != {command_limit}
    bound_memory(remote, 512)
    assert limit(remote) == command_limit


def test_minhash_shuffle_spilled_puts_no_text_in_the_object_store(
        local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's stage 1 on Ray writes the texts to Parquet files in its work folder, which
    the map tasks read: the driver puts no text in Ray's object store (every page it wrote there
    stayed mapped in it, growing its RSS with the hub), and still flags what the local stage
    flags."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from personahub.core.store import transaction
    from personahub.executors.ray_minhash import minhash_pair_finder
    from personahub.personas.dedup import write_spilled_marks

    texts = templated(2000, seed=4)
    config = DedupConfig(batch_rows=501)
    local, remote = hub(texts), hub(texts)
    marked_here = run_dedup(local, config).marked
    put = ray.put
    texts_put: list[int] = []

    def watched(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, pa.Table) and "text" in value.column_names:
            texts_put.append(value.num_rows)
        return put(value, *args, **kwargs)

    monkeypatch.setattr(ray, "put", watched)
    spill = minhash_pair_finder(workers=2).spill
    assert spill is not None
    spilled = spill(remote, config, tmp_path / "minhash", 1024, None)
    assert texts_put == []
    written = [pq.read_table(path) for path in spilled.ids_files]
    assert sum(t.num_rows for t in written) == len(texts) and len(written) == 4
    assert pa.concat_tables(written).column("index").to_pylist() == list(range(len(texts)))
    assert spilled.marks == marked_here > 100
    with transaction(remote):
        write_spilled_marks(remote, spilled, "minhash")
    assert snapshot(remote) == snapshot(local)


def _counted(gauge: Any, i: int) -> int:
    """A task that reports itself running to gauge while it runs; returns i."""
    import ray

    ray.get(gauge.enter.remote())
    ray.get(gauge.leave.remote())
    return i


def _refused(why: str) -> None:
    raise ValueError(why)


def test_ray_tasks_run_at_most_their_workers_at_a_time(local_ray: None) -> None:
    """The spilled stage's pool holds at most its workers' tasks in flight (the driver keeps a
    reference a running task, not one per piece of data) and gives each result to its future."""
    import ray

    from personahub.executors.ray_minhash import RayTasks

    @ray.remote(num_cpus=0)
    class Gauge:
        def __init__(self) -> None:
            self.now = self.most = 0

        def enter(self) -> None:
            self.now += 1
            self.most = max(self.most, self.now)

        def leave(self) -> None:
            self.now -= 1

        def peak(self) -> int:
            return self.most

    gauge = Gauge.remote()  # type: ignore[attr-defined]
    pool = RayTasks(1)
    futures = []
    for i in range(6):
        futures.append(pool.submit(_counted, gauge, i))
        assert len(pool._running) <= 1
    assert [f.result() for f in futures] == list(range(6))
    assert ray.get(gauge.peak.remote()) == 1
    with pytest.raises(ValueError, match="no such"):  # a task's error reaches its future
        pool.submit(_refused, "no such chunk").result()


def test_a_failed_ray_spill_resumes_its_signed_chunks_and_a_changed_hub_starts_over(
        local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Ray stage's work folder is the local stage's: an attempt that failed after signing
    resumes without signing again (its survivors' files and signed chunks are kept) to the local
    stage's flags; a hub that changed since starts over."""
    import personahub.executors.ray_minhash as ray_minhash
    from personahub.core.store import transaction
    from personahub.personas.dedup import write_spilled_marks

    texts = templated(1500, seed=8)
    config = DedupConfig(batch_rows=400)
    folder = tmp_path / "minhash"
    spill = ray_minhash.minhash_pair_finder(workers=2).spill
    assert spill is not None

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("stopped after signing")

    remote = hub(texts)
    with monkeypatch.context() as patched:
        patched.setattr(ray_minhash, "spilled_stages", fail)
        with pytest.raises(RuntimeError, match="after signing"):
            spill(remote, config, folder, 1024, None)
    signed = {path.name: path.stat().st_mtime_ns for path in (folder / "sign").glob("*.low.npy")}
    written = {path.name: path.stat().st_mtime_ns for path in (folder / "sign").glob("*.ids.parquet")}
    assert len(signed) == len(written) == 4
    spilled = spill(remote, config, folder, 1024, None)
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "sign").glob("*.low.npy")} == signed
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "sign").glob("*.ids.parquet")} == written
    local = hub(texts)
    assert spilled.marks == run_dedup(local, config).marked > 100
    with transaction(remote):
        write_spilled_marks(remote, spilled, "minhash")
    assert snapshot(remote) == snapshot(local)

    grown = texts + [texts[3] + " indeed", "A new persona nobody wrote before."]
    remote, local = hub(grown), hub(grown)
    spilled = spill(remote, config, folder, 1024, None)
    assert spilled.texts == len(grown) and spilled.marks == run_dedup(local, config).marked
    with transaction(remote):
        write_spilled_marks(remote, spilled, "minhash")
    assert snapshot(remote) == snapshot(local)


def test_minhash_shuffle_refuses_a_folder_a_node_cannot_reach(local_ray: None,
                                                              tmp_path: Path) -> None:
    """Every Ray node must read and write the job's folder (on a cluster, storage every node
    mounts): the pass stops with one line naming the folder before any task fails on it."""
    from personahub.executors.ray_minhash import check_nodes_reach

    check_nodes_reach(tmp_path)
    with pytest.raises(PersonahubError, match="cannot read and write") as caught:
        check_nodes_reach(tmp_path / "elsewhere")
    assert "\n" not in str(caught.value) and "elsewhere" in str(caught.value)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root writes anywhere
        return
    with pytest.raises(PersonahubError, match="locked"):
        check_nodes_reach(locked)


def test_ray_plan_holds_a_task_to_the_memory_setting_whatever_the_hub() -> None:
    """Texts per map task follow --memory-mb alone; reduce partitions grow with the hub so that
    each holds about the same rows (before, the sort made one partition per block of rows)."""
    need_ray()
    from personahub.executors.ray_minhash import ROW_BYTES, RayPlan

    config = MinHashConfig()
    small, big = (RayPlan.for_memory(n, 1024, config, workers=3) for n in (10**6, 10**7))
    assert small.texts_per_task == big.texts_per_task
    assert big.partitions >= 9 * small.partitions > 9
    rows = 17  # 16 bands and the signature key per text
    assert 10**7 * rows * ROW_BYTES / big.partitions <= 1024 << 20
    half = RayPlan.for_memory(10**6, 512, config, workers=3)
    assert half.texts_per_task < small.texts_per_task and half.partitions > small.partitions
    assert half.block_bytes < small.block_bytes
    assert RayPlan.for_memory(10, 1024, config, workers=3).partitions == 3
    with pytest.raises(ValueError, match="memory_mb"):
        RayPlan.for_memory(10, 0, config)


def test_minhash_shuffle_in_a_tiny_memory_setting_flags_what_local_flags(local_ray: None,
                                                                        tmp_path: Path) -> None:
    """At --memory-mb 1 the stage runs in many partitions and small files (256 texts each: a
    signing task holds its whole file's band rows) and still flags what the local stage
    flags."""
    import pyarrow.parquet as pq

    from personahub.core.store import transaction
    from personahub.executors.ray_minhash import minhash_pair_finder
    from personahub.personas.dedup import write_spilled_marks
    from personahub.personas.minhash_spill import SpillPlan

    texts = templated(3000, seed=11)
    config = DedupConfig(batch_rows=701)
    plan = SpillPlan.for_memory(len(texts), 1, config.minhash)
    assert plan.partitions > 10 and plan.chunk_rows < 701
    local, remote = hub(texts), hub(texts)
    marked_here = run_dedup(local, config).marked
    spill = minhash_pair_finder(workers=2).spill
    assert spill is not None
    spilled = spill(remote, config, tmp_path / "minhash", 1, None)
    assert spilled.marks == marked_here > 200
    assert max(pq.ParquetFile(path).metadata.num_rows for path in spilled.ids_files) \
        <= plan.chunk_rows
    assert len(list((tmp_path / "minhash" / "buckets").glob("*.done"))) == plan.partitions
    with transaction(remote):
        assert write_spilled_marks(remote, spilled, "minhash") == marked_here
    assert snapshot(remote) == snapshot(local)


def test_minhash_shuffle_runs_under_the_plans_ray_data_settings(local_ray: None,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """The sort the pass runs carries the plan's shuffle and block sizes, and the caller's
    settings are back after it. A Dataset keeps the settings it was made under: made before
    they were set, the sort ran Ray's default shuffle v2, whose map task merged a node's inputs
    up to 1 GiB (2.9 GB of memory at 1M personas, whatever --memory-mb said)."""
    import ray

    from personahub.executors.ray_minhash import SHUFFLE, RayPlan, minhash_pair_finder

    seen: list[tuple[object, ...]] = []
    sort = ray.data.Dataset.sort

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        ctx = self.context
        seen.append((ctx.shuffle_strategy, ctx.target_max_block_size,
                     ctx.shuffle_input_batch_bytes))
        return sort(self, *args, **kwargs)

    monkeypatch.setattr(ray.data.Dataset, "sort", spy)
    texts = templated(600, seed=5)
    config = DedupConfig(batch_rows=250)
    finder = minhash_pair_finder(workers=2)
    finder.find(iter([texts[:300], texts[300:]]), config.minhash)
    plan = RayPlan.for_memory(len(texts), 1024, config.minhash, workers=2)
    assert seen == [(SHUFFLE, plan.block_bytes, plan.block_bytes)]
    context = ray.data.DataContext.get_current()
    assert (context.target_max_block_size, context.shuffle_input_batch_bytes) != \
        (plan.block_bytes, plan.block_bytes)


def test_personas_dedup_cli_on_ray_flags_what_local_flags(local_ray: None, tmp_path: Path) -> None:
    people = tmp_path / "people.jsonl"
    texts = planted_corpus(150, 100, length=(30, 40), kinds=("swap", "edit1"), seed=9).texts
    people.write_text("".join(f'{{"persona": "{t}"}}\n' for t in texts))
    flags = []
    for executor in ("local", "ray"):
        db = tmp_path / f"{executor}.duckdb"
        assert invoke("personas", "import", people, "--db", db).exit_code == 0
        result = invoke("personas", "dedup", "--db", db, "--executor", executor, "--ray-workers", 2)
        assert result.exit_code == 0, result.output
        con = duckdb.connect(str(db), read_only=True)
        flags.append(con.execute("SELECT persona_id, is_duplicate, duplicate_of, dup_stage "
                                 "FROM personas ORDER BY seq").fetchall())
        con.close()
    assert flags[0] == flags[1] and sum(1 for f in flags[0] if f[1]) > 50


# --- personas from-text and personas expand on Ray -----------------------------

def t2p_client(spec: str = "offline") -> LLMClient:
    return LLMClient(LLMSettings(spec=spec, seed=5, max_retries=1, backoff_s=0.01))


def t2p(db: Path, corpus: Path, workers: int | None, spec: str = "offline") -> Any:
    """A text-to-persona job over ``corpus`` (on Ray with ``workers``, else local)."""
    from personahub.core.store import connect
    from tests.text_jobs import text_job

    on_ray = {} if workers is None else {"executor": "ray", "ray_workers": workers}
    con = connect(db)
    try:
        return text_job(con, t2p_client(spec), corpus, id_column="id", relations=("read", "like"),
                        per_text=2, batch_size=3, **on_ray)
    finally:
        con.close()


def hub_tables(db: Path, kind: str, *, over_http: bool = False) -> dict[str, list[tuple]]:
    """What a persona job made: personas, relations, merges, text_done, rejected, and its calls
    (by purpose, status, attempt, model, tokens), without job ids and times. ``over_http``: the
    calls less what a loaded machine may add (``answers``: attempts cut at their straggler
    deadline, and so the attempt numbers)."""
    calls = ("SELECT purpose, status, attempt, model_name, persona_id, count(*), sum(tokens_in), "
             "sum(tokens_out) FROM llm_calls WHERE job_kind = ? GROUP BY ALL ORDER BY ALL")
    if over_http:
        calls = ("SELECT purpose, status, model_name, persona_id, count(*), sum(tokens_in), "
                 "sum(tokens_out) FROM llm_calls WHERE job_kind = ? AND coalesce(error, '') NOT "
                 "LIKE '%far slower than the endpoint%(asked again)' GROUP BY ALL ORDER BY ALL")
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "personas": personas_snapshot(con), "relations": relations_snapshot(con),
            "merges": con.execute("SELECT position, persona_id, merged_into, method, score, hop "
                                  "FROM persona_merges ORDER BY ALL").fetchall(),
            "text_done": con.execute("SELECT corpus, text_id, relation, persona_ids FROM text_done "
                                     "ORDER BY ALL").fetchall(),
            "rejected": con.execute("SELECT source, reason, persona_id, task, CAST(payload AS "
                                    "VARCHAR) FROM rejected ORDER BY ALL").fetchall(),
            "calls": con.execute(calls, [kind]).fetchall(),
        }
    finally:
        con.close()


def text_corpus(path: Path, n: int = 11) -> Path:
    topics = ["a proof about planar graphs", "a recipe for rye sourdough", "a note on asthma dosing",
              "a guide to freelance tax", "a review of a jazz trio's album"]
    path.write_text("".join(f'{{"id": "doc-{i}", "text": "Text {i}: {topics[i % 5]}, detail '
                            f'{i * 7}."}}\n' for i in range(n)))
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_from_text_on_ray_makes_the_local_hub(local_ray: None, tmp_path: Path, workers: int) -> None:
    corpus = text_corpus(tmp_path / "c.jsonl")
    local = t2p(tmp_path / "local.duckdb", corpus, None)
    remote = t2p(tmp_path / "ray.duckdb", corpus, workers)
    assert (remote.asked, remote.personas, remote.batches) == (local.asked, local.personas, 4)
    assert local.asked == 22 and local.personas > 20
    tables = hub_tables(tmp_path / "ray.duckdb", "text_to_persona")
    assert tables == hub_tables(tmp_path / "local.duckdb", "text_to_persona")
    assert len(tables["calls"]) > 1 and tables["text_done"]
    again = t2p(tmp_path / "ray.duckdb", corpus, workers)  # a re-run on Ray asks nothing
    assert again.asked == 0 and again.already_done == 22


def test_an_interrupted_ray_text_job_keeps_its_workers_attempts(
        local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver stops with the workers' answers to a batch in hand, uncommitted: the attempts
    the workers made are kept (spilled, committed as discarded by the stop), and the resume ends
    with the uninterrupted job's hub, its non-discarded calls the local job's."""
    from personahub.pipelines.text_to_persona import TextToPersonaSpec
    from tests.fakes import Interrupted

    corpus = text_corpus(tmp_path / "c.jsonl")
    t2p(tmp_path / "whole.duckdb", corpus, None)
    commit = TextToPersonaSpec.commit
    commits = {"n": 0}

    def dies_at_the_second(self: Any, ctx: Any, batch: Any, result: Any) -> Any:
        commits["n"] += 1
        if commits["n"] == 2:
            raise Interrupted("driver lost")
        return commit(self, ctx, batch, result)

    db = tmp_path / "cut.duckdb"
    monkeypatch.setattr(TextToPersonaSpec, "commit", dies_at_the_second)
    with pytest.raises(PersonahubError, match="driver lost"):
        t2p(db, corpus, 2)
    monkeypatch.setattr(TextToPersonaSpec, "commit", commit)
    con = duckdb.connect(str(db), read_only=True)
    lost = con.execute("SELECT count(*) FROM llm_calls WHERE status = 'discarded'").fetchall()[0][0]
    con.close()
    assert lost > 0  # at least the uncommitted batch's calls: billed, so kept
    t2p(db, corpus, 2)
    cut, whole = hub_tables(db, "text_to_persona"), hub_tables(tmp_path / "whole.duckdb",
                                                               "text_to_persona")
    assert [c for c in cut.pop("calls") if c[1] != "discarded"] == whole.pop("calls")
    assert cut == whole


def test_from_text_on_ray_over_the_loopback_server(local_ray: None, tmp_path: Path) -> None:
    corpus = text_corpus(tmp_path / "c.jsonl", 7)
    with running_server(seed=4) as server:
        spec = server.base_url + "?model=offline"
        t2p(tmp_path / "local.duckdb", corpus, None, spec)
        t2p(tmp_path / "ray.duckdb", corpus, 2, spec)
    tables = hub_tables(tmp_path / "ray.duckdb", "text_to_persona", over_http=True)
    assert tables == hub_tables(tmp_path / "local.duckdb", "text_to_persona", over_http=True)
    assert tables["personas"] and tables["calls"]


def expansion(db: Path, workers: int | None, *, resume: str | None = None,
              spec: str = "offline") -> Any:
    """Two hops from five personas, closing triangles (link calls) with the default embedder,
    its batches' calls on a job-long pool of ``workers`` Ray actors (else local)."""
    from personahub.core.store import connect
    from personahub.personas.link_nearest import DEFAULT_LINK_EMBEDDER
    from personahub.personas.record import Persona
    from personahub.personas.store import upsert_personas
    from tests.conftest import persona_texts
    from tests.expansions import expand_hub

    caller = LLMClient(LLMSettings(spec=spec, seed=3, max_retries=1, backoff_s=0.01))
    on_ray = {} if workers is None else {"executor": "ray", "ray_workers": workers}
    con = connect(db)
    try:
        if resume is None:
            upsert_personas(con, [Persona(text=t, source="test") for t in persona_texts(5)])
        start = [r[0] for r in con.execute("SELECT persona_id FROM personas ORDER BY seq"
                                           ).fetchall()]
        return expand_hub(con, caller, start_ids=start if resume is None else None, hops=2,
                          fanout=2, batch_size=4, link_candidates=3,
                          link_embedder=DEFAULT_LINK_EMBEDDER, resume=resume, **on_ray)
    finally:
        con.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_expand_on_ray_makes_the_local_hub(local_ray: None, tmp_path: Path, workers: int) -> None:
    local = expansion(tmp_path / "local.duckdb", None)
    remote = expansion(tmp_path / "ray.duckdb", workers)
    assert (remote.asked, remote.new_ids, remote.edges, remote.linked) \
        == (local.asked, local.new_ids, local.edges, local.linked)
    tables = hub_tables(tmp_path / "ray.duckdb", "expansion")
    assert tables == hub_tables(tmp_path / "local.duckdb", "expansion")
    assert any(purpose == "expand:link" for purpose, *_ in tables["calls"])


def test_an_interrupted_ray_expansion_resumed_is_the_uninterrupted_one(
        local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver dies with a batch's answers from the workers in hand, uncommitted: the
    workers' attempts are kept (spilled, committed as discarded by the stop), and the resume
    asks that batch again and ends with the uninterrupted expansion's hub."""
    from personahub.pipelines.expand import ExpandSpec
    from tests.fakes import Interrupted

    whole = expansion(tmp_path / "whole.duckdb", 2)
    commit = ExpandSpec.commit
    commits = {"n": 0}

    def dies_at_the_second(self: Any, ctx: Any, batch: Any, result: Any) -> Any:
        commits["n"] += 1
        if commits["n"] == 2:  # the driver dies with a batch's answers in hand, uncommitted
            raise Interrupted("driver lost")
        return commit(self, ctx, batch, result)

    db = tmp_path / "cut.duckdb"
    monkeypatch.setattr(ExpandSpec, "commit", dies_at_the_second)
    with pytest.raises(PersonahubError, match="driver lost"):
        expansion(db, 2)
    monkeypatch.setattr(ExpandSpec, "commit", commit)
    con = duckdb.connect(str(db), read_only=True)
    expansion_id = con.execute("SELECT expansion_id FROM expansions").fetchall()[0][0]
    assert 0 < con.execute("SELECT count(*) FROM expansion_frontier WHERE status = 'done'"
                           ).fetchall()[0][0] < whole.asked
    lost = con.execute("SELECT count(*) FROM llm_calls WHERE status = 'discarded'").fetchall()[0][0]
    assert 0 < lost <= 4 * 2  # the uncommitted batch's calls: 4 personas, with their link calls
    con.close()
    resumed = expansion(db, 2, resume=expansion_id)
    assert resumed.new_ids == whole.new_ids and resumed.asked == whole.asked
    cut, uncut = hub_tables(db, "expansion"), hub_tables(tmp_path / "whole.duckdb", "expansion")
    assert [c for c in cut.pop("calls") if c[1] != "discarded"] == uncut.pop("calls")
    assert cut == uncut


def test_the_persona_commands_run_on_ray(local_ray: None, tmp_path: Path) -> None:
    corpus = text_corpus(tmp_path / "c.jsonl", 5)
    for executor in ("local", "ray"):
        db = tmp_path / f"{executor}.duckdb"
        made = invoke("personas", "from-text", corpus, "--db", db, "--id-column", "id",
                      "--relations", "read,like", "--batch-size", 2, "--executor", executor,
                      "--ray-workers", 2)
        assert made.exit_code == 0 and "asked 10" in made.output, made.output
        grown = invoke("personas", "expand", "--db", db, "--hops", 1, "--limit", 4, "--batch-size",
                       2, "--executor", executor, "--ray-workers", 2)
        assert grown.exit_code == 0 and "asked 4 personas" in grown.output, grown.output
    assert hub_tables(tmp_path / "ray.duckdb", "expansion") \
        == hub_tables(tmp_path / "local.duckdb", "expansion")
    assert hub_tables(tmp_path / "ray.duckdb", "text_to_persona") \
        == hub_tables(tmp_path / "local.duckdb", "text_to_persona")


# --- Parquet shards under the job folder: a dead driver's answers are committed on resume -------

SHARD_KEY = "sk-shard-test-0123456789"  # a made-up key the workers send: it must not reach a shard

KILLED_DRIVER = """
import os, signal, sys, time
from pathlib import Path

import pyarrow.parquet as pq
import ray
from personahub.pipelines import synthesize
from personahub.pipelines.synthesize import SynthConfig
from personahub.api import run_synthesis

db, llm, address = sys.argv[1:4]
ray.init(address=address, log_to_driver=False,
         runtime_env={"env_vars": {"PH_SHARD_API_KEY": os.environ["PH_SHARD_API_KEY"]}})
real = synthesize.SynthesisSpec.commit
seen = [0]

def dies_at_the_third(self, ctx, batch, result):
    seen[0] += 1
    if seen[0] == 3:  # two batches committed; wait until every other answer is in a shard
        folder = Path(db + ".jobs") / ctx.job_id
        for _ in range(600):
            done = {r[0] for r in ctx.con.execute(
                "SELECT persona_id FROM synth_items WHERE job_id = ?", [ctx.job_id]).fetchall()}
            keys = set()
            for path in folder.glob("*.parquet"):
                keys.update(pq.read_table(path, columns=["key"]).column("key").to_pylist())
            if len(done | keys) == 23:
                os.kill(os.getpid(), signal.SIGKILL)  # before this batch is committed
            time.sleep(0.1)
        sys.exit(3)
    return real(self, ctx, batch, result)

synthesize.SynthesisSpec.commit = dies_at_the_third
run_synthesis(SynthConfig(task="math_problem", n=23, batch_size=5, db=db, llm=llm,
                           executor="ray", ray_workers=2))
sys.exit(4)
"""


def _job_id(db: Path) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT job_id FROM synth_jobs").fetchall()[0][0]
    finally:
        con.close()


def _shard_keys(folder: Path) -> dict[str, set[str]]:
    import pyarrow.parquet as pq

    return {p.name: set(pq.read_table(p, columns=["key"]).column("key").to_pylist())
            for p in folder.glob("*.parquet")}


def test_a_killed_driver_resumed_commits_the_shards_without_asking_again(
        local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 the driver (a subprocess on this test's Ray) after every answer is in a shard but
    only two batches are committed: the resume commits the other three from the shards with no
    model call, and the job is the uninterrupted one, its folder gone."""
    import subprocess
    import sys

    import ray

    monkeypatch.setenv("PH_SHARD_API_KEY", SHARD_KEY)
    db = tmp_path / "ray.duckdb"
    with running_server(seed=3) as server:
        llm = server.base_url + "?model=offline&api_key_env=PH_SHARD_API_KEY"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        died = subprocess.run([sys.executable, "-c", KILLED_DRIVER, str(db), llm,
                               ray.get_runtime_context().gcs_address], env=env, timeout=600,
                              capture_output=True, text=True)
        assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
        job_id = _job_id(db)
        folder = db.parent / f"{db.name}.jobs" / job_id
        assert len(rows(db, job_id)) == 10 and len(set().union(*_shard_keys(folder).values())) >= 13
        assert not any(SHARD_KEY.encode() in p.read_bytes() for p in folder.iterdir())
        asked = server.stats.requests
        resumed = run_synthesis(SynthConfig(task="math_problem", db=str(db), llm=llm,
                                             executor="ray", ray_workers=2), resume=job_id)
        assert server.stats.requests == asked  # every answer came from a shard
        assert resumed.skipped_done == 10 and resumed.written == 13
        local = synth(tmp_path / "local.duckdb", llm=llm, solve=False)
    assert rows(db, job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    assert answers(db, job_id) == answers(tmp_path / "local.duckdb", local.job_id)
    assert not folder.exists() and not folder.parent.exists()


def test_a_corrupt_or_partial_shard_is_ignored_and_its_answers_asked_again(
        local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthesize.SynthesisSpec.commit
    seen = {"batches": 0}

    def dies_at_the_third(self: synthesize.SynthesisSpec, ctx: Any, batch: Any, result: Any) -> Any:
        seen["batches"] += 1
        if seen["batches"] == 3:
            raise RuntimeError("driver lost")
        return real(self, ctx, batch, result)

    db = tmp_path / "ray.duckdb"
    with running_server(seed=3) as server:
        llm = server.base_url + "?model=offline"
        monkeypatch.setattr(synthesize.SynthesisSpec, "commit", dies_at_the_third)
        with pytest.raises(PersonahubError, match="--resume"):
            synth(db, llm=llm, solve=False, executor="ray", ray_workers=2)
        monkeypatch.setattr(synthesize.SynthesisSpec, "commit", real)
        job_id = _job_id(db)
        con = duckdb.connect(str(db), read_only=True)
        done = {r[0] for r in con.execute("SELECT persona_id FROM synth_items").fetchall()}
        con.close()
        folder = db.parent / f"{db.name}.jobs" / job_id
        shards = {name: keys - done for name, keys in _shard_keys(folder).items()}
        broken = next(name for name, keys in shards.items() if keys)
        (folder / broken).write_bytes((folder / broken).read_bytes()[:40])  # cut short
        (folder / ".0123.part").write_bytes(b"PAR1")  # a write that never finished
        ready = set().union(*(keys for name, keys in shards.items() if name != broken))
        asked = server.stats.requests
        resumed = run_synthesis(SynthConfig(task="math_problem", db=str(db), llm=llm,
                                             executor="ray", ray_workers=2), resume=job_id)
        assert server.stats.requests - asked == 13 - len(ready) > 0
        assert resumed.written == 13
        local = synth(tmp_path / "local.duckdb", llm=llm, solve=False)
    assert rows(db, job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    # the broken shard's answers were billed once and asked again: the first ones are kept from
    # the workers' call spill as discarded; the rest is the local job's accounting
    calls = answers(db, job_id)
    assert sum(c[3] for c in calls if c[1] == "discarded") == 13 - len(ready)
    assert [c for c in calls if c[1] != "discarded"] \
        == answers(tmp_path / "local.duckdb", local.job_id)
    assert not folder.exists()
def test_expand_command_on_ray_over_the_loopback_server(local_ray: None, tmp_path: Path,
                                                         server: Any) -> None:
    """personas expand --executor ray over HTTP (a client on each actor, the same server): the
    local executor's hub, and its llm_calls accounting, call for call."""
    from personahub.core.store import connect
    from personahub.personas.record import Persona
    from personahub.personas.store import upsert_personas
    from tests.conftest import persona_texts

    llm = server(seed=4).base_url + "?model=offline"
    for executor in ("local", "ray"):
        db = tmp_path / f"{executor}.duckdb"
        con = connect(db)
        upsert_personas(con, [Persona(text=t, source="test") for t in persona_texts(5)])
        con.close()
        grown = invoke("personas", "expand", "--db", db, "--llm", llm, "--hops", 2, "--fanout", 2,
                       "--batch-size", 2, "--link-candidates", 3, "--executor", executor,
                       "--ray-workers", 2)
        assert grown.exit_code == 0 and "asked " in grown.output, grown.output
    tables = hub_tables(tmp_path / "ray.duckdb", "expansion", over_http=True)
    assert tables == hub_tables(tmp_path / "local.duckdb", "expansion", over_http=True)
    assert tables["personas"] and any(p == "expand:link" for p, *_ in tables["calls"])
